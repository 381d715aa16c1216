"""Change detection: two dates of a scene through the scene runner (`apps.runner`), its probes and its OSCD
evaluation. `scene` (the `change` job and its rule), `grid` (two dates on one grid), `features` (what one window
gives), `cnn` and `probe` (the few-shot probes), `probe_io` (saving and loading them), `labels` (labelled pairs),
`quicklook` (before / after / change PNG), `oscd` (`evaluate --dataset oscd`).

Nothing is imported here: the modules pull in torch, rasterio and scikit-learn, and `spectraclip --help` stays fast.
"""
