"""Rendering rasters as pictures: the contrast stretch of a natural-colour composite and PNG encoding.

It lives in `io/` because captioning (the picture shown to a vision-language model), the search service's
thumbnails, the demo report and the scene quicklooks all render the same way.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np

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


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a uint8 `[H,W,3]` image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["FIXED_GAMMA", "FIXED_MAX", "Stretch", "png_bytes", "stretch_rgb"]
