"""A simulated analyst in the workspace's labelling loop, on the EuroSAT-MS mini patches.

For each class: start from a text query ("a satellite image of <class>"), label the top 10 unlabelled items from
the ground truth (positive / negative for the class), learn (`probe.active.fit_linear_probe`), rank, label the
next 10, three rounds. Precision@20 of the analyst's ranked list (every patch, labelled ones included, ordered by
the current model; with only one kind of label so far the ranking is the relevance-feedback query of
`index.query.example_query`: text + positives - negatives) after 0, 10, 20 and 30 labels, against text-only.

Methods compared (`fit_linear_probe(method=...)`): standardised (the first version), logistic (unit vectors,
class-balanced), prior (the text similarity as a feature, embedding weights penalised: the default). The method is
chosen on half A of the classes (even positions, alphabetically) and reported on both halves; the headroom
(1 - text-only P@20) says how much any method could gain.

    PYTHONPATH=src python benchmarks/bench_analyst.py [--model /work/evidence/demo/runs/ms-seed0/model]
        [--cache emb.npz]      # embeddings + text embeddings saved / reused
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
METHODS = {"standardised": {"method": "standardised"}, "logistic": {"method": "logistic"},
           "prior": {"method": "prior"}, "prior-C0.1": {"method": "prior", "c": 0.1},
           "rocchio": {"method": "rocchio"}}


def words(name: str) -> str:
    return " ".join(re.findall(r"[A-Z][a-z]*", name)).lower()


def embed(model_dir: Path, data: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    if cache is not None and cache.is_file():
        z = np.load(cache)
        return z["x"], z["truth"], [str(c) for c in z["cls"]], z["T"]
    if not (model_dir / "spectraclip.json").is_file():
        sys.exit(f"no trained bundle at {model_dir}: the benchmark needs one (the demo recipe writes it)")
    from spectraclip.inference import encode_images
    from spectraclip.models.loading import load_model
    from spectraclip.zeroshot.text import encode_texts

    model = load_model(checkpoint=str(model_dir))
    paths = sorted(data.glob("*/*/*.tif"))
    t0 = time.perf_counter()
    enc = encode_images(model, paths, bands="eurosat-ms", progress=False)
    by_id = {str(p): p.parent.name for p in paths}
    truth = np.array([by_id.get(str(i), Path(str(i)).parent.name) for i in enc.ids])
    cls = sorted(set(truth))
    texts = np.asarray(encode_texts(model, [f"a satellite image of {words(c)}" for c in cls]), np.float32)
    print(f"{len(truth)} patches embedded by {model_dir} in {time.perf_counter() - t0:.1f} s")
    x = enc.vectors.astype(np.float32)
    if cache is not None:
        np.savez(cache, x=x, truth=truth, cls=np.array(cls), T=texts)
    return x, truth, cls, texts


def simulate(x: np.ndarray, y: np.ndarray, t: np.ndarray, method: str, rounds: int, per_round: int) -> list[float]:
    from spectraclip.index.query import example_query
    from spectraclip.probe.active import fit_linear_probe

    scores = x @ t
    prec: list[float] = []
    labelled: dict[int, bool] = {}
    for step in range(rounds + 1):
        prec.append(float(y[np.argsort(-scores, kind="stable")[:20]].mean()))
        if step == rounds:
            break
        order = [i for i in np.argsort(-scores, kind="stable") if i not in labelled][:per_round]
        labelled.update({int(i): bool(y[i]) for i in order})
        idx = np.array(list(labelled))
        lab = np.array([labelled[i] for i in idx])
        if lab.all() or not lab.any():  # one kind of label: relevance feedback from the text query
            pos = np.vstack([t[None], x[idx[lab]]]) if lab.any() else t[None]
            neg = x[idx[~lab]] if (~lab).any() else None
            scores = x @ example_query(pos, neg)
        else:
            probe = fit_linear_probe(x[idx], ["positive" if v else "negative" for v in lab], positive="positive",
                                     prior=t, **METHODS[method])
            scores = probe.proba(x)[:, probe.positive]
    return prec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=10)
    args = ap.parse_args()
    x, truth, classes, texts = embed(args.model, args.data, args.cache)
    marks = [0] + [args.per_round * (r + 1) for r in range(args.rounds)]
    res = {m: {c: simulate(x, truth == c, texts[i], m, args.rounds, args.per_round) for i, c in enumerate(classes)}
           for m in METHODS}
    half_a, half_b = classes[0::2], classes[1::2]
    text = {c: res["standardised"][c][0] for c in classes}
    worst = sorted(classes, key=lambda c: text[c])[: max(3, len(classes) // 3)]
    print(f"{len(truth)} patches, {len(classes)} classes; text-only P@20 mean {np.mean(list(text.values())):.3f}, "
          f"headroom (1 - text-only) {1 - np.mean(list(text.values())):.3f}")
    print("class".ljust(22) + "text".rjust(6) + "".join(f"{m[:5]}@{k}".rjust(9) for m in METHODS for k in marks[1:]))
    for c in classes:
        print(c.ljust(22) + f"{text[c]:6.2f}" + "".join(f"{v:9.2f}" for m in METHODS for v in res[m][c][1:]))

    def mean(m: str, group: list[str]) -> np.ndarray:
        return np.mean([res[m][c] for c in group], axis=0)

    for label, group in (("half A (choose)", half_a), ("half B (report)", half_b), ("all", classes),
                         ("hardest third by text", worst)):
        print(f"-- {label}: {', '.join(group)}; text-only {np.mean([text[c] for c in group]):.3f}, "
              f"headroom {1 - np.mean([text[c] for c in group]):.3f}")
        for m in METHODS:
            p = mean(m, group)
            print(f"   {m:13s}" + "".join(f"  P@20@{k}={v:.3f}" for k, v in zip(marks, p, strict=True))
                  + f"  gain@{marks[-1]} {100 * (p[-1] - p[0]):+.1f} pts, worst round vs text "
                  + f"{100 * (min(p[1:]) - p[0]):+.1f} pts")
    chosen = max(list(METHODS), key=lambda m: float(mean(m, half_a)[1:].mean()))
    pb = mean(chosen, half_b)
    print(f"chosen on half A (mean P@20 over rounds 1..{args.rounds}): {chosen}; on half B gain@{marks[-1]} "
          f"{100 * (pb[-1] - pb[0]):+.1f} pts")
    allm = mean(chosen, classes)
    print(f"goal >= +20 points at {marks[-1]} labels: {'met' if 100 * (allm[-1] - allm[0]) >= 20 else 'NOT met'} "
          f"({100 * (allm[-1] - allm[0]):+.1f}; at most {100 * (1 - allm[0]):+.1f} possible here)")


if __name__ == "__main__":
    main()
