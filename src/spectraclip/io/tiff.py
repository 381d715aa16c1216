"""Shared GeoTIFF helpers (rasterio): open a raster, read its pixels with their invalid mask, georeferencing,
what its tags say about radiometry."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning

from spectraclip.io.errors import CorruptRasterError
from spectraclip.io.radiometry import Radiometry, RadiometryError, from_tags


def _reason(exc: BaseException) -> str:
    """The most specific message of a rasterio error (GDAL's cause is often chained)."""
    parts = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(str(cause))
    return "; ".join(p for p in parts if p)


@contextlib.contextmanager
def open_raster(path: Path) -> Iterator[Any]:
    """Open `path` with rasterio, turning any failure into a CorruptRasterError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except Exception as exc:  # rasterio raises several unrelated types for bad files
        raise CorruptRasterError(path, f"cannot open as a raster ({_reason(exc)})") from exc
    with ds:
        yield ds


def georef(ds: Any) -> tuple[str | None, tuple[float, ...] | None]:
    """CRS as an `EPSG:xxxx` (or WKT) string and the 6 affine coefficients; None when not georeferenced."""
    crs = ds.crs.to_string() if ds.crs else None
    transform = tuple(float(v) for v in tuple(ds.transform)[:6])
    if crs is None and ds.transform.is_identity:
        transform = None
    return crs, transform


def read_pixels(
    ds: Any,
    path: Path,
    indexes: Sequence[int],
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """Read bands `indexes` (1-based) as float32 [C,H,W] plus a bool mask of NaN / nodata / masked pixels."""
    indexes = list(indexes)
    shape = (len(indexes), *(out_shape or (ds.height, ds.width)))
    kind = np.dtype(ds.dtypes[0]).kind
    if kind not in "biuf":
        raise CorruptRasterError(path, f"unsupported pixel type {ds.dtypes[0]} (need integer or float)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            data = ds.read(indexes, out_shape=shape, resampling=resampling, out_dtype="float32")
            invalid = np.isnan(data)
            flags = [ds.mask_flag_enums[i - 1] for i in indexes]
            if any(MaskFlags.all_valid not in f for f in flags):
                masks = ds.read_masks(indexes, out_shape=shape, resampling=Resampling.nearest)
                invalid |= masks == 0
    except Exception as exc:  # truncated files open fine and fail here
        raise CorruptRasterError(path, f"cannot read pixels, file corrupt or truncated ({_reason(exc)})") from exc
    return data, invalid


def raster_radiometry(ds: Any, path: Path, indexes: Sequence[int], bands: Sequence[str]) -> Radiometry | None:
    """What a raster's GDAL scale/offset and metadata tags (file and band level) say about the radiometry
    of its bands `indexes` (1-based, named `bands`); None when they say nothing."""
    scales, offsets = ds.scales, ds.offsets  # each property reads every band: once
    try:
        return from_tags(
            ds.tags(),
            band_tags=[ds.tags(i) for i in indexes],
            scales=[scales[i - 1] for i in indexes],
            offsets=[offsets[i - 1] for i in indexes],
            bands=bands,
            source=f"tags of {Path(path).name}",
        )
    except RadiometryError as exc:
        raise CorruptRasterError(path, f"unusable radiometry tags ({exc})") from exc
