"""spectraclip: multispectral vision-language (CLIP) models for Earth observation."""

__version__ = "0.1.0"
