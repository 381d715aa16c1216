"""Synthetic raster fixtures for the io tests, written with rasterio directly (not with our writer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CRS = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)


def transform_for(resolution: float) -> Affine:
    """A north-up UTM transform with square pixels of `resolution` metres."""
    return Affine(resolution, 0.0, ORIGIN[0], 0.0, -resolution, ORIGIN[1])


def random_array(count: int, height: int, width: int, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Reproducible pixels spanning most of `dtype`'s useful range (reflectance-like for integers)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 1000, (count, height, width)).astype(dtype)
    lo = -3000 if np.dtype(dtype).kind == "i" else 0
    return rng.integers(lo, 12000, (count, height, width)).astype(dtype)


def write_raw_geotiff(
    path: Path,
    array: np.ndarray,
    *,
    interleave: str = "pixel",
    descriptions: Sequence[str] | None = None,
    nodata: float | None = None,
    compress: str | None = None,
    resolution: float = 10.0,
    tags: dict[str, object] | None = None,
    band_tags: dict[str, object] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
) -> Path:
    """A GeoTIFF with the given interleaving, band descriptions, nodata, metadata tags (file-level `tags`,
    `band_tags` on every band) and GDAL scale/offset, via plain rasterio."""
    count, height, width = array.shape
    profile = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=array.dtype.name, crs=CRS,
        transform=transform_for(resolution), interleave=interleave, nodata=nodata,
    )
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
        if tags:
            dst.update_tags(**tags)
        for i in range(1, count + 1) if band_tags else ():
            dst.update_tags(i, **band_tags)
        if scales is not None:
            dst.scales = tuple(scales)
        if offsets is not None:
            dst.offsets = tuple(offsets)
    return path


# native resolution in metres of the bands used by the synthetic band folders
RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B8A": 20, "VV": 10, "VH": 10}


def make_band_folder(
    root: Path,
    name: str,
    bands: Sequence[str] = ("B01", "B02", "B03", "B04", "B05", "B8A"),
    *,
    layout: str = "bigearthnet",
    size10: int = 24,
    seed: int = 0,
) -> Path:
    """A band folder: BigEarthNet (`<name>_B01.tif`) or SSL4EO (`B1.tif`) names, native resolutions, a JSON."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for band in bands:
        res = RESOLUTION[band]
        n = size10 * 10 // res
        dtype = "float32" if band in ("VV", "VH") else "uint16"
        arr = (rng.normal(-15, 3, (1, n, n)) if dtype == "float32" else rng.integers(1, 5000, (1, n, n)))
        if layout == "bigearthnet":
            fname = f"{name}_{band}.tif"
        else:
            fname = f"{band.replace('B0', 'B')}.tif"  # SSL4EO: B1.tif ... B8A.tif, VV.tif
        write_raw_geotiff(folder / fname, arr.astype(dtype), interleave="band", resolution=res)
    (folder / f"{name}_labels_metadata.json").write_text(json.dumps({"labels": ["Forest"]}))
    return folder


def truncate_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """A copy of `src` cut to the first `keep` fraction of its bytes (a truncated download)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def nodata_border(interior: np.ndarray, border: int, value: float) -> np.ndarray:
    """`interior` [C,h,w] framed by `border` pixels of `value` on every side (a chip at a scene's edge)."""
    c, h, w = interior.shape
    out = np.full((c, h + 2 * border, w + 2 * border), value, dtype=interior.dtype)
    out[:, border:border + h, border:border + w] = interior
    return out
