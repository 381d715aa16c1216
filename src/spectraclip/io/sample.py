"""The `Sample` value every reader produces, and the raster error classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.errors import InputError
from spectraclip.io.radiometry import Radiometry


class RasterError(InputError):
    """A raster that cannot be used; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Sample:
    """Pixels as float32 `[C, H, W]` with their band names and, when known, georeferencing.

    `crs` is a WKT/EPSG string and `transform` the 6 affine coefficients (a, b, c, d, e, f) as in
    rasterio; `modalities` names the sensor groups present (e.g. {"s2": BandSet, "s1": BandSet})
    for multi-sensor samples, `meta` holds anything else a reader knows (labels, dates; `radiometry`: the
    `io.radiometry.Radiometry` of the raw pixel values, None when unknown). `invalid` is a bool `[C, H, W]`
    mask of pixels holding NaN or a declared nodata value (kept by `nodata="ignore"` reads), None when
    every pixel is a measurement; statistics and radiometric conversion leave those pixels out.
    """

    pixels: np.ndarray
    bands: BandSet
    id: str
    path: str | None = None
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    invalid: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3:
            raise RasterError(self.path or self.id, f"expected [C,H,W] pixels, got shape {self.pixels.shape}")
        if self.pixels.shape[0] != len(self.bands):
            raise RasterError(
                self.path or self.id,
                f"{self.pixels.shape[0]} channels but {len(self.bands)} band names ({self.bands})",
            )
        if self.invalid is not None and self.invalid.shape != self.pixels.shape:
            raise RasterError(
                self.path or self.id, f"invalid-pixel mask of shape {self.invalid.shape} for pixels {self.pixels.shape}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        """A Sample is an item already read (`io.items.Item`): itself."""
        return self

    def select(self, bands: BandSet | str) -> Sample:
        """A copy holding only `bands`, in that order (by name)."""
        from spectraclip.bands import select_bands

        want = BandSet.parse(bands)
        where = self.path or self.id
        px = select_bands(self.pixels, self.bands, want, where=where)
        invalid = None if self.invalid is None else select_bands(self.invalid, self.bands, want, where=where)
        meta = dict(self.meta)
        if isinstance(meta.get("radiometry"), Radiometry):
            meta["radiometry"] = meta["radiometry"].for_bands(want.names)
        return Sample(px, want, self.id, self.path, self.crs, self.transform, meta, invalid)
