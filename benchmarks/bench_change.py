"""Change detection on OSCD's labelled cities: per-city and pooled F1 of `spectraclip change` (unsupervised,
and the few-shot probe leaving one city out) against CVA + Otsu, computed in the same run.

Targets (issue 17): unsupervised pooled F1 >= 2 x CVA + Otsu's pooled F1 (0.042 measured outside the project);
few-shot leave-one-city-out pooled F1 >= 0.45. Nothing is tuned on these cities: the unsupervised rule is
fixed (docs/change.md) and the probe's threshold comes from cross-validation over its training cities.

    PYTHONPATH=src python benchmarks/bench_change.py [--root ../shared/data/oscd-mini] \
        [--checkpoint /work/demo-bundles/ms] [--output /tmp/bench_change] [--no-few-shot] \
        [--probes gbm,cnn] [--cnn-steps N] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "oscd-mini"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--checkpoint", default="/work/demo-bundles/ms")
    ap.add_argument("--output", type=Path, default=Path("/tmp/bench_change"))
    ap.add_argument("--cities", default=None, help="comma list (default: every labelled city under --root)")
    ap.add_argument("--no-few-shot", action="store_true")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--probes", default="gbm,cnn", help="few-shot probes to evaluate: gbm, cnn or both")
    ap.add_argument("--cnn-steps", type=int, default=None, help="training steps of the change network")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS / OpenMP threads (1: shared machine)")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"no OSCD data at {args.root}", file=sys.stderr)
        return 2
    import dataclasses

    import torch
    from threadpoolctl import threadpool_limits

    from spectraclip.change.cnn import CnnConfig
    from spectraclip.change.oscd import evaluate_oscd, markdown
    from spectraclip.models.loading import load_model

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    cfg = CnnConfig() if args.cnn_steps is None else dataclasses.replace(CnnConfig(), steps=args.cnn_steps)
    model = load_model(None, args.checkpoint)
    t0 = time.perf_counter()
    res = evaluate_oscd(model, args.root, args.output, cities=args.cities.split(",") if args.cities else None,
                        few_shot=not args.no_few_shot, precision=args.precision, model_label=Path(
                            args.checkpoint).name, command=" ".join(sys.argv), log_fn=print,
                        probes=args.probes.split(","), cnn_config=cfg)
    print()
    print(markdown(res))
    base = res["pooled"]["cva-otsu"]["f1"] or 0.0
    un = res["pooled"]["change"]["f1"] or 0.0
    print(f"unsupervised pooled F1 {un:.3f} = {un / base if base else float('nan'):.2f} x CVA+Otsu ({base:.3f}); "
          "target >= 2x")
    for m in ("change-probe", "change-cnn"):
        if m in res["pooled"]:
            fs = res["pooled"][m]["f1"] or 0.0
            print(f"few-shot {m} (leave one city out) pooled F1 {fs:.3f}; target >= 0.45")
    print(f"{time.perf_counter() - t0:.0f} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
