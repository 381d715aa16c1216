"""Small synthetic scenes for the scene tests: band folders at native resolutions (10/20/60 m), multi-band
GeoTIFFs, a STAC Item; pixels follow a smooth deterministic pattern so windowed and whole reads can be compared."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

CRS = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)
RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
       "B09": 60, "B10": 60, "B11": 20, "B12": 20}


def pattern(band: str, h: int, w: int, res: float) -> np.ndarray:
    """Reflectance-like uint16 values: a left 'water' strip (low NIR) and smooth land elsewhere."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) * res
    k = list(RES).index(band) + 1
    land = 1500 + 600 * np.sin(xx / 370.0 + k) * np.cos(yy / 290.0 - k)
    water = 300 + 40 * k if band not in ("B08", "B8A", "B11", "B12") else 80.0
    out = np.where(xx < 800, water, land)
    return np.clip(out, 1, 10000).astype(np.uint16)


def write_band(path: Path, arr: np.ndarray, res: float, *, crs: str = CRS, origin: tuple[float, float] = ORIGIN,
               nodata: float | None = None, tiled: bool = False) -> Path:
    profile = dict(driver="GTiff", width=arr.shape[-1], height=arr.shape[-2], count=1, dtype=arr.dtype.name,
                   crs=crs, transform=Affine(res, 0, origin[0], 0, -res, origin[1]), nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr[None] if arr.ndim == 2 else arr)
    return path


def make_scene_folder(root: Path, name: str = "scene", bands: Sequence[str] = tuple(RES), size10: int = 300,
                      layout: str = "oscd") -> Path:
    """One file per band at native resolution (300x300 at 10 m, 150x150 at 20 m, 50x50 at 60 m).
    `oscd`: `<tile>_B02.tif` in a flat folder; `safe`: `GRANULE/<id>/IMG_DATA/R10m/..._B02_10m.jp2`-like names
    (as GeoTIFFs) with the 20 m and 60 m bands in R20m / R60m."""
    folder = root / name
    for b in bands:
        res = RES[b]
        n = size10 * 10 // res
        arr = pattern(b, n, n, res)
        if layout == "safe":
            d = folder / f"{name}.SAFE" / "GRANULE" / "L2A_T33_A1" / "IMG_DATA" / f"R{res}m"
            d.mkdir(parents=True, exist_ok=True)
            write_band(d / f"T33UXP_20240101_{b}_{res}m.tif", arr, res)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            write_band(folder / f"S2A_MSIL1C_T33UXP_{b}.tif", arr, res)
    return folder / f"{name}.SAFE" if layout == "safe" else folder


def make_multiband(path: Path, bands: Sequence[str] = tuple(RES), size: int = 300, *, nodata: float | None = None,
                   describe: bool = True, tiled: bool = True) -> Path:
    """All `bands` on one 10 m grid in one GeoTIFF, described by name."""
    arr = np.stack([pattern(b, size, size, 10) for b in bands])
    profile = dict(driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16", crs=CRS,
                   transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), nodata=nodata, interleave="band")
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if describe:
            for i, b in enumerate(bands, start=1):
                dst.set_band_description(i, b)
    return path


def make_stac_item(folder: Path, item: Path, *, missing: str | None = None) -> Path:
    """A STAC Item whose assets (keys `blue`, `red`, ... with eo:bands) point at the band files of `folder`
    with relative hrefs; `missing` names one band whose href points nowhere."""
    from spectraclip.bands import CATALOG

    assets = {}
    for f in sorted(folder.glob("*.tif")):
        b = f.stem.rsplit("_", 1)[-1]
        href = "does-not-exist.tif" if b == missing else str(f.relative_to(item.parent)) if \
            f.is_relative_to(item.parent) else str(f)
        assets[CATALOG[b].common_name] = {"href": href, "type": "image/tiff",
                                          "eo:bands": [{"name": b, "common_name": CATALOG[b].common_name}]}
    assets["thumbnail"] = {"href": "thumb.png", "type": "image/png"}
    data = {"type": "Feature", "stac_version": "1.0.0", "id": "synthetic", "geometry": None, "properties": {},
            "assets": assets, "links": []}
    item.write_text(json.dumps(data))
    return item
