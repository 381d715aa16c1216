"""Datasets (one module per dataset), caption manifests and archives, and the per-band normalisation
statistics of a dataset (`data.stats`). The transforms that turn Samples into model inputs are model
preprocessing: `models.transforms`."""
