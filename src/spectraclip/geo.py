"""Where an embedding's item lies: WGS84 footprints and the Major TOM columns, and GeoParquet's `geo` metadata.

The encoder collects each item's native georeference (CRS, affine transform, size, bounds, centre
lon/lat); `major_tom_columns` turns it into the columns Major TOM embedding datasets use
(`geometry`, `centre_lat`, `centre_lon`, `utm_crs`, `pixel_bbox`, `timestamp`), and `geo_metadata`
describes the `geometry` column the way GeoParquet 1.1 readers (geopandas, DuckDB, GDAL) expect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

GEOPARQUET_VERSION = "1.1.0"
GEOMETRY_COLUMN = "geometry"
# Arrow types of the Major TOM columns, so a batch where every value is null still has the right type
MAJOR_TOM_TYPES: dict[str, pa.DataType] = {
    "geometry": pa.binary(),
    "centre_lat": pa.float64(),
    "centre_lon": pa.float64(),
    "utm_crs": pa.string(),
    "pixel_bbox": pa.list_(pa.int64()),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
# sample.meta keys (and table columns) that may hold the acquisition time, most specific first
TIME_KEYS = ("timestamp", "datetime", "acquisition_time", "sensing_time", "acquisition_date", "date", "acquired",
             "time")
MAX_EDGE_POINTS = 8  # points per footprint edge of a large window, so a reprojected edge follows the curve
PIXELS_PER_EDGE_POINT = 512  # a chip up to this many pixels a side is reprojected by its corners alone


@lru_cache(maxsize=256)
def _epsg(crs: str) -> int | None:
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(crs).to_epsg()
    except Exception as exc:  # an unparsable CRS: no EPSG code
        log.debug("no EPSG code for %s: %s", crs, exc)
        return None


def utm_crs(crs: str | None) -> str | None:
    """`"EPSG:326NN"` / `"EPSG:327NN"` when `crs` is a WGS84 UTM zone, else None."""
    if not crs:
        return None
    code = _epsg(str(crs))
    if code is not None and (32601 <= code <= 32660 or 32701 <= code <= 32760):
        return f"EPSG:{code}"
    return None


def _rings(bounds: np.ndarray, n: int) -> np.ndarray:
    """`[k, 4n + 1, 2]` closed boundaries of `k` rectangles (left, bottom, right, top), counter-clockwise
    from the lower left, with `n` points per edge."""
    left, bottom, right, top = (bounds[:, i : i + 1] for i in range(4))
    t = np.arange(n) / n
    xs = np.concatenate([left + (right - left) * t, np.repeat(right, n, 1), right + (left - right) * t,
                         np.repeat(left, n, 1), left], axis=1)
    ys = np.concatenate([np.repeat(bottom, n, 1), bottom + (top - bottom) * t, np.repeat(top, n, 1),
                         top + (bottom - top) * t, bottom], axis=1)
    return np.stack([xs, ys], axis=-1)


def footprints_wgs84(crs: Sequence[str | None], bounds: Sequence[Sequence[float] | None],
                     edge_points: Sequence[int] | None = None) -> list[Any]:
    """Footprints (shapely Polygons in lon/lat, WGS84; None without a georeference) of many items at once.

    Items sharing a CRS and edge density are reprojected in one call (`edge_points[i]` points per edge;
    more for large windows, whose edges curve in lon/lat). Exteriors are counter-clockwise.
    """
    import shapely
    from rasterio.warp import transform as warp

    out: list[Any] = [None] * len(crs)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (c, b) in enumerate(zip(crs, bounds, strict=True)):
        if c and b is not None:
            n = 1 if _epsg(str(c)) == 4326 else max(1, int(edge_points[i]) if edge_points else 1)
            groups.setdefault((str(c), n), []).append(i)
    for (c, n), idx in groups.items():
        rings = _rings(np.asarray([[float(v) for v in bounds[i]] for i in idx], dtype=np.float64), n)
        if _epsg(c) != 4326:
            try:
                xs, ys = warp(c, "EPSG:4326", rings[..., 0].ravel().tolist(), rings[..., 1].ravel().tolist())
            except Exception as exc:  # an exotic CRS: no footprint rather than a wrong one
                log.debug("no WGS84 footprint for CRS %s: %s", c, exc)
                continue
            rings = np.stack([np.asarray(xs), np.asarray(ys)], axis=-1).reshape(rings.shape)
        polys = shapely.orient_polygons(shapely.polygons(rings), exterior_cw=False)
        for i, poly in zip(idx, polys, strict=True):
            out[i] = poly
    return out


def footprint_wgs84(crs: str | None, bounds: Sequence[float] | None, edge_points: int = 1):
    """The item's footprint as a shapely Polygon in lon/lat (WGS84), or None without a georeference."""
    return footprints_wgs84([crs], [bounds], [edge_points])[0]


def pixel_bbox(meta: Mapping[str, Any]) -> list[int] | None:
    """`[col_off, row_off, col_off + width, row_off + height]` of the item's window in its product.

    A whole chip is `[0, 0, width, height]`; a scene window says where it is with `meta["window"]`
    (`[col_off, row_off, width, height]`, or the `SceneWindow.to_dict()` record) or `meta["col_off"]`/`meta["row_off"]`.
    """
    if meta.get("pixel_bbox") is not None:
        return [int(v) for v in meta["pixel_bbox"]]
    window = meta.get("window")
    if isinstance(window, Mapping):  # a scene window's own record (io.scene.SceneWindow.to_dict)
        col, row, w, h = (int(window[k]) for k in ("col", "row", "width", "height"))
        return [col, row, col + w, row + h]
    if window is not None:
        col, row, w, h = (int(v) for v in window)
        return [col, row, col + w, row + h]
    if meta.get("width") is None or meta.get("height") is None:
        return None
    col, row = int(meta.get("col_off") or 0), int(meta.get("row_off") or 0)
    return [col, row, col + int(meta["width"]), row + int(meta["height"])]


def parse_time(value: Any) -> datetime | None:
    """The one reading of a time value: a datetime, a date, ISO-8601 text (with or without zone, `Z` too) or epoch
    seconds, as an aware UTC datetime (a naive one is taken as UTC); None when empty or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            log.debug("unreadable time %r", text)
            return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None


def item_timestamp(meta: Mapping[str, Any]) -> datetime | None:
    """The acquisition time from the item's metadata (the first of TIME_KEYS that `parse_time` reads), else None."""
    for key in TIME_KEYS:
        t = parse_time(meta.get(key))
        if t is not None:
            return t
    return None


def native_bounds(transform: Sequence[float] | None, height: int, width: int) -> list[float] | None:
    """`[left, bottom, right, top]` of a `height` x `width` raster with affine `transform` in its own CRS."""
    if not transform:
        return None
    from rasterio.transform import Affine, array_bounds

    return [float(v) for v in array_bounds(height, width, Affine(*transform[:6]))]


def footprint_centre(crs: str | None = None, bounds: Sequence[float] | None = None,
                     footprint: Any = None) -> tuple[float, float] | None:
    """The one centre of an item in (lon, lat): the centre of its native `bounds` reprojected from `crs`, or,
    with no native georeference, the centroid of its WGS84 `footprint` (a shapely geometry or WKB); else None."""
    if crs and bounds is not None:
        from rasterio.warp import transform as warp

        left, bottom, right, top = (float(v) for v in bounds)
        try:
            xs, ys = warp(crs, "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
            return float(xs[0]), float(ys[0])
        except Exception as exc:  # an exotic CRS: fall back on the footprint
            log.debug("no lon/lat centre in %s: %s", crs, exc)
    poly = _geometry(footprint)
    if poly is None or poly.is_empty:
        return None
    c = poly.centroid
    return float(c.x), float(c.y)


def wgs84_bbox(crs: str | None = None, bounds: Sequence[float] | None = None,
               footprint: Any = None) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of an item: its WGS84 `footprint`'s bounds, else its native `bounds`
    reprojected from `crs` (densified edges); None without either."""
    poly = _geometry(footprint)
    if poly is not None and not poly.is_empty:
        return tuple(float(v) for v in poly.bounds)  # type: ignore[return-value]
    if bounds is None or not crs:
        return None
    from rasterio.warp import transform_bounds

    try:
        return tuple(float(v) for v in transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=5))  # type: ignore
    except Exception as exc:
        log.debug("no WGS84 bounds for %s in %s: %s", bounds, crs, exc)
        return None


def _geometry(footprint: Any) -> Any:
    """A shapely geometry from a geometry or WKB bytes (None for None or a broken WKB)."""
    if footprint is None or not isinstance(footprint, bytes | bytearray | memoryview):
        return footprint
    import shapely

    try:
        return shapely.from_wkb(bytes(footprint))
    except Exception:  # a broken geometry is one item's problem
        return None


def major_tom_columns(metas: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The Major TOM columns of items from their georeference dicts (`inference.georef_meta` keys).

    `geometry` holds WKB bytes of the WGS84 footprint (None without a georeference); the centre is the
    encoder's lon/lat when known (`footprint_centre` of the native bounds), else `footprint_centre` of the
    footprint.
    """
    import shapely

    cols: dict[str, list[Any]] = {name: [] for name in MAJOR_TOM_TYPES}
    sides = [max(int(m.get("width") or 0), int(m.get("height") or 0)) for m in metas]
    polys = footprints_wgs84([m.get("crs") for m in metas], [m.get("bounds") for m in metas],
                             [min(MAX_EDGE_POINTS, 1 + side // PIXELS_PER_EDGE_POINT) for side in sides])
    for meta, poly in zip(metas, polys, strict=True):
        lon, lat = meta.get("lon"), meta.get("lat")
        if poly is not None and (lon is None or lat is None):
            lon, lat = footprint_centre(footprint=poly) or (None, None)
        cols["geometry"].append(shapely.to_wkb(poly) if poly is not None else None)
        cols["centre_lat"].append(float(lat) if lat is not None else None)
        cols["centre_lon"].append(float(lon) if lon is not None else None)
        cols["utm_crs"].append(utm_crs(meta.get("crs")))
        cols["pixel_bbox"].append(pixel_bbox(meta))
        cols["timestamp"].append(item_timestamp(meta))
    return cols


def geo_metadata(geometry: pa.Array | pa.ChunkedArray) -> dict[str, Any]:
    """GeoParquet 1.1 `geo` metadata of a WKB polygon column in WGS84 lon/lat (CRS omitted: OGC:CRS84)."""
    import shapely

    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Polygon"], "orientation": "counterclockwise"}
    geoms = shapely.from_wkb(geometry.to_pylist()) if len(geometry) else []
    present = [g for g in geoms if g is not None]
    if present:
        column["bbox"] = [float(v) for v in shapely.total_bounds(present)]
    return {"version": GEOPARQUET_VERSION, "primary_column": GEOMETRY_COLUMN,
            "columns": {GEOMETRY_COLUMN: column}}


def with_geo_metadata(table: pa.Table) -> pa.Table:
    """`table` with its `geo` schema metadata (re)computed when it has a `geometry` column."""
    if GEOMETRY_COLUMN not in table.column_names:
        return table
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo_metadata(table.column(GEOMETRY_COLUMN))).encode()
    return table.replace_schema_metadata(meta)


__all__ = ["GEOMETRY_COLUMN", "MAJOR_TOM_TYPES", "TIME_KEYS", "footprint_centre", "footprint_wgs84",
           "footprints_wgs84", "geo_metadata", "item_timestamp", "major_tom_columns", "native_bounds", "parse_time",
           "pixel_bbox", "utm_crs", "wgs84_bbox", "with_geo_metadata"]
