"""Few-shot probes: classical scikit-learn models trained on k labelled embeddings, label-efficiency curves.

`labels` reads the targets, `tables` loads (and merges, and aligns) embeddings tables, `estimators`
holds the models and metrics, `sampling` the stratified draws and the split, `curves` runs the probe,
`baseline` makes the per-band statistics table, and `report` renders the Markdown table, plot and JSON.
"""
