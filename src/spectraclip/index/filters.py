"""Filters on index metadata (bbox in lon/lat, date range, equality on any column), evaluated to a row
mask before ranking, so `k` results come back whenever `k` items pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spectraclip.geo import parse_time
from spectraclip.index.errors import QueryError

NOT_FILTERABLE = frozenset({"geometry"})


@dataclass
class Filters:
    """What an item must satisfy: footprint intersects `bbox` (west, south, east, north), timestamp in
    `[start, end]` (inclusive; a date alone means that whole day for `end`), `equals` column values
    (a list-valued column such as `labels` matches when it contains the value)."""

    bbox: tuple[float, float, float, float] | None = None
    start: str | None = None
    end: str | None = None
    equals: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        """A hashable form, for caching masks."""
        return (self.bbox, self.start, self.end, tuple(sorted((k, str(v)) for k, v in self.equals.items())))

    def is_empty(self) -> bool:
        return self.bbox is None and not self.start and not self.end and not self.equals

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        data = dict(data or {})
        bbox = data.get("bbox")
        return cls(tuple(float(v) for v in bbox) if bbox else None, data.get("start"), data.get("end"),  # type: ignore
                   dict(data.get("equals") or {}))


def _check_bbox(bbox: tuple[float, ...]) -> None:
    if len(bbox) != 4:
        raise QueryError(f"filter bbox needs 4 numbers (west, south, east, north), got {len(bbox)}")
    w, s, e, n = bbox
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise QueryError(f"filter bbox {list(bbox)} is not west,south,east,north in degrees (south <= north)")


def _time(text: str, option: str, end: bool) -> np.datetime64:
    t = parse_time(text)
    if t is None:
        raise QueryError(f"filter {option} {text!r} is not an ISO date or time (e.g. 2021-06-30)")
    value = np.datetime64(t.replace(tzinfo=None), "ms")
    if end and len(text.strip()) == 10:  # a bare date: include the whole day
        value = value + np.timedelta64(1, "D") - np.timedelta64(1, "ms")
    return value


class ColumnCache:
    """Metadata columns converted once for filtering (bbox as float arrays, timestamps, string casts)."""

    def __init__(self, meta: pa.Table) -> None:
        self.meta = meta
        self._arrays: dict[str, Any] = {}

    def floats(self, name: str) -> np.ndarray:
        if ("f", name) not in self._arrays:  # null -> NaN, which never matches
            self._arrays[("f", name)] = self.meta.column(name).to_numpy(zero_copy_only=False).astype(float)
        return self._arrays[("f", name)]

    def times(self) -> np.ndarray:
        if "t" not in self._arrays:
            self._arrays["t"] = self.meta.column("timestamp").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        return self._arrays["t"]

    def strings(self, name: str) -> pa.ChunkedArray:
        if ("s", name) not in self._arrays:
            self._arrays[("s", name)] = self.meta.column(name).cast(pa.string())
        return self._arrays[("s", name)]


def filter_mask(meta: pa.Table, filters: Filters, cache: ColumnCache | None = None) -> np.ndarray | None:
    """Boolean row mask of the items passing `filters`, or None when there is nothing to filter."""
    if filters.is_empty():
        return None
    cache = cache or ColumnCache(meta)
    n = len(meta)
    mask = np.ones(n, dtype=bool)
    if filters.bbox is not None:
        _check_bbox(filters.bbox)
        w, s, e, nth = filters.bbox
        minx, miny, maxx, maxy = (cache.floats(c) for c in ("minx", "miny", "maxx", "maxy"))
        with np.errstate(invalid="ignore"):
            lat_ok = (miny <= nth) & (maxy >= s)
            if w <= e:
                lon_ok = (minx <= e) & (maxx >= w)
            else:  # crosses the antimeridian
                lon_ok = (maxx >= w) | (minx <= e)
        mask &= lat_ok & lon_ok  # items without a footprint never match a bbox
    if filters.start or filters.end:
        ts = cache.times()
        known = ~np.isnat(ts)
        mask &= known
        if filters.start:
            mask &= known & (ts >= _time(filters.start, "start", end=False))
        if filters.end:
            mask &= known & (ts <= _time(filters.end, "end", end=True))
    for name, value in filters.equals.items():
        if name not in meta.column_names or name in NOT_FILTERABLE:
            usable = sorted(c for c in meta.column_names if c not in NOT_FILTERABLE)
            raise QueryError(f"filter column {name!r} is not in the index metadata (columns: {', '.join(usable)})")
        col = meta.column(name)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            flat = pc.list_parent_indices(col)
            vals = pc.list_flatten(col)
            match = pc.equal(vals.cast(pa.string()), pa.scalar(str(value)))
            rows = np.asarray(flat)[np.asarray(pc.fill_null(match, False))]
            hit = np.zeros(n, dtype=bool)
            hit[rows] = True
        else:
            match = pc.equal(cache.strings(name), pa.scalar(_as_text(value)))
            hit = np.asarray(pc.fill_null(match, False))
        mask &= hit
    return mask


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["ColumnCache", "Filters", "filter_mask", "parse_filters"]


def parse_filters(items: Sequence[str] | None) -> Filters:
    """`--filter bbox=W,S,E,N`, `start=DATE`, `end=DATE`, or `COLUMN=VALUE` (repeatable) as `Filters`; a malformed
    one raises `QueryError` naming it."""
    f = Filters()
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryError(f"--filter {item!r}: expected NAME=VALUE (bbox=W,S,E,N, start=DATE, end=DATE or "
                             "COLUMN=VALUE)")
        if key == "bbox":
            try:
                west, south, east, north = (float(v) for v in value.split(","))
            except ValueError:
                raise QueryError(f"--filter bbox={value}: expected four numbers west,south,east,north") from None
            f.bbox = (west, south, east, north)
        elif key in ("start", "end"):
            setattr(f, key, value)
        else:
            f.equals[key] = value
    return f
