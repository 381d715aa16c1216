"""The one item protocol: anything the encode path reads is an `Item` with an `id` and `read(...) -> Sample`.

A raster file (`FileItem`), a multi-file layout item (`io.layouts.LayoutItem`), a scene window
(`io.window_items.WindowItem`) and a `Sample` itself (already read) implement it, and so may any object of a
caller's: the encode path calls `item.read(bands=..., nodata=..., radiometry=...)` and nothing else. Plain paths
are wrapped once, where a listing is made (`as_items`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from spectraclip.bands import BandSet
from spectraclip.io.sample import Sample

PathLike = str | os.PathLike


@runtime_checkable
class Item(Protocol):
    """One thing to encode: `id` names it in tables and reports; `read` gives its pixels as a `Sample`.

    `bands`, `nodata` and `radiometry` are the run's read options (`--bands`, `--nodata`, `--radiometry`); an
    item uses those that apply to it (a layout item reads each modality's own bands)."""

    @property
    def id(self) -> str: ...

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample: ...


@dataclass(frozen=True)
class FileItem:
    """A raster file (GeoTIFF/COG, band folder, .npy/.npz) as an item; `str()` is its path (errors name it)."""

    path: str
    id: str

    def __str__(self) -> str:
        return self.path

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        from spectraclip.io.readers import read_sample

        kw = {"radiometry": radiometry} if radiometry is not None else {}
        return read_sample(self.path, bands, nodata=nodata, **kw)


def is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def item_ids(paths: Sequence[PathLike]) -> list[str]:
    """Stable ids for raster items: the path relative to their common folder, without extension."""
    resolved = [Path(p).resolve() for p in paths]
    if not resolved:
        return []
    if len(resolved) == 1:
        return [_strip_suffix(resolved[0].name)]
    root = Path(os.path.commonpath([str(p) for p in resolved]))
    return [_strip_suffix(str(p.relative_to(root))) for p in resolved]


def _strip_suffix(name: str) -> str:
    for suffix in (".tiff", ".tif", ".npz", ".npy", ".jp2"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def as_items(items: Sequence[Any]) -> list[Any]:
    """`items` as `Item`s: plain paths become `FileItem`s (ids relative to the paths' common folder, computed
    over the paths of the whole listing), anything else is kept as it is."""
    at = [i for i, x in enumerate(items) if is_path(x)]
    ids = item_ids([items[i] for i in at])
    out = list(items)
    for i, id_ in zip(at, ids, strict=True):
        out[i] = FileItem(str(items[i]), id_)
    return out


__all__ = ["FileItem", "Item", "as_items", "is_path", "item_ids"]
