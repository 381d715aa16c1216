"""Workspace fixtures: small products as `spectraclip map` / `heatmap` / `change` write them (class map with its
colour table and `classes` tag, similarity bands, change flags), a natural-colour scene, and a synthetic index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CLASSES = ["Forest", "River", "Pasture"]
COLOURS = {0: (0, 100, 0, 255), 1: (0, 0, 255, 255), 2: (180, 220, 80, 255), 255: (0, 0, 0, 0)}


def _profile(count: int, dtype: str, west: float, north: float, size: int, res: float, nodata=None) -> dict:
    return {"driver": "GTiff", "height": size, "width": size, "count": count, "dtype": dtype, "crs": "EPSG:4326",
            "transform": from_origin(west, north, res, res), "tiled": True, "blockxsize": 256, "blockysize": 256,
            "nodata": nodata, "photometric": "MINISBLACK"}


def class_map(path: Path, west: float = 5.0, north: float = 50.0, size: int = 512, res: float = 0.001) -> Path:
    """Three vertical class stripes (0 | 1 | 2), a nodata corner, uint8 probabilities (scale 255)."""
    cls = np.zeros((size, size), np.uint8)
    cls[:, size // 3: 2 * size // 3] = 1
    cls[:, 2 * size // 3:] = 2
    cls[:32, :32] = 255
    probs = np.zeros((3, size, size), np.uint8)
    for c in range(3):
        probs[c] = np.where(cls == c, 200, 27)
    with rasterio.open(path, "w", **_profile(4, "uint8", west, north, size, res)) as ds:
        ds.write(cls, 1)
        ds.write(probs, [2, 3, 4])
        ds.descriptions = ("class", *[f"p_{c}" for c in CLASSES])
        # as io.cog writes it: TIFF keeps colour tables for one-band files only, so a tag holds it
        ds.update_tags(classes=json.dumps(CLASSES), probability_scale="255",
                       colormap_band1=json.dumps({str(k): list(v) for k, v in COLOURS.items()}))
    return path


def heat_map(path: Path, west: float = 5.0, north: float = 50.0, size: int = 512, res: float = 0.001) -> Path:
    yy, xx = np.mgrid[0:size, 0:size]
    sim = (xx / size).astype(np.float32)[None]
    with rasterio.open(path, "w", **_profile(1, "float32", west, north, size, res, float("nan"))) as ds:
        ds.write(sim)
        ds.descriptions = ("solar farm",)
        ds.update_tags(queries=json.dumps(["solar farm"]))
    return path


def change_map(path: Path, west: float = 5.0, north: float = 50.0, size: int = 512, res: float = 0.001) -> Path:
    score = np.zeros((size, size), np.float32)
    score[100:200, 100:200] = 5
    with rasterio.open(path, "w", **_profile(2, "float32", west, north, size, res, float("nan"))) as ds:
        ds.write(np.stack([score, (score > 1).astype(np.float32)]))
        ds.descriptions = ("change_score", "change")
        ds.update_tags(spectraclip_change=json.dumps({"threshold": 1.0}))
    return path


def scene(path: Path, west: float = 5.0, north: float = 50.0, size: int = 512, res: float = 0.001) -> Path:
    rng = np.random.default_rng(0)
    arr = (rng.uniform(500, 3000, (3, size, size))).astype(np.uint16)
    with rasterio.open(path, "w", **_profile(3, "uint16", west, north, size, res)) as ds:
        ds.write(arr)
        ds.descriptions = ("B04", "B03", "B02")
    return path


def synthetic_index(base: Path, n: int = 400, dim: int = 32, seed: int = 0, west: float = 5.0,
                    south: float = 49.5, span: float = 0.5) -> Path:
    """An index of `n` items with footprints inside the fixture maps' extent and a ground-truth `labels` column
    (cluster id as 'c<k>'): vectors clustered so a probe can learn them."""
    from shapely.geometry import box

    from spectraclip.embeddings import write_embeddings
    from spectraclip.identity import Fingerprints
    from spectraclip.index.build import build_index

    rng = np.random.default_rng(seed)
    k = 4
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    lab = rng.integers(0, k, n)
    x = centres[lab] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lon = west + rng.uniform(0, span, n)
    lat = south + rng.uniform(0, span, n)
    cols = {"geometry": [box(a, b, a + 0.01, b + 0.01).wkb for a, b in zip(lon, lat, strict=True)],
            "labels": [f"c{v}" for v in lab], "path": [None] * n}
    base.mkdir(parents=True, exist_ok=True)
    table = base / "t.parquet"
    write_embeddings(table, [f"w{i}" for i in range(n)], x, cols,
                     {"dim": dim, **Fingerprints("m" * 16, "p" * 16).to_metadata()})
    build_index([table], base / "idx")
    return base / "idx"
