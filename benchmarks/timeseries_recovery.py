"""Planted vs recovered on the synthetic stack (tests/fixtures_timeseries.py), and the cost of a time series
against the sum of `map` runs on its dates (the same model, tile and stride, in the same process).

    PYTHONPATH=src:tests python benchmarks/timeseries_recovery.py [--dates 10] [--blocks 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures_timeseries import default_plant, make_stack  # noqa: E402

from spectraclip.apps.maps import map_scene  # noqa: E402
from spectraclip.apps.runner import SceneOptions  # noqa: E402
from spectraclip.models.loading import load_model  # noqa: E402
from spectraclip.timeseries.job import timeseries_stack  # noqa: E402
from spectraclip.timeseries.stack import expand_inputs  # noqa: E402
from spectraclip.zeroshot.classes import parse_classes  # noqa: E402

QUERIES = ["green fields", "water"]


def recovery(res, plant) -> dict[str, float]:
    """Planted vs recovered numbers of one run."""
    import pandas as pd
    from scipy.stats import spearmanr

    w = pd.read_parquet(res.windows_table).sort_values("window")
    t = pd.read_parquet(res.table)
    out: dict[str, float] = {}
    s = "embedding_distance"
    slope = w[f"{s}:slope"].to_numpy()
    planted = plant.trend
    out["trend: spearman(planted size, slope)"] = float(spearmanr(planted, slope).statistic)
    trended = planted > 0
    sig = (w[f"{s}:p_value"].to_numpy() < 0.05) & (slope > 0)
    out["trend: planted windows significant & positive"] = float(sig[trended].mean())
    out["trend: flat windows called significant"] = float((w[f"{s}:p_value"].to_numpy() < 0.05)[~trended].mean())
    qs = [c for c in w.columns if c.startswith("sim:") and c.endswith(":slope")]
    out["trend: spearman(planted size, |query slope|) (mean over queries)"] = float(np.mean(
        [spearmanr(planted, np.abs(w[c].to_numpy())).statistic for c in qs]))
    dates = [d.isoformat() for d in plant.dates]
    found: set[tuple[int, int]] = set()
    for _, r in w.iterrows():
        for a in r[f"{s}:anomalies"]:
            found.add((int(r["window"]), dates.index(a)))
    tp = len(found & plant.anomalies)
    out["anomaly: recall"] = tp / max(1, len(plant.anomalies))
    out["anomaly: precision"] = tp / max(1, len(found))
    cloud_rows = {(int(r.window), dates.index(r.date.isoformat())) for r in t.itertuples() if r.status == "cloud"}
    out["clouds: planted cloudy windows marked missing"] = len(cloud_rows & plant.clouds) / len(plant.clouds)
    out["clouds: windows marked missing without a planted cloud"] = float(len(cloud_rows - plant.clouds))
    nan_ok = t[t.status != "ok"]["sim:water"].isna().all() and t[t.status == "ok"]["sim:water"].notna().all()
    out["clouds: missing rows are NaN, others have values"] = float(nan_ok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dates", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    model = load_model("tiny-test", bands="s2-l1c")
    opts = SceneOptions(tile=32, stride=32, progress=False, device="cpu", batch_size=16)
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            folder, plant = make_stack(Path(tmp), default_plant(args.dates, args.blocks, seed), seed=seed)
            res = timeseries_stack(model, [folder], Path(tmp) / "out", queries=QUERIES, metric="embedding",
                                   options=opts, plots=False)
            rows.append(recovery(res, plant))
    print(f"planted vs recovered, {args.seeds} synthetic stacks of {args.dates} dates x {args.blocks ** 2} windows "
          "(tiny-test model, --metric embedding):")
    print(f"| {'measure':<64} | " + " | ".join(f"seed {i}" for i in range(args.seeds)) + " | mean |")
    print(f"|{'-' * 66}|" + "|".join("--------" for _ in range(args.seeds)) + "|------|")
    for k in rows[0]:
        vals = [r[k] for r in rows]
        print(f"| {k:<64} | " + " | ".join(f"{v:6.2f}" for v in vals) + f" | {np.mean(vals):.2f} |")
    # cost: the time series against one map run per date (same windows, classes for map, queries here)
    with tempfile.TemporaryDirectory() as tmp:
        folder, plant = make_stack(Path(tmp), default_plant(args.dates, args.blocks, 0))
        classes = parse_classes(["field", "water", "city"])
        scenes = expand_inputs([folder], Path(tmp) / "w")
        t_map, t_ts = [], []
        for rep in range(4):  # the first repetition warms caches (text cache, imports); the fastest of the rest
            t0 = time.perf_counter()
            for i, sc in enumerate(scenes):
                map_scene(model, sc, Path(tmp) / f"map_{rep}_{i}.tif", classes, options=opts, quicklook=False)
            t_map.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            timeseries_stack(model, [folder], Path(tmp) / f"ts_{rep}", queries=QUERIES, classes=classes,
                             options=opts, plots=False)
            t_ts.append(time.perf_counter() - t0)
        tm, tt = min(t_map[1:]), min(t_ts[1:])
        print(f"cost: timeseries {tt:.2f} s, sum of {len(scenes)} map runs {tm:.2f} s, ratio {tt / tm:.2f} "
              f"(target <= 1.1; {os.cpu_count()} CPUs, tiny-test)")


if __name__ == "__main__":
    main()
