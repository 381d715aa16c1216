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
import io
from typing import Literal

import numpy as np

from spectraclip.bands import BandSet, select_bands
from spectraclip.io.sample import Sample

RGB_BANDS = ("B04", "B03", "B02")
COMPOSITE_SIZE = 224
FIXED_MAX = 3000.0
FIXED_GAMMA = 1 / 1.4
Stretch = Literal["fixed", "percentile"]


def stretch_rgb(rgb: np.ndarray, stretch: Stretch = "fixed", *, max_value: float = FIXED_MAX,
                gamma: float = FIXED_GAMMA, offset: float = 0.0, percentiles: tuple[float, float] = (2, 98),
                joint: bool = False, min_range: float = 0.0) -> np.ndarray:
    """Float `[3,H,W]` reflectance (red, green, blue) -> uint8 `[H,W,3]` with the chosen stretch; NaN -> 0.

    `percentile` maps the given percentiles to black and white, per channel, or with `joint=True` one range
    for all three (keeps the colour balance). `min_range` (data units) stops a nearly uniform scene, e.g.
    dark water, from having its noise stretched to full contrast."""
    x = np.asarray(rgb, dtype=np.float32) - offset
    if stretch == "fixed":
        y = np.clip(x / max_value, 0.0, 1.0) ** gamma
    elif stretch == "percentile":
        def limits(values: np.ndarray) -> tuple[float, float]:
            finite = values[np.isfinite(values)]
            lo, hi = np.percentile(finite, percentiles) if finite.size else (0.0, 1.0)
            return float(lo), max(float(hi), float(lo) + min_range)

        per_band = [limits(x)] * len(x) if joint else [limits(band) for band in x]
        lo, hi = (np.array(v, dtype=np.float32)[:, None, None] for v in zip(*per_band, strict=True))
        y = np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)
    else:
        raise ValueError(f"stretch={stretch!r} is not one of fixed, percentile")
    y = np.nan_to_num(y, nan=0.0)
    return np.round(y * 255).astype(np.uint8).transpose(1, 2, 0)


def natural_colour(sample: Sample, size: int = COMPOSITE_SIZE, stretch: Stretch = "fixed", **kwargs) -> np.ndarray:
    """uint8 `[size,size,3]` natural-colour composite of a sample (bands picked by name: B04, B03, B02)."""
    from PIL import Image

    rgb = select_bands(sample.pixels, sample.bands, BandSet(RGB_BANDS), where=sample.path or sample.id)
    img = stretch_rgb(rgb, stretch, **kwargs)
    if img.shape[:2] != (size, size):
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
    return img


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a uint8 `[H,W,3]` image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def data_url(image: np.ndarray) -> str:
    """The image as a `data:image/png;base64,...` URL, the form OpenAI-compatible servers accept."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
