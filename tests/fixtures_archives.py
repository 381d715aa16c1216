"""Tiny fake archives in the published formats (written by code, never downloaded); see docs/archives.md.

- SSL4EO-S12 v1.1 (DLR-MF-DAS/SSL4EO-S12-v1.1 README): one Zarr v2 zip per 64 locations, here
  `{root}/{split}/{S2L1C,S2L2A}/ssl4eos12_{split}_seasonal_data_000001.zarr.zip` holding `bands`
  (sample, time, band, y, x) int16, `cloud_mask` (sample, time, y, x) uint8, `center_lat`/`center_lon`/`crs`
  (sample), `file_id`/`sample_id`/`time_` (sample, time), `x_`/`y_` (sample, x|y) and the `band`/`sample`/`time`/
  `x`/`y` coordinates, consolidated metadata, xarray's `_ARRAY_DIMENSIONS` attributes.
- Llama3-SSL4EO-S12-v1.1-captions (dataset card): one CSV per zarr file (`{split}/<zarr name>.csv`, one row per
  sample and timestamp) and `{split}.parquet`, columns caption, question_1..3, file, sample_id, time_id, classes,
  tags, names.
- Major TOM Core-S2L2A (ESA-PhiLab/Major-TOM): parquet shard rows with one GeoTIFF (bytes) per band column, a PNG
  `thumbnail`, `cloud_mask` GeoTIFF, `product_id`, `grid_cell`, `product_datetime`; and the `metadata.parquet` rows
  (grid_cell, grid_row_u, grid_col_r, product_id, timestamp, centre_lat, centre_lon, crs, parquet_url, parquet_row).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
L2A_BANDS = [b for b in L1C_BANDS if b != "B10"]
SAMPLES = ["0080717", "0060573"]
TIMES = ["2020-11-16T02:30:01", "2021-02-14T02:31:11", "2021-05-25T02:29:41", "2021-08-18T02:30:39"]
# per (sample, time): fraction of the chip covered by clouds in the fixture's cloud_mask
CLOUDY = {(0, 1): 1.0, (1, 3): 0.5}


def _write_zarr(path: Path, bands: list[str], size: int, rng: np.random.Generator, level: str,
                samples: list[str] = SAMPLES) -> None:
    import zarr
    from zarr.storage import ZipStore

    n, t = len(samples), len(TIMES)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ZipStore(path, mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr 3 warns that fixed-length unicode is not in the v2 spec's core
        g = zarr.open_group(store, mode="w", zarr_format=2)

        def arr(name, data, dims, chunks=None):
            data = np.asarray(data)
            a = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape)
            a[...] = data
            a.attrs["_ARRAY_DIMENSIONS"] = dims

        # pixel values: a per-(sample, band) level plus noise, so bands and seasons differ
        base = (1000 + 100 * np.arange(len(bands))[None, None, :, None, None]
                + 500 * np.arange(n)[:, None, None, None, None])
        px = base + 10 * np.arange(t)[None, :, None, None, None] + rng.integers(0, 50, (n, t, len(bands), size, size))
        arr("bands", px.astype(np.int16), ["sample", "time", "band", "y", "x"], (1, 1, len(bands), size, size))
        mask = np.zeros((n, t, size, size), np.uint8)
        for (s, ti), frac in CLOUDY.items():
            mask[s, ti, : int(round(frac * size))] = 1  # 1 = thick cloud
        arr("cloud_mask", mask, ["sample", "time", "y", "x"], (1, 1, size, size))
        arr("band", np.array(bands, dtype="<U3"), ["band"])
        arr("sample", np.array(samples, dtype="<U7"), ["sample"])
        arr("time", np.arange(t, dtype=np.int64), ["time"])
        arr("x", np.arange(size, dtype=np.int64), ["x"])
        arr("y", np.arange(size, dtype=np.int64), ["y"])
        arr("center_lat", np.array([42.66, -30.64]), ["sample"])
        arr("center_lon", np.array([125.6, 121.4]), ["sample"])
        arr("crs", np.array([32651, 32751], dtype=np.int64), ["sample"])
        ids = [[f"{TIMES[i].replace('-', '').replace(':', '')}_T51TXX_{level}" for i in range(t)] for _ in range(n)]
        arr("file_id", np.array(ids, dtype="<U38"), ["sample", "time"])
        arr("sample_id", np.array([[f"{s}_{i}" for i in range(t)] for s in samples], dtype="<U9"), ["sample", "time"])
        arr("time_", np.array([TIMES] * n, dtype="datetime64[ns]"), ["sample", "time"])
        x0 = np.array([714900.0, 300000.0])
        y0 = np.array([4728000.0, 6610000.0])
        arr("x_", x0[:, None] + 10.0 * np.arange(size)[None], ["sample", "x"])
        arr("y_", y0[:, None] - 10.0 * np.arange(size)[None], ["sample", "y"])
        zarr.consolidate_metadata(store)
    store.close()


ZARR_NAME = "ssl4eos12_{split}_seasonal_data_{n:06d}.zarr.zip"


def file_samples(k: int) -> list[str]:
    """The sample ids of the fixture's k-th zarr file (0-based)."""
    return SAMPLES if k == 0 else [f"{int(s) + 7 * k:07d}" for s in SAMPLES]


def make_ssl4eo_v11(root: str | Path, split: str = "train", size: int = 16, seed: int = 0, files: int = 1) -> Path:
    """`root/{split}/S2L1C|S2L2A/<file>.zarr.zip` with 2 locations × 4 seasons per file; returns `root/{split}`."""
    rng = np.random.default_rng(seed)
    out = Path(root) / split
    for k in range(files):
        name = ZARR_NAME.format(split=split, n=k + 1)
        _write_zarr(out / "S2L1C" / name, L1C_BANDS, size, rng, "L1C", file_samples(k))
        _write_zarr(out / "S2L2A" / name, L2A_BANDS, size, rng, "L2A", file_samples(k))
    return out


def captions_rows(split: str = "train", k: int = 0) -> list[dict]:
    rows = []
    for s, sid in enumerate(file_samples(k)):
        for t in range(len(TIMES)):
            rows.append({
                "caption": f"The image is a satellite view of place {s} in season {t} with fields and a river.",
                "question_1": f"What is the largest body of water visible in the image? A river crossing place {s}.",
                "question_2": f"What is the most prominent agricultural feature? Fields in season {t}.",
                "question_3": "What is the most noticeable natural feature in the image? A forest.",
                "file": ZARR_NAME.format(split=split, n=k + 1),
                "sample_id": int(sid),  # the card shows it as an integer (leading zeros dropped)
                "time_id": t,
                "classes": "land, wood, reservoir",
                "tags": "land, natural, wood, water",
                "names": "Renhe Reservoir (reservoir)",
            })
    return rows


def make_captions(root: str | Path, split: str = "train", files: int = 1) -> Path:
    """`root/{split}/<zarr name without .zarr.zip>.csv` and `root/{split}.parquet`; returns `root`."""
    import pandas as pd

    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for k in range(files):
        df = pd.DataFrame(captions_rows(split, k))
        df.to_csv(root / split / ZARR_NAME.format(split=split, n=k + 1).replace(".zarr.zip", ".csv"), index=False)
        frames.append(df)
    pd.concat(frames, ignore_index=True).to_parquet(root / f"{split}.parquet", index=False)
    return root


# ------------------------------------------------------------------------------------------------ Major TOM
MT_BANDS_10M = ["B02", "B03", "B04", "B08"]
MT_BANDS_20M = ["B05", "B06", "B07", "B8A", "B11", "B12"]
MT_BANDS_60M = ["B01", "B09"]
MT_CELLS = [("433U_1040R", 433, 1040), ("433U_1041R", 433, 1041), ("12D_7L", -12, -7)]


def _tif_bytes(arr: np.ndarray, crs: str, transform) -> bytes:
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                      crs=crs, transform=transform) as dst:
            dst.write(arr, 1)
        return bytes(mem.read())


def major_tom_pixels(size: int = 16, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per row, each band at its native size (10 m: size, 20 m: size/2, 60 m: size/6 rounded up)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(len(MT_CELLS)):
        bands = {}
        for names, side in ((MT_BANDS_10M, size), (MT_BANDS_20M, size // 2), (MT_BANDS_60M, max(1, size // 6 + 1))):
            for i, b in enumerate(names):
                bands[b] = (1000 + 300 * r + 20 * i + rng.integers(0, 40, (side, side))).astype(np.uint16)
        out.append(bands)
    return out


def major_tom_transform(r: int, size: int):
    from rasterio.transform import from_origin

    return from_origin(500000.0 + 20000.0 * r, 4800000.0, 10.0, 10.0)


def make_major_tom_core(root: str | Path, size: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """`root/images/part_00001.parquet` (3 rows) and `root/metadata.parquet`; returns both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from rasterio.transform import from_origin

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    crs = "EPSG:32633"
    cols: dict[str, list] = {"product_id": [], "grid_cell": [], "product_datetime": [], "thumbnail": []}
    for b in MT_BANDS_60M + MT_BANDS_10M + MT_BANDS_20M + ["cloud_mask"]:
        cols[b] = []
    meta: dict[str, list] = {k: [] for k in ("grid_cell", "grid_row_u", "grid_col_r", "product_id", "timestamp",
                                             "cloud_cover", "nodata", "centre_lat", "centre_lon", "crs",
                                             "parquet_url", "parquet_row")}
    for r, (bands, (cell, row_u, col_r)) in enumerate(zip(major_tom_pixels(size, seed), MT_CELLS, strict=True)):
        x0 = 500000.0 + 20000.0 * r
        pid = f"S2A_MSIL2A_2020070{r + 1}T100031_N0214_R122_T33UUP_2020070{r + 1}T130202"
        cols["product_id"].append(pid)
        cols["grid_cell"].append(cell)
        cols["product_datetime"].append(f"2020070{r + 1}T100031")
        for b, arr in bands.items():
            res = 10.0 * size / arr.shape[0]
            cols[b].append(_tif_bytes(arr, crs, from_origin(x0, 4800000.0, res, res)))
        cols["cloud_mask"].append(_tif_bytes(np.zeros((size, size), np.uint8), crs, from_origin(x0, 4800000.0, 10, 10)))
        rgb = np.stack([bands[b] for b in ("B04", "B03", "B02")], -1) / 3000 * 255
        buf = io.BytesIO()
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        cols["thumbnail"].append(buf.getvalue())
        for k, v in (("grid_cell", cell), ("grid_row_u", row_u), ("grid_col_r", col_r), ("product_id", pid),
                     ("timestamp", f"2020-07-0{r + 1} 10:00:31"), ("cloud_cover", 0.0), ("nodata", 0.0),
                     ("centre_lat", 43.3), ("centre_lon", 12.0 + 0.25 * r), ("crs", crs),
                     ("parquet_url", "images/part_00001.parquet"), ("parquet_row", r)):
            meta[k].append(v)
    shard = root / "images" / "part_00001.parquet"
    pq.write_table(pa.table(cols), shard, row_group_size=1)  # the published shards hold few rows per group
    meta_path = root / "metadata.parquet"
    pq.write_table(pa.table(meta), meta_path)
    return shard, meta_path
