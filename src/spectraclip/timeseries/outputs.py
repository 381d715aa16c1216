"""The files of a time series: the long table (one row per window and date), the windows table (one row per
window: trends, anomalies, change points) and the COGs painted from per-window values.

Painting blends each window's value over its pixels with the runner's window weight (`apps.blend`), per band:
a window missing at a date (NaN) gives no weight there, so a pixel is NaN only where no window had a value.
Strips are written as they are finished, so memory is bounded by one tile of rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from spectraclip.apps.blend import StripBlender
from spectraclip.io.cog import BlockWriter
from spectraclip.io.scene import Scene, SceneWindow


def _window_metas(grid: Scene, windows: Sequence[SceneWindow]) -> list[dict[str, Any]]:
    from rasterio.transform import Affine

    from spectraclip.geo import native_bounds

    metas = []
    for w in windows:
        tr = grid.affine @ Affine.translation(w.col, w.row)
        metas.append({"crs": grid.crs, "bounds": native_bounds(tuple(tr)[:6], w.height, w.width),
                      "width": w.width, "height": w.height, "window": w.to_dict()})
    return metas


def _write_geoparquet(path: Path, columns: dict[str, pa.Array], meta: dict[str, Any]) -> Path:
    import pyarrow.parquet as pq

    from spectraclip.geo import with_geo_metadata
    from spectraclip.io.atomic import atomic_path

    table = pa.table(columns)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"spectraclip": json.dumps(meta, default=str).encode()})
    table = with_geo_metadata(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def long_table_part(path: Path, grid: Scene, windows: Sequence[SceneWindow], day: date, status: np.ndarray,
                    vals: np.ndarray, queries: Sequence[str], classes: Sequence[str], derived: dict[str, np.ndarray],
                    embeddings: np.ndarray | None, meta: dict[str, Any]) -> Path:
    """The rows of one date (one per window): `id`, `window`, `row`, `col`, `size`, `date`, `status` (ok, cloud,
    nodata, error, outside), `valid_fraction`, `sim:<query>`, `p_<class>`, the derived series (e.g.
    `embedding_distance`), optionally `vector`, and the Major TOM columns (`timestamp` = the date). `vals`
    `[W, 1 + queries + classes]`, `derived` `{name: [W]}`, `embeddings` `[W, D]`."""
    from spectraclip.geo import MAJOR_TOM_TYPES, major_tom_columns

    W = len(windows)
    mt = major_tom_columns(_window_metas(grid, windows))
    cols: dict[str, pa.Array] = {
        "id": pa.array([f"{grid.id}:{w.index}@{day.isoformat()}" for w in windows]),
        "window": pa.array([w.index for w in windows], pa.int32()),
        "row": pa.array([w.row for w in windows], pa.int32()),
        "col": pa.array([w.col for w in windows], pa.int32()),
        "size": pa.array([w.height for w in windows], pa.int32()),
        "date": pa.array([day] * W, pa.date32()),
        "status": pa.array([str(v) for v in status], pa.string()),
        "valid_fraction": pa.array(vals[:, 0], pa.float32()),
    }
    for k, q in enumerate(queries):
        cols[f"sim:{q}"] = pa.array(vals[:, 1 + k], pa.float32())
    for k, c in enumerate(classes):
        cols[f"p_{c}"] = pa.array(vals[:, 1 + len(queries) + k], pa.float32())
    for name, s in derived.items():
        cols[name] = pa.array(s, pa.float32())
    if embeddings is not None:
        d = embeddings.shape[-1]
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), d)
    for name, typ in MAJOR_TOM_TYPES.items():
        if name == "timestamp":
            cols[name] = pa.array([datetime(day.year, day.month, day.day, tzinfo=UTC)] * W, typ)
        else:
            cols[name] = pa.array(mt[name], typ)
    return _write_geoparquet(path, cols, meta)


def merge_long_table(parts: Sequence[Path], path: Path) -> Path:
    """The date parts (`long_table_part`, same schema) streamed into one GeoParquet at `path`, atomically, one
    part in memory at a time; the geo bbox covers every part."""
    import pyarrow.parquet as pq

    from spectraclip.io.atomic import atomic_path

    schemas = [pq.read_schema(p) for p in parts]
    meta = dict(schemas[0].metadata or {})
    boxes = [json.loads(sc.metadata[b"geo"])["columns"]["geometry"].get("bbox") for sc in schemas
             if sc.metadata and b"geo" in sc.metadata]
    boxes = [b for b in boxes if b]
    if boxes and b"geo" in meta:
        geo = json.loads(meta[b"geo"])
        geo["columns"]["geometry"]["bbox"] = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                                              max(b[2] for b in boxes), max(b[3] for b in boxes)]
        meta[b"geo"] = json.dumps(geo).encode()
    schema = schemas[0].with_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for p in parts:
                writer.write_table(pq.read_table(p).replace_schema_metadata(meta))
    return path


def write_windows_table(path: Path, stack: Any, windows: Sequence[SceneWindow], dates: Sequence[date],
                        series: dict[str, np.ndarray], stats: dict[str, dict[str, Any]]) -> Path:
    """One row per window: for each series `<s>:slope` (per year), `<s>:slope_low` / `<s>:slope_high` (95 %),
    `<s>:tau`, `<s>:p_value`, `<s>:n` (dates with a value), `<s>:anomalies` and `<s>:changepoints` (dates)."""
    from spectraclip.geo import MAJOR_TOM_TYPES, major_tom_columns

    grid = stack.grid
    mt = major_tom_columns(_window_metas(grid, windows))
    cols: dict[str, pa.Array] = {
        "window": pa.array([w.index for w in windows], pa.int32()),
        "row": pa.array([w.row for w in windows], pa.int32()),
        "col": pa.array([w.col for w in windows], pa.int32()),
        "size": pa.array([w.height for w in windows], pa.int32()),
    }
    iso = [d.isoformat() for d in dates]
    for name, st in stats.items():
        trs = st["trends"]
        for attr, col in (("slope", "slope"), ("low", "slope_low"), ("high", "slope_high"), ("tau", "tau"),
                          ("p_value", "p_value")):
            cols[f"{name}:{col}"] = pa.array([getattr(tr, attr) for tr in trs], pa.float64())
        cols[f"{name}:n"] = pa.array([tr.n for tr in trs], pa.int32())
        cols[f"{name}:anomalies"] = pa.array([[iso[t] for t in np.flatnonzero(a)] for a in st["anomaly"]],
                                             pa.list_(pa.string()))
        cols[f"{name}:changepoints"] = pa.array([[iso[t] for t in cp] for cp in st["changepoints"]],
                                                pa.list_(pa.string()))
    for name in ("geometry", "centre_lat", "centre_lon", "utm_crs", "pixel_bbox"):
        cols[name] = pa.array(mt[name], MAJOR_TOM_TYPES[name])
    return _write_geoparquet(path, cols, {"dates": iso, "series": list(series)})


def paint(path: Path, grid: Scene, windows: Sequence[SceneWindow], values: np.ndarray, weight: str,
          descriptions: Sequence[str], tags: dict[str, str]) -> Path:
    """A float32 COG on `grid` of per-window values `[W, K]` (NaN: no value), blended with `weight`."""
    W, K = values.shape
    ok = np.isfinite(values)
    packed = np.concatenate([np.where(ok, values, 0.0), ok.astype(np.float32)], 1).astype(np.float32)
    tile = max(w.height for w in windows)
    blender = StripBlender(grid.height, grid.width, 2 * K, tile, weight)
    writer = BlockWriter(path, height=grid.height, width=grid.width, count=K, dtype="float32", crs=grid.crs,
                         transform=grid.transform, nodata=float("nan"), descriptions=list(descriptions), tags=tags)

    def flush(until: int) -> None:
        top, v, wsum = blender.pop_until(until)
        if v.shape[1]:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(v[K:] > 1e-6, v[:K] / np.maximum(v[K:], 1e-30), np.nan)
            out[:, wsum <= 0] = np.nan
            writer.write(top, out.astype(np.float32))

    writer.open()
    try:
        for w in sorted(windows, key=lambda w: (w.row, w.col)):
            if w.row > blender.top:
                flush(w.row)
            blender.add(w.row, w.col, packed[w.index], np.ones((w.height, w.width), bool))
        flush(grid.height)
    finally:
        writer.close()
    return writer.finish(resampling="average")


def paint_series(out: Path, name: str, grid: Scene, windows: Sequence[SceneWindow], dates: Sequence[date],
                 series: np.ndarray, stats: dict[str, Any], weight: str, tags: dict[str, str]) -> dict[str, Path]:
    """The three COGs of one series: `<name>.tif` (a band per date), `<name>.trend.tif` (slope per year,
    p-value, tau) and `<name>.anomaly.tif` (the robust z-score per date)."""
    iso = [d.isoformat() for d in dates]
    trs = stats["trends"]
    trend_vals = np.array([[tr.slope, tr.p_value, tr.tau] for tr in trs], np.float32).reshape(len(windows), 3)
    return {
        "values": paint(out / f"{name}.tif", grid, windows, series, weight, iso, tags),
        "trend": paint(out / f"{name}.trend.tif", grid, windows, trend_vals, weight,
                       ["slope_per_year", "p_value", "tau"], tags),
        "anomaly": paint(out / f"{name}.anomaly.tif", grid, windows, stats["z"], weight, iso, tags),
    }


__all__ = ["long_table_part", "merge_long_table", "paint", "paint_series", "write_windows_table"]
