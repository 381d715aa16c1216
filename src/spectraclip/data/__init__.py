"""Datasets (one module per dataset), the image transforms that turn Samples into model inputs, and the
per-band normalisation statistics of a dataset (`data.stats`)."""
