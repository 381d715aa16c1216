"""Vector indexes over embeddings tables: build (exact or approximate, chosen by size and memory),
append, memory-mapped loading and filtered search. The index reads the table, never the model or
the rasters; faiss is imported inside the functions that need it.
"""
