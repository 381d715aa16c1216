"""Cost of the Major TOM columns per embedded item: batched footprints (one reprojection per CRS) vs one
reprojection call per item (the baseline), and both against writing the table itself, in the same run.

Items: 64x64-pixel chips at 10 m on a grid in UTM zone 32N, plus the real Sentinel-2 L2A tiles of
`../shared/data/s2-l2a-examples` (five UTM zones) when present, repeated to N items.

    python benchmarks/bench_geo.py [--items 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from spectraclip.embeddings import write_embeddings
from spectraclip.geo import footprint_wgs84, major_tom_columns

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2-l2a-examples"


def grid_metas(n: int) -> list[dict]:
    """Georeference dicts (as `inference.georef_meta` makes them) of `n` chips on a UTM 32N grid."""
    out = []
    for i in range(n):
        left, top = 500000 + (i % 100) * 640.0, 5000000 - (i // 100) * 640.0
        out.append({"height": 64, "width": 64, "crs": "EPSG:32632", "bounds": [left, top - 640, left + 640, top],
                    "lon": None, "lat": None})
    return out


def real_metas(n: int) -> list[dict]:
    """The real L2A tiles' georeference (five CRSs), repeated to `n` items; empty without the data."""
    if not REAL.is_dir():
        return []
    import rasterio

    base = []
    for f in sorted(REAL.glob("*.tif")):
        with rasterio.open(f) as ds:
            base.append({"height": ds.height, "width": ds.width, "crs": ds.crs.to_string(),
                         "bounds": list(ds.bounds), "lon": None, "lat": None})
    return [base[i % len(base)] for i in range(n)]


def per_item(metas: list[dict]) -> list:
    """Baseline: one reprojection call per item."""
    return [footprint_wgs84(m["crs"], m["bounds"]) for m in metas]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    table = Table(title=f"Major TOM columns, {args.items} items (best of {args.repeats})")
    for col in ("items", "per-item footprints (baseline)", "major_tom_columns (batched)", "speed-up",
                "write table (no geo cols)", "geo cols / write"):
        table.add_column(col, justify="right")
    vectors = np.random.default_rng(0).normal(size=(args.items, 512)).astype(np.float32)
    ids = [f"i{n}" for n in range(args.items)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, metas in (("UTM 32N grid", grid_metas(args.items)), ("real L2A tiles", real_metas(args.items))):
            if not metas:
                continue
            t_base = best(lambda m=metas: per_item(m), args.repeats)
            t_cols = best(lambda m=metas: major_tom_columns(m), args.repeats)
            t_write = best(lambda: write_embeddings(Path(tmp) / "t.parquet", ids, vectors), args.repeats)
            table.add_row(name, f"{t_base / args.items * 1e6:.0f} us/item", f"{t_cols / args.items * 1e6:.0f} us/item",
                          f"{t_base / t_cols:.1f}x", f"{t_write / args.items * 1e6:.0f} us/item",
                          f"{t_cols / t_write:.2f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
