"""`spectraclip demo`: multispectral vs RGB CLIP on the embedded EuroSAT-MS subset, end to end on a CPU."""
