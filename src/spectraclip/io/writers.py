"""Writing georeferenced outputs: GeoTIFFs with band descriptions, written atomically."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from spectraclip.io.atomic import atomic_path
from spectraclip.io.radiometry import Radiometry
from spectraclip.io.sample import Sample

_TILE = 256


def write_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    crs: Any = None,
    transform: Sequence[float] | Affine | None = None,
    band_names: Sequence[str] | Any | None = None,
    nodata: float | None = None,
    dtype: str | np.dtype | None = None,
    radiometry: Radiometry | None = None,
) -> Path:
    """Write `array` [C,H,W] (or [H,W]) as a deflate-compressed GeoTIFF, atomically.

    `band_names` become the band descriptions, so `read_sample` gets the band order back; `radiometry`
    becomes GDAL's per-band scale/offset, so it comes back too; large images are tiled. float64 is
    stored as float32 and bool as uint8 unless `dtype` says otherwise.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{path}: write_geotiff needs [C,H,W] or [H,W], got shape {arr.shape}")
    count, height, width = arr.shape
    if dtype is None:
        dtype = {"f": np.float32 if arr.dtype.itemsize > 4 else arr.dtype, "b": np.uint8}.get(
            arr.dtype.kind, arr.dtype
        )
    dtype = np.dtype(dtype)
    names = [str(b) for b in band_names] if band_names is not None else None
    if names is not None and len(names) != count:
        raise ValueError(f"{path}: {count} bands but {len(names)} band names ({', '.join(names)})")
    if transform is not None and not isinstance(transform, Affine):
        transform = Affine(*list(transform)[:6])
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if dtype.kind == "f" else 2,
        "BIGTIFF": "IF_SAFER",
    }
    if transform is None:
        profile.pop("transform")
    if height >= 2 * _TILE or width >= 2 * _TILE:
        profile.update(tiled=True, blockxsize=_TILE, blockysize=_TILE)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain arrays may have no georef
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr.astype(dtype, copy=False))
            if names is not None:
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
            if radiometry is not None:
                scale, offset = radiometry.coefficients(names if radiometry.per_band else None)
                dst.scales = tuple(np.broadcast_to(scale, (count,)).tolist())
                dst.offsets = tuple(np.broadcast_to(offset, (count,)).tolist())
    return Path(path)


def write_sample(path: str | os.PathLike[str], sample: Sample, *, dtype: str | None = None) -> Path:
    """Write a Sample as a GeoTIFF keeping its band names, georeferencing and radiometry."""
    radiometry = sample.meta.get("radiometry")
    return write_geotiff(
        path, sample.pixels, crs=sample.crs, transform=sample.transform, band_names=sample.bands.names,
        dtype=dtype, radiometry=radiometry if isinstance(radiometry, Radiometry) else None,
    )
