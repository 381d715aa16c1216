"""A small Overture-schema GeoParquet around the real L2A tiles' footprints (../shared/data), for tag tests.

Features are laid out in each tile's UTM CRS (so their true areas are known) and stored in EPSG:4326 in the
release layout `theme=<theme>/type=<type>/part-00000.parquet`, with Overture's columns (id, bbox struct,
names struct, subtype, class, flags, categories, sources). `EXPECTED` describes what a tagger must keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
L2A_DIR = DATA / "s2-l2a-examples"

# Per tile: (type, local geometry spec in metres from the tile's lower-left corner, properties).
# Geometry specs: ("box", x0, y0, x1, y1) | ("line", x0, y0, x1, y1) | ("point", x, y). Tile is 2240 m square.
FEATURES: list[tuple[str, tuple, dict[str, Any]]] = [
    ("water", ("box", 200, 200, 800, 800),  # 360,000 m²
     {"subtype": "lake", "class": "lake", "is_intermittent": True, "is_salt": False, "names": "Lago Verde"}),
    ("land_cover", ("box", 1740, 0, 3240, 2240),  # half outside: clipped to 500 x 2240 = 1,120,000 m²
     {"subtype": "forest", "class": "forest"}),
    ("land_use", ("box", 1000, 1500, 1060, 1560),  # 3,600 m²: kept
     {"subtype": "agriculture", "class": "farmland"}),
    ("land_use", ("box", 1200, 1500, 1240, 1540),  # 1,600 m²: dropped (< 2,500 m²)
     {"subtype": "agriculture", "class": "orchard"}),
    ("land_use", ("box", 2600, 100, 3000, 500),  # outside the tile: absent
     {"subtype": "residential", "class": "residential"}),
    ("building", ("box", 1000, 1000, 1080, 1080),  # 6,400 m²
     {"subtype": "residential", "class": "house", "has_parts": False, "is_underground": False}),
    ("segment", ("line", 100, 1000, 1500, 1000),  # 1,400 m
     {"subtype": "road", "class": "primary", "names": "Route 7"}),
    ("segment", ("line", 100, 1200, 130, 1200),  # 30 m: dropped
     {"subtype": "road", "class": "track"}),
    ("place", ("point", 1120, 1120), {"names": "Testville", "categories": {"primary": "village"}}),
    ("infrastructure", ("point", 300, 1900), {"subtype": "power", "class": "tower"}),  # unnamed point: dropped
]
THEMES = {"water": "base", "land_cover": "base", "land_use": "base", "infrastructure": "base",
          "building": "buildings", "segment": "transportation", "place": "places"}
# What the tagger keeps per tile, in its sort order: (type, class, area_m2, length_m).
EXPECTED = [
    ("land_cover", "forest", 1_120_000.0, 0.0),
    ("water", "lake", 360_000.0, 0.0),
    ("building", "house", 6_400.0, 0.0),
    ("land_use", "farmland", 3_600.0, 0.0),
    ("segment", "primary", 0.0, 1_400.0),
    ("place", "village", 0.0, 0.0),
]


def tiles() -> list[Path]:
    """The real L2A tiles (sorted)."""
    return sorted(L2A_DIR.glob("*.tif"))


def _geometry(spec: tuple, left: float, bottom: float):
    from shapely.geometry import LineString, Point, box
    from shapely.ops import transform  # noqa: F401

    kind, *v = spec
    if kind == "box":
        # densify edges so the shape survives the UTM -> lon/lat -> UTM round trip with tiny area error
        from shapely import segmentize

        return segmentize(box(left + v[0], bottom + v[1], left + v[2], bottom + v[3]), 20.0)
    if kind == "line":
        return LineString([(left + v[0], bottom + v[1]), (left + v[2], bottom + v[3])])
    return Point(left + v[0], bottom + v[1])


def make_overture(root: Path, tile_paths: list[Path] | None = None, single_file: bool = False) -> Path:
    """Write the Overture-schema GeoParquet for the tiles under `root`; returns the folder (or the single
    file, holding a `type` column, when `single_file`)."""
    import geopandas as gpd
    import pandas as pd
    import rasterio

    tile_paths = tile_paths if tile_paths is not None else tiles()
    per_type: dict[str, list[dict[str, Any]]] = {}
    for k, tile in enumerate(tile_paths):
        with rasterio.open(tile) as ds:
            crs, b = ds.crs, ds.bounds
        for j, (t, spec, props) in enumerate(FEATURES):
            geom = gpd.GeoSeries([_geometry(spec, b.left, b.bottom)], crs=crs).to_crs("EPSG:4326").iloc[0]
            xmin, ymin, xmax, ymax = geom.bounds
            row: dict[str, Any] = {
                "id": f"08b{k:02d}{j:02d}fffffff",
                "geometry": geom,
                "bbox": {"xmin": xmin, "xmax": xmax, "ymin": ymin, "ymax": ymax},
                "version": 1,
                "sources": [{"property": "", "dataset": "OpenStreetMap", "record_id": f"w{k}{j}"}],
            }
            for key, value in props.items():
                if key == "names":
                    name = value if not value.startswith("Testville") else f"{value} {k}"
                    row["names"] = {"primary": name, "common": None, "rules": None}
                else:
                    row[key] = value
            if t == "place":
                row["confidence"] = 0.9
            per_type.setdefault(t, []).append(row)
    root.mkdir(parents=True, exist_ok=True)
    if single_file:
        frames = [pd.DataFrame(rows).assign(type=t) for t, rows in per_type.items()]
        gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
        out = root / "overture.parquet"
        gdf.to_parquet(out)
        return out
    for t, rows in per_type.items():
        folder = root / f"theme={THEMES[t]}" / f"type={t}"
        folder.mkdir(parents=True, exist_ok=True)
        gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs="EPSG:4326").to_parquet(
            folder / "part-00000.parquet")
    return root


if __name__ == "__main__":  # python tests/fixtures_overture.py OUT_DIR
    import sys

    print(make_overture(Path(sys.argv[1] if len(sys.argv) > 1 else "overture-fixture")))
