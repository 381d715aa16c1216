"""Label-efficiency curves: scores at each training size over several draws, for every (table, estimator).

One run compares several embeddings tables on the SAME test set and the SAME training draws, so
differences between tables are paired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectraclip.probe.errors import ProbeError
from spectraclip.probe.estimators import (
    FOREST_PARAMS,
    KNN_NEIGHBORS,
    LOGISTIC_PARAMS,
    METRICS,
    MODELS,
    RIDGE_ALPHA,
    deterministic,
    make_estimator,
    score,
)
from spectraclip.probe.labels import ProbeLabels, Task
from spectraclip.probe.sampling import make_split, sample_k
from spectraclip.probe.tables import EmbeddingSet, align

DEFAULT_KS: tuple[int | None, ...] = (10, 25, 50, 100, 200, 500, None)  # None = all training labels


@dataclass
class CurvePoint:
    """Scores at one training-set size: `scores[metric]` has one value per random draw."""

    k: int | None  # requested size (None = all training labels)
    n_train: int
    scores: dict[str, list[float]]
    train_indices: list[list[int]] = field(default_factory=list, repr=False)  # into the train pool

    def mean(self, metric: str) -> float:
        return float(np.mean(self.scores[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.scores[metric]))

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "k": "all" if self.k is None else self.k,
            "n_train": self.n_train,
            "draws": len(next(iter(self.scores.values()), [])),
            "mean": {m: self.mean(m) for m in self.scores},
            "std": {m: self.std(m) for m in self.scores},
            "scores": self.scores,
        }
        if with_indices:
            d["train_indices"] = self.train_indices
        return d


@dataclass
class ProbeSeries:
    """One label-efficiency curve: an embeddings table probed with one model."""

    name: str
    table: str
    model: str
    points: list[CurvePoint]

    @property
    def full(self) -> CurvePoint | None:
        return next((p for p in self.points if p.k is None), None)


@dataclass
class ProbeResult:
    """Everything one probe run produced; `to_dict()` is the JSON written next to the plot."""

    task: Task
    metrics: tuple[str, ...]
    classes: list[str]
    n_pool: int
    n_test: int
    test_ids: list[str]
    pool_ids: list[str]
    series: list[ProbeSeries]
    config: dict[str, Any]
    skipped_ks: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        return {
            "task": self.task,
            "metrics": list(self.metrics),
            "classes": self.classes,
            "n_train_pool": self.n_pool,
            "n_test": self.n_test,
            "config": self.config,
            "skipped_ks": self.skipped_ks,
            "warnings": self.warnings,
            "test_ids": self.test_ids,
            "series": [
                {"name": s.name, "table": s.table, "model": s.model,
                 "points": [p.to_dict(with_indices) for p in s.points]}
                for s in self.series
            ],
        }


def parse_ks(spec: str | Sequence[int | str | None]) -> list[int | None]:
    """`"10,25,all"` -> `[10, 25, None]`; sizes must be >= 2."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[int | None] = []
    for it in items:
        if it is None or (isinstance(it, str) and it.lower() in ("all", "full")):
            out.append(None)
            continue
        try:
            k = int(it)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"--train-sizes {it!r}: expected an integer or 'all'") from exc
        if k < 2:
            raise ProbeError(f"--train-sizes {k}: a probe needs at least 2 training examples")
        out.append(k)
    return out


def run_probe(sets: Sequence[EmbeddingSet], labels: ProbeLabels, *, models: Sequence[str] = ("logistic",),
              ks: str | Sequence[int | str | None] = DEFAULT_KS, draws: int = 5, test_size: float = 0.2, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Label-efficiency curves of every (table, model) on one fixed test set with shared training draws.

    For each k (< pool size) `draws` stratified samples of k training examples are drawn with a
    generator seeded by (seed, k, draw); k=None ("all") trains on the whole pool (once for
    deterministic models, `draws` times with different seeds for random forests).
    """
    for m in models:
        if m not in MODELS:
            raise ProbeError(f"--classifier {m!r}: expected one of {', '.join(MODELS)}")
        if m == "logistic" and labels.task == "regression":
            raise ProbeError("--classifier logistic cannot fit a regression target; use ridge, knn or random-forest")
    ids, mats, notes = align(sets, labels)
    lab = labels.subset(ids)
    pool, test = make_split(lab, test_size=test_size, seed=seed)
    y_pool, y_test = lab.y[pool], lab.y[test]
    metrics = METRICS[lab.task]
    want = list(dict.fromkeys(parse_ks(ks))) or [None]
    sizes = [k for k in want if k is not None and k < len(pool)]
    skipped = [k for k in want if k is not None and k >= len(pool)]
    if None in want or skipped:
        sizes.append(None)

    draws_at: dict[int | None, list[np.ndarray]] = {}
    for k in sizes:
        if k is None:
            draws_at[k] = [np.arange(len(pool))]
        else:
            draws_at[k] = [sample_k(lab.task, y_pool, k, np.random.default_rng([seed, k, d])) for d in range(draws)]

    series: list[ProbeSeries] = []
    warnings = list(notes)
    for s, X in zip(sets, mats, strict=True):
        X_pool, X_test = X[pool], X[test]
        for model in models:
            name = s.name if len(models) == 1 else f"{s.name} / {model}"
            points = []
            for k in sizes:
                idx_list = draws_at[k]
                if k is None and not deterministic(model):
                    idx_list = idx_list * draws
                scores: dict[str, list[float]] = {m: [] for m in metrics}
                for d, idx in enumerate(idx_list):
                    if progress:
                        progress(f"{name}: k={'all' if k is None else k} draw {d + 1}/{len(idx_list)}")
                    y_tr = y_pool[idx]
                    if lab.task == "multiclass" and len(np.unique(y_tr)) < 2:
                        warnings.append(f"{name} k={k} draw {d}: one class only, predicting it")
                        pred = np.full(len(test), y_tr[0])
                    else:
                        est = make_estimator(model, lab.task, seed=seed + d, n_train=len(idx))
                        est.fit(X_pool[idx], y_tr)
                        pred = np.asarray(est.predict(X_test))
                    for m, v in score(lab.task, y_test, pred).items():
                        scores[m].append(v)
                n_train = len(pool) if k is None else len(idx_list[0])
                points.append(CurvePoint(k, n_train, scores, [i.tolist() for i in idx_list]))
            series.append(ProbeSeries(name, s.path or s.name, model, points))

    config = {"models": list(models), "ks": ["all" if k is None else k for k in want], "draws": draws,
              "test_size": test_size, "seed": seed, "labels": labels.source,
              "split": "column" if labels.split is not None else "seeded-stratified",
              "hyperparameters": {"logistic": LOGISTIC_PARAMS, "random-forest": FOREST_PARAMS,
                                  "knn": {"n_neighbors": KNN_NEIGHBORS}, "ridge": {"alpha": RIDGE_ALPHA}}}
    return ProbeResult(lab.task, metrics, lab.classes, len(pool), len(test), [ids[i] for i in test],
                       [ids[i] for i in pool], series, config, skipped, warnings)
