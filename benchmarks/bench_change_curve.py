"""Why the few-shot change network misses F1 0.45 on OSCD-mini: its F1 on a held-out city against the number of
training cities (1, 2, 4, ... of the other cities, drawn at random with a fixed seed per city), and the
in-sample F1 (trained on all cities, scored on them) as an upper bound of what this data and network give.

Every network here uses the threshold 0.5 (no inner folds: a 1-city training set has none, and the curve
compares training-set sizes, not thresholds); average precision (AP, threshold-free) is reported beside F1.
The in-sample row also gives the F1 at the best threshold on the same pixels (an optimistic bound).

    PYTHONPATH=src python benchmarks/bench_change_curve.py [--root ../shared/data/oscd-mini] \
        [--checkpoint /work/demo-bundles/ms] [--sizes 1,2,4] [--in-sample] [--output /tmp/change_curve.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "oscd-mini"


def average_precision(p: np.ndarray, y: np.ndarray) -> float:
    """Average precision of scores `p` for labels `y` (the area under the precision-recall steps)."""
    order = np.argsort(-p, kind="stable")
    y = y[order]
    tp = np.cumsum(y)
    prec = tp / np.arange(1, len(y) + 1)
    return float((prec * y).sum() / max(1, y.sum()))


def _counts(p: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    pred = p > t
    return np.array([(pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()], np.int64)


def _f1(c: np.ndarray) -> float:
    return float(2 * c[0] / max(1, 2 * c[0] + c[1] + c[2]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--checkpoint", default="/work/demo-bundles/ms")
    ap.add_argument("--sizes", default="1,2,4", help="numbers of training cities (comma list)")
    ap.add_argument("--in-sample", action="store_true", help="also train on all cities and score them")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", type=Path, default=Path("/tmp/change_curve.json"))
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"no OSCD data at {args.root}", file=sys.stderr)
        return 2
    import torch
    from threadpoolctl import threadpool_limits

    from spectraclip.change.cnn import CnnConfig, fit_cnn_probe
    from spectraclip.change.labels import find_pairs
    from spectraclip.change.scene import labelled_arrays
    from spectraclip.models.loading import load_model

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    cfg = dataclasses.replace(CnnConfig(), inner_folds=0)  # threshold 0.5 everywhere
    model = load_model(None, args.checkpoint)
    arrays = {p.name: labelled_arrays(model, p.before, p.after, p.labels, name=p.name, indices=cfg.indices)
              for p in find_pairs(args.root)}
    names = list(arrays)
    out: dict = {"config": dataclasses.asdict(cfg), "cities": names, "curve": {}, "definition": __doc__}
    for n in [int(v) for v in args.sizes.split(",")]:
        tot = np.zeros(3, np.int64)
        rows = {}
        for i, held in enumerate(names):
            others = [c for c in names if c != held]
            pick = sorted(np.random.default_rng(i).choice(others, size=min(n, len(others)), replace=False).tolist())
            t0 = time.perf_counter()
            probe = fit_cnn_probe([arrays[c] for c in pick], cfg)
            a = arrays[held]
            p = probe.predict_arrays(a.za, a.zb)[a.known]
            y = a.change[a.known]
            c = _counts(p, y, 0.5)
            tot += c
            rows[held] = {"train": pick, "f1": _f1(c), "ap": average_precision(p, y),
                          "seconds": round(time.perf_counter() - t0, 1)}
            print(f"n={n} {held}: train {','.join(pick)} F1 {rows[held]['f1']:.3f} AP {rows[held]['ap']:.3f} "
                  f"({rows[held]['seconds']:.0f} s)", flush=True)
        out["curve"][n] = {"pooled_f1": _f1(tot), "mean_ap": float(np.mean([r["ap"] for r in rows.values()])),
                           "per_city": rows}
        print(f"n={n}: pooled F1 {_f1(tot):.3f}, mean AP {out['curve'][n]['mean_ap']:.3f}", flush=True)
        args.output.write_text(json.dumps(out, indent=2))
    if args.in_sample:
        t0 = time.perf_counter()
        probe = fit_cnn_probe(list(arrays.values()), cfg)
        ps = {c: probe.predict_arrays(a.za, a.zb)[a.known] for c, a in arrays.items()}
        ys = {c: a.change[a.known] for c, a in arrays.items()}
        p_all, y_all = np.concatenate(list(ps.values())), np.concatenate(list(ys.values()))
        best = max(np.linspace(0.05, 0.95, 19), key=lambda t: _f1(_counts(p_all, y_all, t)))
        out["in_sample"] = {
            "pooled_f1": _f1(_counts(p_all, y_all, 0.5)), "best_threshold": float(best),
            "pooled_f1_best_threshold": _f1(_counts(p_all, y_all, best)),
            "per_city_f1": {c: _f1(_counts(ps[c], ys[c], 0.5)) for c in arrays},
            "per_city_ap": {c: average_precision(ps[c], ys[c]) for c in arrays},
            "seconds": round(time.perf_counter() - t0, 1)}
        print("in-sample:", json.dumps(out["in_sample"]), flush=True)
        args.output.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
