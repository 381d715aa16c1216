"""A simulated analyst in the workspace's labelling loop, on the EuroSAT-MS mini patches.

For each class: start from a text query ("a satellite image of <class>"), label the top 10 unlabelled items from
the ground truth (positive / negative for the class), learn (the workspace's probe: `probe.active`, the probe
package's logistic estimator), rank, label the next 10, three rounds. Precision@20 of the analyst's ranked list
(every patch, labelled ones included, ordered by the current model; with only one kind of label so far the
ranking is the relevance-feedback query of `index.query.example_query`: text + positives - negatives) after 0, 10,
20 and 30 labels, against the text-only ranking.

    PYTHONPATH=src python benchmarks/bench_analyst.py [--model /work/evidence/demo/runs/ms-seed0/model]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eurosat-ms-mini"
DEMO_MODEL = Path("/work/evidence/demo/runs/ms-seed0/model")


def words(name: str) -> str:
    return " ".join(re.findall(r"[A-Z][a-z]*", name)).lower()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=10)
    args = ap.parse_args()
    if not (args.model / "spectraclip.json").is_file():
        sys.exit(f"no trained bundle at {args.model}: the benchmark needs one (the demo recipe writes it)")
    from spectraclip.index.query import example_query
    from spectraclip.inference import encode_images
    from spectraclip.models.loading import load_model
    from spectraclip.probe.active import fit_linear_probe
    from spectraclip.zeroshot.text import encode_texts

    model = load_model(checkpoint=str(args.model))
    paths = sorted(args.data.glob("*/*/*.tif"))
    t0 = time.perf_counter()
    enc = encode_images(model, paths, bands="eurosat-ms", progress=False)
    by_id = {str(p): p.parent.name for p in paths}
    truth = np.array([by_id.get(str(i), Path(str(i)).parent.name) for i in enc.ids])
    x = enc.vectors.astype(np.float32)
    print(f"{len(x)} patches embedded by {args.model} in {time.perf_counter() - t0:.1f} s; "
          f"{len(set(truth))} classes")
    classes = sorted(set(truth))
    marks = [0] + [args.per_round * (r + 1) for r in range(args.rounds)]
    rows = []
    for cls in classes:
        y = truth == cls
        t = encode_texts(model, [f"a satellite image of {words(cls)}"])[0]
        text_scores = x @ t
        prec = []
        labelled: dict[int, bool] = {}
        scores = text_scores
        for step in range(args.rounds + 1):
            prec.append(float(y[np.argsort(-scores, kind="stable")[:20]].mean()))
            if step == args.rounds:
                break
            order = [i for i in np.argsort(-scores, kind="stable") if i not in labelled][: args.per_round]
            labelled.update({int(i): bool(y[i]) for i in order})
            idx = np.array(list(labelled))
            lab = np.array([labelled[i] for i in idx])
            if lab.all() or not lab.any():  # one kind of label: relevance feedback from the text query
                pos = np.vstack([t[None], x[idx[lab]]]) if lab.any() else t[None]
                neg = x[idx[~lab]] if (~lab).any() else None
                scores = x @ example_query(pos, neg)
            else:
                probe = fit_linear_probe(x[idx], ["positive" if v else "negative" for v in lab], positive="positive")
                scores = probe.proba(x)[:, probe.positive]
        rows.append((cls, int(y.sum()), prec))
    head = "class".ljust(22) + "".join(f"P@20 {m:>2} lab".rjust(13) for m in marks) + "   gain@30"
    print(head)
    for cls, n, p in rows:
        print(cls.ljust(22) + "".join(f"{v:13.2f}" for v in p) + f"{100 * (p[-1] - p[0]):+9.1f} pts  (n={n})")
    mean = np.mean([p for _, _, p in rows], axis=0)
    print("mean".ljust(22) + "".join(f"{v:13.3f}" for v in mean) + f"{100 * (mean[-1] - mean[0]):+9.1f} pts")
    print(f"goal >= +20 points at {marks[-1]} labels: {'met' if 100 * (mean[-1] - mean[0]) >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
