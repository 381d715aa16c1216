"""The natural-colour picture shown to a vision-language model: B04/B03/B02 (selected by name) stretched
to uint8 and resized to 224×224.

Stretch (documented choice): `fixed` (default) maps surface reflectance 0–0.30 (digital numbers 0–3000 at
the usual ×10000 scale, after subtracting `offset`) linearly to 0–1 and applies gamma 1/1.4, so every image
uses the same colour scale: water stays dark, snow and clouds saturate to white, as they look. `percentile`
stretches each band between its own 2nd and 98th percentile (more contrast, but colours are no longer
comparable between images and a uniform ocean scene turns into amplified noise).
"""

from __future__ import annotations

import base64

import numpy as np

from spectraclip.bands import BandSet, select_bands
from spectraclip.io.render import Stretch, png_bytes, stretch_rgb
from spectraclip.io.sample import Sample

RGB_BANDS = ("B04", "B03", "B02")
COMPOSITE_SIZE = 224


def natural_colour(sample: Sample, size: int = COMPOSITE_SIZE, stretch: Stretch = "fixed", **kwargs) -> np.ndarray:
    """uint8 `[size,size,3]` natural-colour composite of a sample (bands picked by name: B04, B03, B02)."""
    from PIL import Image

    rgb = select_bands(sample.pixels, sample.bands, BandSet(RGB_BANDS), where=sample.path or sample.id)
    img = stretch_rgb(rgb, stretch, **kwargs)
    if img.shape[:2] != (size, size):
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
    return img


def data_url(image: np.ndarray) -> str:
    """The image as a `data:image/png;base64,...` URL, the form OpenAI-compatible servers accept."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
