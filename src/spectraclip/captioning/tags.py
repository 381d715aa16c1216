"""Map tags for image footprints from Overture Maps: the features that intersect each image, clipped,
measured in metres and sorted by size, so a captioner can mention what is really there (and its names).

Sources: the Overture release GeoParquet fetched for a footprint's bounding box with the `overturemaps`
package (`OvertureMapsSource`, the real remote source), or a local GeoParquet file / folder
(`LocalOvertureSource`, offline). Per image the features are reprojected to the image CRS, clipped to
the footprint and measured; polygons under `min_area_m2` (2,500 m² = 5×5 pixels at 10 m), lines shorter
than `sqrt(min_area_m2)` (50 m) and unnamed points are dropped. Rows are sorted polygons first (by area),
then lines (by length), then named points (places). Every property of a feature is kept (`tags_json`),
boolean flags such as `is_intermittent` are listed in `flags`, and place names in `name`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_path
from spectraclip.io.manifest import ManifestError, read_numbered_rows, resolve_path, row_location

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import pandas as pd

# Overture feature types used for captions, and their themes (as in the release's theme=/type= layout).
OVERTURE_TYPES: dict[str, str] = {
    "land_cover": "base",
    "land_use": "base",
    "land": "base",
    "water": "base",
    "infrastructure": "base",
    "building": "buildings",
    "segment": "transportation",
    "place": "places",
}
DEFAULT_TYPES: tuple[str, ...] = tuple(OVERTURE_TYPES)
MIN_AREA_M2 = 2500.0
TAG_COLUMNS = (
    "image_id", "rank", "overture_type", "theme", "feature_id", "class", "subtype", "name",
    "geometry_kind", "area_m2", "length_m", "cover_fraction", "position", "flags", "tags_json", "image_crs",
)
_SKIP_PROPS = {"geometry", "bbox", "theme", "type"}


class TagsError(SpectraclipError):
    """A footprint, tag source or tags table that cannot be used; the message names the file or option."""


@dataclass(frozen=True)
class Footprint:
    """An image's id, source path and bounds `(minx, miny, maxx, maxy)` in its own CRS."""

    id: str
    crs: str
    bounds: tuple[float, float, float, float]
    path: str | None = None

    def bounds_wgs84(self) -> tuple[float, float, float, float]:
        """Bounds in longitude/latitude (densified, so curved edges of the reprojected box are covered)."""
        from rasterio.warp import transform_bounds

        return tuple(transform_bounds(self.crs, "EPSG:4326", *self.bounds, densify_pts=21))  # type: ignore


def item_id(path: str | Path) -> str:
    """The id of an image item: the file stem (`a/b/x.tif` -> `x`) or the band folder's name."""
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def footprint_of(path: str | Path, id: str | None = None) -> Footprint:
    """Footprint of a GeoTIFF or a band folder (its first GeoTIFF) from the raster's CRS and transform."""
    import rasterio

    p = Path(path)
    file = p
    if p.is_dir():
        tifs = sorted(x for x in p.rglob("*") if x.suffix.lower() in (".tif", ".tiff"))
        if not tifs:
            raise TagsError(f"{p}: band folder holds no GeoTIFF to take a footprint from")
        file = tifs[0]
    try:
        with rasterio.open(file) as ds:
            if ds.crs is None:
                raise TagsError(f"{file}: raster has no CRS, cannot place it on the map")
            b = ds.bounds
            return Footprint(id or item_id(p), ds.crs.to_string(), (b.left, b.bottom, b.right, b.top), str(p))
    except rasterio.errors.RasterioError as exc:
        raise TagsError(f"{file}: cannot read georeferencing ({exc})") from exc


def footprints_from_table(path: str | Path) -> list[Footprint]:
    """Footprints from a table (any manifest format of `spectraclip.io.manifest`) with
    `id, minx, miny, maxx, maxy[, crs]` (default EPSG:4326) or a caption manifest with `id, path`
    (footprints read from the rasters)."""
    p = Path(path)
    try:
        numbered = read_numbered_rows(p)
    except ManifestError as exc:
        raise TagsError(str(exc)) from exc
    cols = list(dict.fromkeys(k for _, r in numbered for k in r))
    if "id" not in cols:
        raise TagsError(f"{p}: footprint table needs an 'id' column; has {', '.join(cols) or 'no columns'}")
    box = ("minx", "miny", "maxx", "maxy")
    out = []
    for number, r in numbered:
        try:
            if set(box) <= set(cols):
                out.append(Footprint(str(r["id"]), str(r.get("crs") or "EPSG:4326"),
                                     tuple(float(r[k]) for k in box)))  # type: ignore[arg-type]
            elif "path" in cols:
                out.append(footprint_of(resolve_path(p.parent, str(r["path"])), str(r["id"])))
            else:
                raise TagsError(f"{p}: footprint table needs minx/miny/maxx/maxy columns or a 'path' column")
        except (TypeError, ValueError) as exc:
            raise TagsError(f"{row_location(p, number)}: bad footprint row ({exc})") from exc
    return out


class TagSource(Protocol):
    """Where Overture features come from; `features` returns a GeoDataFrame in EPSG:4326."""

    description: str

    def features(self, overture_type: str, bbox: tuple[float, float, float, float]) -> gpd.GeoDataFrame: ...


class LocalOvertureSource:
    """Overture GeoParquet on disk: one file (with a `type` column or named `<type>.parquet`) or a folder
    in the release layout (`theme=base/type=water/*.parquet`) or of `<type>.parquet` files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise TagsError(f"{self.path}: Overture GeoParquet file or folder not found")
        self.description = f"local:{self.path}"
        files = [self.path] if self.path.is_file() else sorted(self.path.rglob("*.parquet"))
        if not files:
            raise TagsError(f"{self.path}: folder holds no .parquet files")
        self._files = files

    def _files_for(self, overture_type: str) -> list[tuple[Path, bool]]:
        """(file, needs a `type ==` filter) for one Overture type."""
        import pyarrow.parquet as pq

        out = []
        for f in self._files:
            parts = f.relative_to(self.path).parts if f != self.path else ()
            if any(part.startswith("type=") for part in parts):
                if f"type={overture_type}" in parts:
                    out.append((f, False))
            elif f.stem == overture_type or f.parent.name == overture_type:
                out.append((f, False))
            elif "type" in pq.read_schema(f).names:
                out.append((f, True))
        return out

    def features(self, overture_type: str, bbox: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
        import geopandas as gpd
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        frames = []
        for f, by_type in self._files_for(overture_type):
            dataset = ds.dataset(f, format="parquet")
            names = dataset.schema.names
            if "geometry" not in names:
                raise TagsError(f"{f}: not Overture GeoParquet (no 'geometry' column)")
            expr = None
            if by_type:
                expr = pc.field("type") == overture_type
            if "bbox" in names:  # Overture's per-feature bbox struct: push the bbox test down to Parquet
                xmin, ymin, xmax, ymax = bbox
                box_expr = ((pc.field("bbox", "xmin") <= xmax) & (pc.field("bbox", "xmax") >= xmin)
                            & (pc.field("bbox", "ymin") <= ymax) & (pc.field("bbox", "ymax") >= ymin))
                expr = box_expr if expr is None else expr & box_expr
            df = dataset.to_table(filter=expr).to_pandas()
            geom = gpd.GeoSeries.from_wkb(df.pop("geometry"), crs="EPSG:4326")
            frames.append(gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326"))
        if not frames:
            return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs="EPSG:4326")
        import pandas as pd

        gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
        return gdf.cx[bbox[0]:bbox[2], bbox[1]:bbox[3]]


class OvertureMapsSource:
    """The Overture Maps release on the cloud, fetched per bounding box with the `overturemaps` package."""

    def __init__(self, release: str | None = None, connect_timeout: int | None = 30,
                 request_timeout: int | None = 120) -> None:
        self.release = release
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.description = f"overturemaps:{release or 'latest'}"

    def features(self, overture_type: str, bbox: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
        try:
            from overturemaps import core
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise TagsError("the remote Overture source needs `pip install overturemaps`") from exc
        gdf = core.geodataframe(overture_type, bbox=bbox, release=self.release,
                                connect_timeout=self.connect_timeout, request_timeout=self.request_timeout)
        if gdf.crs is None:
            gdf = gdf.set_crs("EPSG:4326")
        return gdf


def open_source(spec: str | Path) -> TagSource:
    """`overture` / `overture:<release>` for the remote release, else a local GeoParquet file or folder
    (an existing local path always wins)."""
    text = str(spec)
    if not Path(text).exists() and (text == "overture" or text.startswith("overture:")):
        release = text.split(":", 1)[1] if ":" in text else ""
        return OvertureMapsSource(release or None)
    return LocalOvertureSource(text)


def _jsonable(value: Any) -> Any:
    """Plain JSON values from what pandas/pyarrow give back (numpy arrays, numpy scalars, NaN, bytes)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _primary_name(props: dict[str, Any]) -> str | None:
    names = props.get("names")
    if isinstance(names, dict) and names.get("primary"):
        return str(names["primary"])
    return None


def _class_of(overture_type: str, props: dict[str, Any]) -> str | None:
    if props.get("class"):
        return str(props["class"])
    cats = props.get("categories")
    if overture_type == "place" and isinstance(cats, dict) and cats.get("primary"):
        return str(cats["primary"])
    return None


def _position(geom: Any, bounds: tuple[float, float, float, float]) -> str:
    """Where the feature's centre lies in the (north-up) image, in thirds: `north-west` ... `centre`."""
    c = geom.representative_point() if geom.geom_type not in ("Point",) else geom
    fx = (c.x - bounds[0]) / max(bounds[2] - bounds[0], 1e-9)
    fy = (c.y - bounds[1]) / max(bounds[3] - bounds[1], 1e-9)
    ns = "south" if fy < 1 / 3 else ("north" if fy > 2 / 3 else "")
    ew = "west" if fx < 1 / 3 else ("east" if fx > 2 / 3 else "")
    return f"{ns}-{ew}" if ns and ew else (ns or ew or "centre")


def tags_for_footprint(fp: Footprint, source: TagSource, types: Sequence[str] = DEFAULT_TYPES,
                       min_area_m2: float = MIN_AREA_M2) -> list[dict[str, Any]]:
    """Tag rows for one footprint: features intersecting it, reprojected, clipped, measured, filtered, sorted."""
    import geopandas as gpd
    from pyproj import CRS
    from shapely.geometry import box

    unknown = [t for t in types if t not in OVERTURE_TYPES]
    if unknown:
        raise TagsError(f"unknown Overture type(s) {', '.join(unknown)}; known: {', '.join(OVERTURE_TYPES)}")
    crs = CRS.from_user_input(fp.crs)
    frame = box(*fp.bounds)
    bbox = fp.bounds_wgs84()
    min_len = math.sqrt(min_area_m2)
    rows: list[dict[str, Any]] = []
    for t in types:
        gdf = source.features(t, bbox)
        if gdf is None or len(gdf) == 0:
            continue
        local = gdf.to_crs(crs)
        local = local[local.geometry.intersects(frame)]
        if len(local) == 0:
            continue
        clipped = local.geometry.intersection(frame)
        measure = clipped
        if not crs.is_projected:  # measure in metres in the local UTM zone
            measure = gpd.GeoSeries(clipped, crs=crs).to_crs(gpd.GeoSeries([frame], crs=crs).estimate_utm_crs())
        frame_area = gpd.GeoSeries([frame], crs=crs).to_crs(measure.crs).area.iloc[0]
        props_df = local.drop(columns=[local.geometry.name])
        for i, (geom, mgeom) in enumerate(zip(clipped, measure, strict=True)):
            if geom is None or geom.is_empty:
                continue
            props = {k: _jsonable(v) for k, v in props_df.iloc[i].items() if k not in _SKIP_PROPS}
            props = {k: v for k, v in props.items() if v is not None}  # absent tags, not tags
            area, length = float(mgeom.area), float(mgeom.length)
            name = _primary_name(props)
            if area > 0:
                kind, length = "polygon", 0.0
                if area < min_area_m2:
                    continue
            elif length > 0:
                kind = "line"
                if length < min_len:
                    continue
            else:
                kind = "point"
                if not name:  # an unnamed point covers no pixels and says nothing
                    continue
            flags = sorted(k for k, v in props.items() if (k.startswith(("is_", "has_"))) and v is True)
            rows.append({
                "image_id": fp.id,
                "overture_type": t,
                "theme": OVERTURE_TYPES[t],
                "feature_id": str(props.get("id") or ""),
                "class": _class_of(t, props),
                "subtype": props.get("subtype"),
                "name": name,
                "geometry_kind": kind,
                "area_m2": area,
                "length_m": length,
                "cover_fraction": area / frame_area if frame_area else 0.0,
                "position": _position(geom, fp.bounds),
                "flags": flags,
                "tags_json": json.dumps(props, sort_keys=True, ensure_ascii=False),
                "image_crs": fp.crs,
            })
    order = {"polygon": 0, "line": 1, "point": 2}
    rows.sort(key=lambda r: (order[r["geometry_kind"]], -(r["area_m2"] or r["length_m"]), r["feature_id"]))
    for rank, r in enumerate(rows):
        r["rank"] = rank
    return rows


def collect_tags(footprints: Iterable[Footprint], source: TagSource, types: Sequence[str] = DEFAULT_TYPES,
                 min_area_m2: float = MIN_AREA_M2, progress: bool = True,
                 on_error: Any = None) -> pd.DataFrame:
    """The tags table for many footprints (one row per kept feature, `TAG_COLUMNS`); a footprint whose
    source query fails is reported to `on_error(footprint, exc)` and skipped."""
    import pandas as pd
    from tqdm import tqdm

    fps = list(footprints)
    rows: list[dict[str, Any]] = []
    ok_ids: list[str] = []
    for fp in tqdm(fps, desc="tags", unit="image", disable=not progress):
        try:
            rows.extend(tags_for_footprint(fp, source, types, min_area_m2))
            ok_ids.append(fp.id)
        except Exception as exc:  # noqa: BLE001 - a batch job reports bad items and goes on
            if on_error is None:
                raise
            on_error(fp, exc)
    df = pd.DataFrame(rows, columns=list(TAG_COLUMNS))
    df.attrs["image_ids"] = ok_ids  # images looked up successfully (a failed one is not "no tags")
    return df


def write_tags(df: pd.DataFrame, path: str | Path, source: str = "", image_ids: Sequence[str] | None = None) -> Path:
    """Write the tags table as Parquet (atomically), noting the source and all image ids in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    ids = list(image_ids if image_ids is not None else df.attrs.get("image_ids", []))
    meta = dict(table.schema.metadata or {})
    meta[b"spectraclip.tags"] = json.dumps(
        {"source": source, "min_area_m2": MIN_AREA_M2, "image_ids": ids}).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_tags(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Tags table -> {image id: rows sorted by rank, each with `tags` (the parsed properties) and `flags`}."""
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise TagsError(f"{p}: tags table not found")
    table = pq.read_table(p)
    missing = {"image_id", "rank", "tags_json"} - set(table.schema.names)
    if missing:
        raise TagsError(f"{p}: not a tags table (missing column(s) {', '.join(sorted(missing))})")
    out: dict[str, list[dict[str, Any]]] = {}
    meta = (table.schema.metadata or {}).get(b"spectraclip.tags")
    if meta:
        for i in json.loads(meta).get("image_ids", []):
            out.setdefault(str(i), [])
    for row in sorted(table.to_pylist(), key=lambda r: (r["image_id"], r["rank"])):
        row["tags"] = json.loads(row.pop("tags_json") or "{}")
        row["flags"] = list(row.get("flags") or [])
        out.setdefault(str(row["image_id"]), []).append(row)
    return out
