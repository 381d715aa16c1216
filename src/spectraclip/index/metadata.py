"""The metadata Parquet beside an index: one row per vector id (row i = faiss id i), with the item's id,
path, WGS84 footprint (WKB `geometry` and its bbox), timestamp, bands and any label columns.

Columns of the embeddings table are read when they exist and null otherwise: GeoParquet tables give
`geometry`/`timestamp`; older tables give a native `bounds` + `crs` or a `lon`/`lat`. Bounding boxes, centres
and times are derived by `geo` (`wgs84_bbox`, `footprint_centre`, `parse_time`), as the tables' own columns are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from spectraclip.embeddings import EmbeddingsTable
from spectraclip.geo import TIME_KEYS, footprint_centre, parse_time, wgs84_bbox

log = logging.getLogger(__name__)

BBOX_COLUMNS = ("minx", "miny", "maxx", "maxy")
CORE_COLUMNS = ("id", "path", "geometry", "timestamp", "bands", "lon", "lat", *BBOX_COLUMNS)
SKIP_COLUMNS = frozenset({"vector"})


def _box_wkb(bbox: tuple[float, float, float, float] | None) -> bytes | None:
    if bbox is None:
        return None
    from shapely.geometry import box

    return box(*bbox).wkb


def _column(table: EmbeddingsTable, name: str) -> list[Any]:
    return list(table.columns.get(name) or [None] * len(table))


def metadata_from_table(table: EmbeddingsTable, source: str) -> pa.Table:
    """The index metadata rows of one embeddings table (in its row order)."""
    n = len(table)
    geometry = _column(table, "geometry")
    bounds, crs = _column(table, "bounds"), _column(table, "crs")
    lon = _column(table, "centre_lon" if "centre_lon" in table.columns else "lon")
    lat = _column(table, "centre_lat" if "centre_lat" in table.columns else "lat")
    time_col = next((c for c in TIME_KEYS if c in table.columns), None)
    times = [parse_time(v) for v in _column(table, time_col)] if time_col else [None] * n
    bands = _column(table, "bands")
    if all(b is None for b in bands) and table.metadata.get("bands"):
        bands = [table.metadata["bands"]] * n
    boxes, wkbs = [], []
    for i in range(n):  # bbox and centre as geo derives them (the encoder's centre kept where the table has it)
        bb = wgs84_bbox(crs[i], bounds[i], geometry[i])
        if bb is None and lon[i] is not None and lat[i] is not None:
            bb = (float(lon[i]), float(lat[i]), float(lon[i]), float(lat[i]))
        boxes.append(bb)
        wkbs.append(bytes(geometry[i]) if geometry[i] is not None else _box_wkb(bb))
        if bb is not None and (lon[i] is None or lat[i] is None):
            lon[i], lat[i] = footprint_centre(crs[i], bounds[i], geometry[i] or _box_wkb(bb)) or (None, None)
    arrays: dict[str, pa.Array] = {
        "id": pa.array([str(i) for i in table.ids], pa.string()),
        "path": pa.array([None if p is None else str(p) for p in _column(table, "path")], pa.string()),
        "geometry": pa.array(wkbs, pa.binary()),
        "timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "bands": pa.array([None if b is None else str(b) for b in bands], pa.string()),
        "lon": pa.array([None if v is None else float(v) for v in lon], pa.float64()),
        "lat": pa.array([None if v is None else float(v) for v in lat], pa.float64()),
    }
    for j, name in enumerate(BBOX_COLUMNS):
        arrays[name] = pa.array([None if bb is None else bb[j] for bb in boxes], pa.float64())
    arrays["source_table"] = pa.array([source] * n, pa.string())
    for name, values in table.columns.items():
        if name in arrays or name in SKIP_COLUMNS or name in ("centre_lon", "centre_lat"):
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them readable as JSON text
            arrays[name] = pa.array([None if v is None else json.dumps(v, default=str) for v in values])
    return pa.table(arrays)


def concat_metadata(parts: Sequence[pa.Table]) -> pa.Table:
    """Rows of several tables in order; columns missing in some tables become null there."""
    return pa.concat_tables(list(parts), promote_options="permissive")


def row_record(meta: pa.Table, row: int) -> dict[str, Any]:
    """One item's metadata as JSON-ready values (geometry as WKT, timestamp as ISO 8601)."""
    rec = meta.slice(row, 1).to_pylist()[0]
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if k == "geometry":
            if v is not None:
                from shapely import wkb as swkb

                v = swkb.loads(bytes(v)).wkt
        elif isinstance(v, datetime):
            v = v.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(v, bytes):
            v = v.hex()
        elif isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out


__all__ = ["BBOX_COLUMNS", "CORE_COLUMNS", "concat_metadata", "metadata_from_table", "parse_time", "row_record"]
