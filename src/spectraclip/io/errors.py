"""Specific raster error classes; all are `RasterError`s whose message names the file and the problem."""

from __future__ import annotations

from collections.abc import Mapping

from spectraclip.io.sample import RasterError


class CorruptRasterError(RasterError):
    """A file that cannot be opened or decoded (corrupt, truncated, unreadable, not a raster)."""


class BandOrderError(RasterError):
    """The band names of a raster are unknown, or do not match its band count or the bands asked for."""


class InvalidPixelsError(RasterError):
    """NaN or nodata pixels under the `nodata="error"` policy, or a band with no valid pixel at all."""

    def __init__(self, path: object, problem: str, counts: Mapping[str, int] | None = None) -> None:
        self.counts = dict(counts or {})
        super().__init__(path, problem)


class NoRastersError(RasterError):
    """A path that holds nothing readable: missing, an empty folder, or a folder without band files."""


__all__ = ["BandOrderError", "CorruptRasterError", "InvalidPixelsError", "NoRastersError", "RasterError"]
