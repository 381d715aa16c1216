"""Learning from a handful of labels and ranking an archive with it (the workspace's "learn" step).

The probe is the probe package's logistic estimator (`make_estimator("logistic", "multiclass")`: standardised
inputs + logistic regression). Once fitted it is folded into one linear map `v @ W.T + b` over the raw vectors,
so ranking a whole index is one matrix-vector product (float32, in blocks over the memory-mapped vectors), and
it saves as a window probe (`apps.probe_head` format) that `spectraclip map --probe` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectraclip.probe.errors import ProbeError

RANK_BLOCK = 262_144


@dataclass
class LinearProbe:
    """softmax(v @ coef.T + intercept) over the index's (L2-normalised) vectors; `classes[positive]` is the
    class ranked (the target for a positive/negative probe)."""

    classes: list[str]
    coef: np.ndarray  # [K, D] float64
    intercept: np.ndarray  # [K]
    positive: int
    cv_accuracy: float | None
    cv_folds: int
    n_train: int
    counts: dict[str, int]

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """[N, K] class probabilities."""
        z = np.asarray(vectors, np.float32) @ self.coef.T.astype(np.float32) + self.intercept.astype(np.float32)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def window_probe_dict(self, fingerprints: dict[str, str]) -> dict[str, Any]:
        """The `spectraclip.window-probe` JSON of `apps.probe_head` (classes, coef, intercept, fingerprints)."""
        return {"format": "spectraclip.window-probe", "classes": self.classes, "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "fingerprints": dict(fingerprints), "n_train": self.n_train}


def fit_linear_probe(vectors: np.ndarray, labels: Sequence[str], *, positive: str | None = None,
                     seed: int = 0, folds: int = 5) -> LinearProbe:
    """Fit the logistic probe on labelled vectors; cross-validated accuracy with up to `folds` stratified folds
    (None when a class has a single example). `positive`: the class to rank (default: the first class)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from spectraclip.probe.estimators import make_estimator

    x = np.asarray(vectors, np.float64)
    y_names = [str(v) for v in labels]
    classes = sorted(set(y_names))
    if len(classes) < 2:
        raise ProbeError(f"learning needs labels of at least two kinds (positive and negative, or two classes); "
                         f"got {classes or 'none'}")
    y = np.array([classes.index(v) for v in y_names])
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    n_folds = min(folds, min(counts.values()))
    cv = None
    if n_folds >= 2:
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        cv = float(cross_val_score(make_estimator("logistic", "multiclass", seed), x, y, cv=skf).mean())
    est = make_estimator("logistic", "multiclass", seed).fit(x, y)
    scaler, clf = est[0], est[-1]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    w = clf.coef_ / scale  # fold the standardisation into the linear map
    b = clf.intercept_ - (w * scaler.mean_).sum(1)
    if len(classes) == 2:  # sklearn's binary form: one row for class 1; as a 2-class softmax: [0; w]
        w = np.vstack([np.zeros_like(w[0]), w[0]])
        b = np.array([0.0, b[0]])
    pos = classes.index(positive) if positive in classes else 0
    return LinearProbe(classes, w.astype(np.float64), b.astype(np.float64), pos, cv, max(n_folds, 0), len(y), counts)


@dataclass
class Ranking:
    """The index ranked by a probe: rows by descending probability of the positive class, and the rows nearest
    the decision boundary (smallest margin between the two most probable classes) for labelling next."""

    top_rows: np.ndarray
    top_scores: np.ndarray
    uncertain_rows: np.ndarray
    uncertain_scores: np.ndarray
    scored: int


def rank_vectors(probe: LinearProbe, vectors: np.ndarray, rows: np.ndarray | None = None, *, k: int = 50,
                 n_uncertain: int = 20, exclude: Sequence[int] = ()) -> Ranking:
    """Score `vectors` (or only `rows` of them) with the probe, in blocks; exclude the labelled rows."""
    import warnings

    import torch

    srt = None if rows is None else np.sort(np.asarray(rows, np.int64))
    n = len(vectors) if srt is None else len(srt)
    w = torch.from_numpy(probe.coef.astype(np.float32))
    b = torch.from_numpy(probe.intercept.astype(np.float32))
    pos_scores = np.empty(n, np.float32)
    margins = np.empty(n, np.float32)
    for start in range(0, n, RANK_BLOCK):
        stop = min(n, start + RANK_BLOCK)
        block = vectors[start:stop] if srt is None else vectors[srt[start:stop]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a read-only memory map: only read
            v = torch.from_numpy(np.ascontiguousarray(block, np.float32))
        p = torch.softmax(v @ w.T + b, dim=1)
        pos_scores[start:stop] = p[:, probe.positive].numpy()
        top2 = torch.topk(p, 2, dim=1).values
        margins[start:stop] = (top2[:, 0] - top2[:, 1]).numpy()
    ids = np.arange(n) if srt is None else srt
    if len(exclude):
        keep = ~np.isin(ids, np.asarray(list(exclude)))
        ids, pos_scores, margins = ids[keep], pos_scores[keep], margins[keep]
    kk = min(k, len(ids))
    top = np.argpartition(-pos_scores, kk - 1)[:kk] if kk else np.zeros(0, np.int64)
    top = top[np.argsort(-pos_scores[top], kind="stable")]
    ku = min(n_uncertain, len(ids))
    unc = np.argpartition(margins, ku - 1)[:ku] if ku else np.zeros(0, np.int64)
    unc = unc[np.argsort(margins[unc], kind="stable")]
    return Ranking(ids[top], pos_scores[top], ids[unc], pos_scores[unc], len(ids))


__all__ = ["LinearProbe", "Ranking", "fit_linear_probe", "rank_vectors"]
