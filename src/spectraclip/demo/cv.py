"""`spectraclip demo --cv K`: K-fold cross-validation of a demo recipe on the training split only.

A recipe is chosen here, never on the 54 test patches: each fold trains the MS and RGB twins with the
real trainer on K-1 parts of the training patches and scores them zero-shot on the part left out,
next to the supervised band-stats baseline fitted on the same folds.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.demo.pipeline import (
    DATASET,
    VARIANTS,
    DemoOptions,
    Say,
    gap_interval,
    paired_correctness,
    train_twin,
    write_captions,
)
from spectraclip.evaluate.metrics import stratified_bootstrap_chance
from spectraclip.io.atomic import atomic_open


def _subset(dataset, indices: np.ndarray):
    """A shallow copy of `dataset` holding only the items at `indices`."""
    sub = copy.copy(dataset)
    sub.items = [dataset.items[int(i)] for i in indices]
    return sub


def _write_fold_manifest(lines: dict[str, str], keep: set[str], target: Path) -> Path:
    """The manifest lines (by id) of the patches in `keep`, written atomically to `target`."""
    with atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{line}\n" for i, line in lines.items() if i in keep))
    return target


def zero_shot_scores(model, dataset, templates: list[str], device: str = "cpu") -> dict[str, Any]:
    """Top-1 and balanced accuracy averaged over the template sets, as the demo's headline averages them,
    and each image's correctness averaged the same way (`correct`: id -> 0..1). Images are encoded once."""
    from spectraclip.evaluate.metrics import classification_metrics
    from spectraclip.evaluate.zeroshot import encode_labelled
    from spectraclip.zeroshot.classifier import class_text_embeddings, cosine_logits
    from spectraclip.zeroshot.templates import load_templates

    ids, vectors, labels = encode_labelled(model, dataset, device=device)
    runs, correct = [], np.zeros(len(ids))
    for t in templates:
        ts = load_templates(t)  # the set's class wording for this dataset, as the evaluator uses it
        class_emb = class_text_embeddings(model, ts.prompt_names(dataset), ts).cpu().numpy()
        logits = cosine_logits(vectors, class_emb)
        runs.append(classification_metrics(logits, labels, dataset.classes))
        correct += logits.argmax(axis=1) == labels
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in ("top1", "balanced_accuracy")}
    out["correct"] = dict(zip(ids, (correct / len(templates)).tolist(), strict=True))
    return out


def cross_validate(opts: DemoOptions, folds: int = 4, say: Say = print, *,
                   gap_threshold: float | None = None) -> dict[str, Any]:
    """Mean ± std (over folds x seeds) zero-shot top-1 of the MS and RGB twins on held-out training folds.

    `test_sized_draws` gives the 5–95% range of the MS − RGB gap over stratified bootstrap draws of the test
    split's size; with `gap_threshold` (a fraction) also the share of draws reaching it. No verdict."""
    from sklearn.model_selection import StratifiedKFold

    from spectraclip.data.registry import load_dataset
    from spectraclip.demo.baseline import band_stats_baseline, mean_std
    from spectraclip.models.loading import load_model

    if folds < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {folds}")
    out = Path(opts.output_dir) / "cv"
    out.mkdir(parents=True, exist_ok=True)
    train_ds = load_dataset(DATASET, None, split="train")
    labels = np.array([it.labels[0] for it in train_ds.items])
    say(f"cross-validation: {folds} folds over the {len(train_ds)} training patches (the test split is not read), "
        f"recipe {opts.recipe}, seeds {list(range(opts.seeds))}")
    manifest = write_captions(out, train_ds, opts.templates, say)
    lines = {json.loads(ln)["id"]: ln for ln in manifest.read_text(encoding="utf-8").splitlines() if ln.strip()}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    rows: list[dict[str, Any]] = []
    for f, (tr, ev) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_dir = out / f"fold{f}"
        fold_dir.mkdir(exist_ok=True)
        keep = {train_ds.items[int(i)].id for i in tr}
        fold_manifest = _write_fold_manifest(lines, keep, fold_dir / "captions.jsonl")
        held_out, fold_train = _subset(train_ds, ev), _subset(train_ds, tr)
        base = {v: band_stats_baseline(fold_train, held_out, b)["top1"] for v, b in VARIANTS.items()}
        for seed in range(opts.seeds):
            row: dict[str, Any] = {"fold": f, "seed": seed, "n_train": len(tr), "n_eval": len(ev),
                                   "baseline": base}
            for v, b in VARIANTS.items():
                bundle = train_twin(fold_dir, fold_manifest, v, b, seed, opts, say)
                model = load_model(None, str(bundle), device=opts.device)
                row[v] = zero_shot_scores(model, held_out, list(opts.templates), device=opts.device)
            rows.append(row)
            say(f"   fold {f} seed {seed}: top-1 MS {row['ms']['top1']:.3f}, RGB {row['rgb']['top1']:.3f} "
                f"(band-stats baseline {base['ms']:.3f} / {base['rgb']:.3f})")

    def spread(values: list[float]) -> dict[str, float]:
        return dict(zip(("mean", "std"), mean_std(values), strict=True))

    summary = {v: spread([r[v]["top1"] for r in rows]) for v in VARIANTS}
    summary["gap"] = spread([r["ms"]["top1"] - r["rgb"]["top1"] for r in rows])
    summary.update({f"baseline_{v}": spread([r["baseline"][v] for r in rows]) for v in VARIANTS})
    # every training patch is held out once per seed: the gap over all of them, with its paired interval
    per_seed = {v: [{i: c for r in rows if r["seed"] == s for i, c in r[v]["correct"].items()}
                    for s in range(opts.seeds)] for v in VARIANTS}
    summary["gap_interval"] = gap_interval(per_seed["ms"], per_seed["rgb"], over="held-out training patches")
    # what a split the size of the test split, drawn like these patches, would show (and, if asked, how often
    # it would reach `gap_threshold`)
    ids, ms, rgb = paired_correctness(per_seed["ms"], per_seed["rgb"])
    label = {it.id: it.labels[0] for it in train_ds.items}
    n_test = len(load_dataset(DATASET, None, split="test"))  # its size only: no test patch is read
    draws = stratified_bootstrap_chance(np.subtract(ms, rgb), [label[i] for i in ids], n_test,
                                        0.0 if gap_threshold is None else gap_threshold)
    if gap_threshold is None:  # the range only: no threshold was asked for, so no share reaching one
        draws.pop("chance")
        draws["threshold"] = None
    summary["test_sized_draws"] = draws
    result = {"folds": folds, "seeds": list(range(opts.seeds)), "recipe": str(opts.recipe),
              "gap_threshold": gap_threshold, "overrides": list(opts.overrides), "templates": list(opts.templates),
              "rows": rows, "summary": summary}
    with atomic_open(out / "cv.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    result["path"] = str(out / "cv.json")
    return result
