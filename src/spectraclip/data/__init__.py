"""Datasets (one module per dataset) and the image transforms that turn Samples into model inputs."""
