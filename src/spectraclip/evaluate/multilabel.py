"""Multi-label zero-shot metrics (BigEarthNet style) on plain numpy arrays.

`scores` is `[N, K]` image-class similarities, `targets` a `[N, K]` 0/1 matrix of true labels.
"""

from __future__ import annotations

import numpy as np
import sklearn.metrics as skm

DEFINITIONS: dict[str, str] = {
    "mean_of_others": "class i is predicted present when the image's similarity to class i exceeds the "
    "mean of its similarities to all other classes (strictly greater; equivalently, exceeds the mean over "
    "all K classes)",
    "negative_class": "class i is predicted present when the image's similarity to class i exceeds its "
    "similarity to an extra negative class prompt (e.g. 'other features')",
    "per_class": "accuracy (TP+TN)/N, precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2PR/(P+R) per class; "
    "0 when the denominator is 0 (sklearn zero_division=0)",
    "macro": "unweighted mean of the per-class numbers over all classes",
    "micro": "precision/recall/F1 from TP, FP, FN summed over classes",
    "mAP": "full-ranking average precision per class (sklearn average_precision_score: sum over distinct "
    "score thresholds of (R_n - R_{n-1}) * P_n, tied scores form one threshold), averaged over classes "
    "that have at least one positive image",
}


def predict_mean_of_others(scores: np.ndarray) -> np.ndarray:
    """Bool `[N, K]`: score of class i > mean score of the other K-1 classes."""
    s = np.asarray(scores, dtype=np.float64)
    k = s.shape[1]
    if k < 2:
        raise ValueError("the mean-of-other-classes rule needs at least 2 classes")
    # s_i > (S - s_i) / (K - 1)  <=>  K * s_i > S  (same rule, without the rounding of the division)
    return k * s > s.sum(axis=1, keepdims=True)


def predict_negative_class(scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """Bool `[N, K]`: score of class i > the image's score for the extra negative class (`[N]`)."""
    s = np.asarray(scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64).reshape(-1)
    if neg.shape[0] != s.shape[0]:
        raise ValueError(f"{neg.shape[0]} negative scores for {s.shape[0]} images")
    return s > neg[:, None]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_class_metrics(pred: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class accuracy, precision, recall, F1 and support (`[K]` arrays), zero_division=0 (sklearn)."""
    p = np.asarray(pred).astype(bool)
    t = np.asarray(targets).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in shape")
    labels = np.arange(t.shape[1])
    mcm = skm.multilabel_confusion_matrix(t, p, labels=labels)  # [K, 2, 2]: [[tn, fp], [fn, tp]]
    tn, fp, fn, tp = (mcm[:, i, j].astype(np.int64) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(t, p, labels=labels, average=None,
                                                                         zero_division=0)
    acc = _div(tp + tn, np.full(tp.shape, p.shape[0]))
    return {"accuracy": acc, "precision": precision.astype(np.float64), "recall": recall.astype(np.float64),
            "f1": f1.astype(np.float64), "support": support.astype(np.int64), "tp": tp, "fp": fp, "fn": fn}


def average_precision(scores: np.ndarray, target: np.ndarray) -> float:
    """Full-ranking AP of one class (sklearn `average_precision_score`, ties grouped); NaN with no positives."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(target).astype(bool).reshape(-1)
    if not t.any():  # sklearn warns and returns a number here; a class without positives has no AP
        return float("nan")
    return float(skm.average_precision_score(t, s))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP over classes with positives, per-class AP `[K]` with NaN for classes without positives)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    ap = np.full(s.shape[1], np.nan)
    valid = t.any(axis=0)
    if valid.any():
        ap[valid] = skm.average_precision_score(t[:, valid], s[:, valid], average=None)
    return (float(ap[valid].mean()) if valid.any() else float("nan")), ap


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, classes: list[str],
                       negative_scores: np.ndarray | None = None) -> dict:
    """All multi-label numbers for one run, JSON-ready: each threshold rule plus mAP."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    rules = {"mean_of_others": predict_mean_of_others(s)}
    if negative_scores is not None:
        rules["negative_class"] = predict_negative_class(s, negative_scores)
    out: dict = {"n": int(s.shape[0])}
    for name, pred in rules.items():
        m = per_class_metrics(pred, t)
        micro_p, micro_r, micro_f1, _ = skm.precision_recall_fscore_support(t, pred, average="micro",
                                                                            zero_division=0)
        out[name] = {
            "macro": {key: float(m[key].mean()) for key in ("accuracy", "precision", "recall", "f1")},
            "micro": {"precision": float(micro_p), "recall": float(micro_r), "f1": float(micro_f1)},
            "per_class": {
                c: {key: float(m[key][i]) for key in ("accuracy", "precision", "recall", "f1")}
                | {"support": int(m["support"][i])}
                for i, c in enumerate(classes)
            },
        }
    mean_ap, ap = mean_average_precision(s, t)
    out["mAP"] = mean_ap
    out["per_class_AP"] = {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, ap, strict=True)}
    return out
