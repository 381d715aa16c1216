"""Writing large georeferenced rasters block by block: a tiled GeoTIFF filled strip by strip beside the
target, reopened on resume, converted to a Cloud-Optimized GeoTIFF (GDAL's COG driver) at the end and moved
into place atomically."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window

from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_path

BLOCK = 256


class RasterWriteError(SpectraclipError, OSError):
    """An output raster that cannot be written or resumed; the message names the file."""


class BlockWriter:
    """A tiled GeoTIFF written in row strips (`write(row, array)`), then turned into a COG by `finish()`.

    The partial file lives at `<target>.partial.tif`; `open(resume=True)` reopens it so a killed job
    continues where its last recorded strip ended (the caller records finished strips)."""

    def __init__(self, target: str | os.PathLike[str], *, height: int, width: int, count: int, dtype: str,
                 crs: Any, transform: Sequence[float], nodata: float | None = None,
                 descriptions: Sequence[str] | None = None, colormap: Mapping[int, tuple[int, ...]] | None = None,
                 tags: Mapping[str, str] | None = None, band_tags: Sequence[Mapping[str, str]] | None = None) -> None:
        self.target = Path(target)
        self.partial = self.target.with_name(self.target.name + ".partial.tif")
        self.height, self.width, self.count, self.dtype = int(height), int(width), int(count), np.dtype(dtype).name
        self.crs, self.transform, self.nodata = crs, Affine(*list(transform)[:6]), nodata
        self.descriptions = list(descriptions or [])
        self.colormap, self.tags, self.band_tags = colormap, dict(tags or {}), list(band_tags or [])
        self._ds: Any = None

    def open(self, resume: bool = False) -> BlockWriter:
        """Create the partial file, or reopen it when `resume` and it exists with the same shape."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            if resume and self.partial.exists():
                try:
                    ds = rasterio.open(self.partial, "r+")
                except Exception as exc:  # noqa: BLE001 - a half-written header
                    raise RasterWriteError(f"{self.partial}: cannot reopen the partial output to resume ({exc}); "
                                           "delete it to start over") from exc
                if (ds.height, ds.width, ds.count, ds.dtypes[0]) != (self.height, self.width, self.count, self.dtype):
                    ds.close()
                    raise RasterWriteError(f"{self.partial}: partial output of another shape or type; delete it "
                                           "(and its .parts folder) to start over")
                self._ds = ds
                return self
            profile = {"driver": "GTiff", "height": self.height, "width": self.width, "count": self.count,
                       "dtype": self.dtype, "crs": self.crs, "transform": self.transform, "nodata": self.nodata,
                       "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "BIGTIFF": "IF_SAFER",
                       "interleave": "pixel" if self.count <= 4 else "band", "photometric": "MINISBLACK"}
            self._ds = rasterio.open(self.partial, "w", **profile)
            for i, d in enumerate(self.descriptions, start=1):
                self._ds.set_band_description(i, d)
            tags = dict(self.tags)
            if self.colormap:  # TIFF holds colour tables for one-band files only: also kept as a tag
                tags["colormap_band1"] = json.dumps({str(k): list(v) for k, v in self.colormap.items()})
            if tags:
                self._ds.update_tags(**tags)
            for i, t in enumerate(self.band_tags, start=1):
                if t:
                    self._ds.update_tags(i, **t)
        return self

    def write(self, row: int, array: np.ndarray) -> None:
        """Write `array` `[count, rows, width]` at output row `row`."""
        if self._ds is None:
            raise RasterWriteError(f"{self.partial}: writer is not open")
        arr = np.asarray(array)
        if arr.shape[0] != self.count or arr.shape[2] != self.width:
            raise RasterWriteError(f"{self.partial}: strip of shape {arr.shape}, expected [{self.count}, rows, "
                                   f"{self.width}]")
        self._ds.write(arr.astype(self.dtype, copy=False), window=Window(0, row, self.width, arr.shape[1]))

    def write_mask(self, row: int, valid: np.ndarray) -> None:
        """Write the dataset validity mask (True = data) for rows `row .. row + len(valid)`."""
        if self._ds is None:
            raise RasterWriteError(f"{self.partial}: writer is not open")
        m = np.asarray(valid, bool)
        self._ds.write_mask((m * 255).astype(np.uint8), window=Window(0, row, self.width, m.shape[0]))

    def sync(self) -> None:
        """Make everything written so far durable (close and reopen the partial file)."""
        if self._ds is not None:
            self._ds.close()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(self.partial, "r+")

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def finish(self, *, resampling: str = "nearest", compress: str = "zstd") -> Path:
        """Convert the partial file to a COG at the target (atomically) and remove the partial file.

        ZSTD on all cores by default: for a whole Sentinel-2 tile, single-threaded DEFLATE made the conversion
        cost as much as mapping the scene (`benchmarks/bench_map.py`)."""
        from rasterio.shutil import copy as rio_copy

        self.close()
        with atomic_path(self.target) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            rio_copy(self.partial, tmp, driver="COG", compress=compress, overview_resampling=resampling,
                     blocksize=BLOCK, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
        self.partial.unlink(missing_ok=True)
        if self.colormap:
            write_pam_colormap(self.target, self.colormap)
        return self.target


def write_pam_colormap(path: Path, colormap: Mapping[int, tuple[int, ...]], band: int = 1) -> Path:
    """The colour table of `band` in GDAL's `.aux.xml` sidecar (TIFF cannot hold one in a multi-band file):
    GDAL, rasterio and QGIS read it as the band's palette."""
    n = max(colormap) + 1
    entries = []
    for i in range(n):
        r, g, b, *a = colormap.get(i, (0, 0, 0, 0))
        entries.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a[0] if a else 255}" />')
    xml = ("<PAMDataset>\n"
           f'  <PAMRasterBand band="{band}">\n    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>\n'
           + "\n".join(entries) + "\n    </ColorTable>\n  </PAMRasterBand>\n</PAMDataset>\n")
    aux = path.with_name(path.name + ".aux.xml")
    with atomic_path(aux) as tmp:
        tmp.write_text(xml, encoding="utf-8")
    return aux


__all__ = ["BLOCK", "BlockWriter", "RasterWriteError", "read_xarray"]


def read_xarray(path: str | Path) -> Any:
    """A product COG (map, heatmap, change, time series) as an `xarray.DataArray` `(band, y, x)`: the bands named by
    their descriptions, `x`/`y` the pixel centres in the raster's CRS, the CRS, transform and tags in `.attrs`.
    What a notebook user reaches for to slice, plot or combine products (needs `xarray`)."""
    import rasterio
    import xarray as xr

    with rasterio.open(path) as ds:
        data = ds.read()
        t = ds.transform
        xs = t.c + t.a * (np.arange(ds.width) + 0.5)
        ys = t.f + t.e * (np.arange(ds.height) + 0.5)
        names = [d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions)]
        attrs = {"crs": ds.crs.to_string() if ds.crs else None, "transform": tuple(t)[:6], "path": str(path),
                 "nodata": ds.nodata, **ds.tags()}
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"band": names, "y": ys, "x": xs}, attrs=attrs,
                        name=Path(path).stem)

