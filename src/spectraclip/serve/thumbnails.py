"""Thumbnails of indexed items, rendered from the item's raster with the item's band names: natural
colour (B04, B03, B02) or false colour (B08, B04, B03), one joint percentile stretch, cached."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from spectraclip.bands import BandSet, select_bands
from spectraclip.errors import InputError

STYLES = {"natural": ("B04", "B03", "B02"), "false-colour": ("B08", "B04", "B03")}
THUMBNAIL_SIZE = 128
MIN_RANGE = 1500.0  # digital numbers: dark water is not stretched into noise (same rule as the demo report)


class ThumbnailError(InputError):
    """An item whose raster cannot be rendered (missing file, missing band); the message names it."""


def render_thumbnail(path: str | Path, bands: str | None, style: str, size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG bytes of one raster in `style`, bands picked by name from the item's recorded band order."""
    from PIL import Image

    from spectraclip.io.readers import read_sample
    from spectraclip.io.render import png_bytes, stretch_rgb

    if style not in STYLES:
        raise ThumbnailError(f"style {style!r}: expected one of {', '.join(STYLES)}")
    try:
        sample = read_sample(path, bands or None, nodata="ignore")
        rgb = select_bands(sample.pixels, sample.bands, BandSet(STYLES[style]), where=str(path))
    except Exception as exc:  # any reader or band error is this item's problem only
        raise ThumbnailError(f"cannot render {style} thumbnail of {path}: {exc}") from exc
    img = stretch_rgb(np.asarray(rgb), "percentile", joint=True, min_range=MIN_RANGE)
    img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
    return png_bytes(img)


class ThumbnailCache:
    """A bounded in-memory LRU of rendered PNGs keyed by (row, style); safe across request threads."""

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
            return png

    def put(self, key: tuple[int, str], png: bytes) -> None:
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["STYLES", "ThumbnailCache", "ThumbnailError", "render_thumbnail"]
