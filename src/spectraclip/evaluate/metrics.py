"""Single-label classification metrics on plain numpy arrays (pure functions, no model needed).

Conventions: `scores` is `[N, K]` (higher = more likely), labels are class indices `[N]`.
Ties in scores are broken towards the lower class index (stable sort), like `np.argmax`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn.metrics as skm

DEFINITIONS: dict[str, str] = {
    "top1": "fraction of images whose highest-scoring class is the true class (ties -> lowest class index)",
    "top5": "fraction of images whose true class is among the 5 highest-scoring classes (only when K >= 5)",
    "balanced_accuracy": "macro-averaged recall: mean over classes present in the ground truth of "
    "(correct predictions of the class / images of the class); equals sklearn balanced_accuracy_score",
    "per_class_accuracy": "recall of each class (correct / images of the class); null when the class has no images",
    "confusion_matrix": "counts[i][j] = images of true class i predicted as class j (rows: truth, columns: prediction)",
}


def _as_labels(y: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-d array of class indices, got shape {arr.shape}")
    return arr.astype(np.int64)


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """`[N, min(k, K)]` class indices in decreasing score order (stable: ties keep class order)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]


def top_k_accuracy(scores: np.ndarray, labels: Sequence[int] | np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose true label is among the `k` best-scoring classes."""
    # Not sklearn top_k_accuracy_score: it breaks ties towards the *higher* class index (reversed stable
    # sort), ours towards the lower one like argmax; tests/test_evaluate_metrics.py shows 1/3 vs 2/3.
    labels = _as_labels(labels)
    if len(labels) == 0:
        return float("nan")
    top = top_k_predictions(scores, k)
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Fraction of exact matches (sklearn `accuracy_score`; NaN for no samples)."""
    y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
    return float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                     n_classes: int) -> np.ndarray:
    """`[K, K]` int64 counts, rows = true class, columns = predicted class (sklearn, labels 0..K-1)."""
    y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


def per_class_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                       n_classes: int) -> np.ndarray:
    """Recall of each class (`[K]` float); NaN for a class with no true samples (sklearn zero_division=nan)."""
    y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
    return skm.recall_score(y_true, y_pred, labels=np.arange(n_classes), average=None,
                            zero_division=np.nan).astype(np.float64)


def balanced_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                      n_classes: int | None = None) -> float:
    """Macro recall over the classes that occur in `y_true` (sklearn `balanced_accuracy_score`).

    `n_classes` is accepted for symmetry with the other functions; absent classes are left out either way."""
    y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
    if len(y_true) == 0:
        return float("nan")
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected, those are left out
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.balanced_accuracy_score(y_true, y_pred))


def classification_metrics(scores: np.ndarray, labels: Sequence[int] | np.ndarray,
                           classes: Sequence[str]) -> dict:
    """All single-label numbers for one (model, dataset, templates) run, JSON-ready."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_labels(labels)
    k = len(classes)
    if scores.shape != (len(labels), k):
        raise ValueError(f"scores shape {scores.shape} does not match {len(labels)} labels x {k} classes")
    pred = top_k_predictions(scores, 1)[:, 0]
    pca = per_class_accuracy(labels, pred, k)
    out: dict = {
        "n": int(len(labels)),
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, 5) if k >= 5 else None,
        "balanced_accuracy": balanced_accuracy(labels, pred, k),
        "per_class_accuracy": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, pca, strict=True)},
        "support": {c: int(s) for c, s in zip(classes, np.bincount(labels, minlength=k), strict=True)},
        "confusion_matrix": confusion_matrix(labels, pred, k).tolist(),
    }
    return out


PREDICTION_COLUMNS = ("id", "label", "predicted", "correct", "score")


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int] | np.ndarray, bins: int = 15
                               ) -> dict[str, Any]:
    """Expected calibration error of top-1 probabilities (Guo et al., 2017): images binned by their top-1
    probability into `bins` equal-width bins over [0, 1]; ECE = sum over bins of (bin share) x |accuracy of the
    bin - mean top-1 probability of the bin|. Also the mean top-1 probability (confidence) and accuracy, so a
    reader sees the direction: confidence > accuracy is over-confidence."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = _as_labels(labels)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(labels)} labels")
    if len(labels) == 0:
        return {"ece": None, "bins": bins, "confidence": None, "accuracy": None}
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return {"ece": float(ece), "bins": bins, "confidence": float(conf.mean()), "accuracy": float(correct.mean())}


def write_predictions(path: str | Path, ids: Sequence[str], scores: np.ndarray, labels: Sequence[int] | np.ndarray,
                      classes: Sequence[str]) -> Path:
    """One CSV row per image (id, true class, top-1 class, correct 0/1, top-1 score), written atomically, so
    a user can see which images a model gets wrong and compare two models image by image."""
    import csv

    from spectraclip.io.atomic import atomic_open

    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_labels(labels)
    pred = top_k_predictions(scores, 1)[:, 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PREDICTION_COLUMNS)
        for i, x in enumerate(ids):
            p = pred[i]
            w.writerow([x, classes[labels[i]], classes[p], int(p == labels[i]), f"{scores[i, p]:.4f}"])
    return path


def stratified_bootstrap_chance(values: Sequence[float], groups: Sequence[Any], n: int, threshold: float,
                     draws: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Share of stratified bootstrap draws of `n` items (with replacement, group shares kept) whose mean value
    reaches `threshold`, and the 5th-95th percentiles of those means: how often a test split of `n` items
    drawn from the population these items come from would show the effect."""
    from sklearn.utils import resample

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) != len(groups) or not 0 < n < len(v):
        raise ValueError(f"need 1-D values with one group each and 0 < n < {len(v)}, got n={n}, "
                         f"{len(v)} values, {len(groups)} groups")
    rng, g = np.random.RandomState(seed), np.asarray(groups)
    means = np.array([resample(v, replace=True, n_samples=n, stratify=g, random_state=rng).mean()
                      for _ in range(draws)])
    return {"n": n, "threshold": threshold, "draws": draws, "chance": float(np.mean(means >= threshold - 1e-12)),
            "p05": float(np.percentile(means, 5)), "p95": float(np.percentile(means, 95))}


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Image id -> {label, predicted, correct (bool), score}, from a `write_predictions` CSV."""
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and set(PREDICTION_COLUMNS) - set(rows[0]):
        raise ValueError(f"{path}: not a predictions file (columns {', '.join(PREDICTION_COLUMNS)} expected)")
    return {r["id"]: {"label": r["label"], "predicted": r["predicted"], "correct": r["correct"] == "1",
                      "score": float(r["score"])} for r in rows}


def paired_difference_ci(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, n_resamples: int = 10_000,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of `a - b` over paired items (e.g. per-image correctness of two models) and its percentile
    bootstrap interval over items: how much a difference measured on a small test set can be trusted."""
    from scipy.stats import bootstrap

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need at least 2 paired items, got shape {d.shape}")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), float(d[0])
    res = bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(d.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)
