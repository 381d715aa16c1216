"""Learning from a handful of labels and ranking an archive with it (the workspace's "learn" step).

For a target (positive / negative labels) the probe is a Rocchio update of the target's text embedding
(normalise(text + mean of positives) - 0.5 x mean of negatives) with a 1-D logistic for probabilities: the text
query is its anchor, so a few or unbalanced labels cannot collapse the ranking (the first version, standardised
inputs fitted on ten examples in 384 dimensions, did; `method="standardised"` keeps it for benchmarks). The fit
is one linear map `v @ W.T + b` over the (unit) vectors, so ranking a whole index is one matrix-vector product
(float32, in blocks over the memory-mapped vectors), and it saves as a window probe (`apps.probe_head` format)
that `spectraclip map --probe` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        from spectraclip.zeroshot.classifier import softmax

        z = np.asarray(vectors, np.float32) @ self.coef.T.astype(np.float32) + self.intercept.astype(np.float32)
        return softmax(z).astype(np.float32)


PRIOR_C = 1.0  # L2 penalty (as sklearn's C) on the embedding weights around the text prior
PRIOR_SCALE_C = 100.0  # a much weaker one on the text prior's own weight
METHODS = ("prior", "rocchio", "logistic", "standardised")
UNLIKE = 0.5  # Rocchio: the weight of the negatives' mean


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n == 0, 1.0, n)


def _balanced(y: np.ndarray) -> np.ndarray:
    """Per-example weights n / (K * n_class): a class with 3 labels counts as much as one with 27."""
    k = len(np.unique(y))
    counts = np.bincount(y)
    return len(y) / (k * counts[y])


def _fit_prior(x: np.ndarray, y: np.ndarray, prior: np.ndarray, c: float = PRIOR_C,
               c_scale: float = PRIOR_SCALE_C) -> tuple[np.ndarray, float]:
    """Binary logistic regression with the text prior as a feature: logit = a (t . v) + u . v + b, class-balanced,
    penalty |u|^2 / 2C + a^2 / 2C_a (L-BFGS). Returns the folded weight vector u + a t and the bias b.
    With few labels u stays small and the ranking is the text query's; it moves away as labels add evidence."""
    from scipy.optimize import minimize

    t = prior / max(float(np.linalg.norm(prior)), 1e-12)
    s = x @ t
    sw = _balanced(y)
    yy = y.astype(np.float64)
    d = x.shape[1]

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u, a, b = theta[:d], theta[d], theta[d + 1]
        z = x @ u + a * s + b
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable sigmoid
        loss = sw * (np.logaddexp(0.0, z) - yy * z)
        g = sw * (p - yy)
        obj = float(loss.sum() + (u @ u) / (2 * c) + a * a / (2 * c_scale))
        grad = np.concatenate([x.T @ g + u / c, [g @ s + a / c_scale, g.sum()]])
        return obj, grad

    res = minimize(f, np.zeros(d + 2), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    u, a, b = res.x[:d], res.x[d], res.x[d + 1]
    return u + a * t, float(b)


def _fit_rocchio(x: np.ndarray, y: np.ndarray, prior: np.ndarray | None) -> tuple[np.ndarray, float]:
    """q = normalise(t + mean of positives) - UNLIKE x mean of negatives (the index's relevance feedback with the
    text query as the anchor), then a 1-D class-balanced logistic on q . v for probabilities (its slope kept
    positive, so the ranking is q's)."""
    from scipy.optimize import minimize

    t = np.zeros(x.shape[1]) if prior is None else prior / max(float(np.linalg.norm(prior)), 1e-12)
    q = t + x[y == 1].mean(0)
    q = q / max(float(np.linalg.norm(q)), 1e-12) - UNLIKE * x[y == 0].mean(0)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    s, sw, yy = x @ q, _balanced(y), y.astype(np.float64)

    def f(th: np.ndarray) -> tuple[float, np.ndarray]:
        z = th[0] * s + th[1]
        g = sw * (0.5 * (1.0 + np.tanh(0.5 * z)) - yy)
        return float((sw * (np.logaddexp(0.0, z) - yy * z)).sum() + th[0] ** 2 / (2 * PRIOR_SCALE_C)), \
            np.array([g @ s + th[0] / PRIOR_SCALE_C, g.sum()])

    a, b = minimize(f, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(1e-3, None), (None, None)]).x
    return a * q, float(b)


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, method: str, prior: np.ndarray | None,
         seed: int, c: float = PRIOR_C) -> tuple[np.ndarray, np.ndarray]:
    """[K, D] weights and [K] biases of softmax(v @ W.T + b) on the labelled (unit) vectors."""
    if n_classes == 2 and (method == "rocchio" or (method == "prior" and prior is not None)):
        w, b = _fit_rocchio(x, y, prior) if method == "rocchio" else _fit_prior(x, y, prior, c)
        return np.vstack([np.zeros_like(w), w]), np.array([0.0, b])
    if method == "standardised":  # the first version: standardised inputs (scaler fitted on the few labels)
        from spectraclip.probe.estimators import make_estimator

        est = make_estimator("logistic", "multiclass", seed).fit(x, y)
        scaler, clf = est[0], est[-1]
        scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
        w = clf.coef_ / scale
        b = clf.intercept_ - (w * scaler.mean_).sum(1)
    else:  # unit vectors, no scaling, class-balanced L2 logistic regression
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=PRIOR_C, class_weight="balanced", max_iter=2000, random_state=seed).fit(x, y)
        w, b = clf.coef_, clf.intercept_
    if n_classes == 2:  # sklearn's binary form: one row for class 1; as a 2-class softmax: [0; w]
        w = np.vstack([np.zeros_like(w[0]), w[0]])
        b = np.array([0.0, b[0]])
    return w, b


def fit_linear_probe(vectors: np.ndarray, labels: Sequence[str], *, positive: str | None = None,
                     prior: np.ndarray | None = None, method: str = "rocchio", c: float = PRIOR_C, seed: int = 0,
                     folds: int = 5) -> LinearProbe:
    """Fit the probe on labelled vectors (L2-normalised here; the index's vectors already are).

    `method`: "rocchio" (default; two classes) - the weight vector is normalise(t + mean of positives) - 0.5 x
    mean of negatives, t the `prior` (the target's text embedding; none: zero), a 1-D logistic on top for
    probabilities: a few or unbalanced labels move the text query, they cannot collapse the ranking (chosen on half
    of the classes in benchmarks/bench_analyst.py); "prior" - a class-balanced logistic regression on the text
    similarity plus the embedding, the embedding weights penalised (C = `c`); with more classes, or
    "logistic" - class-balanced L2 logistic regression on the unit vectors (no standardisation fitted on a few
    examples in hundreds of dimensions); "standardised" - the first version (the probe package's estimator),
    kept for benchmarks. Cross-validated accuracy with up to `folds` stratified folds (None when a class has a
    single example). `positive`: the class to rank (default: the first class)."""
    from sklearn.model_selection import StratifiedKFold

    if method not in METHODS:
        raise ProbeError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    x = _unit(np.asarray(vectors, np.float64))
    y_names = [str(v) for v in labels]
    classes = sorted(set(y_names))
    if len(classes) < 2:
        raise ProbeError(f"learning needs labels of at least two kinds (positive and negative, or two classes); "
                         f"got {classes or 'none'}")
    pos = classes.index(positive) if positive in classes else 0
    y = np.array([classes.index(v) for v in y_names])
    if positive is None and method in ("rocchio", "prior"):  # class names, no target: nothing to anchor on
        method = "logistic"
    elif len(classes) == 2 and pos == 0:  # the target's class must be class 1
        classes, y, pos = classes[::-1], 1 - y, 1
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    n_folds = min(folds, min(counts.values()))
    cv = None
    if n_folds >= 2:
        accs = []
        for tr, te in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y):
            w_f, b_f = _fit(x[tr], y[tr], len(classes), method, prior, seed, c)
            accs.append(float(((x[te] @ w_f.T + b_f).argmax(1) == y[te]).mean()))
        cv = float(np.mean(accs))
    w, b = _fit(x, y, len(classes), method, prior, seed, c)
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


def rank_vectors_softmax(probe: LinearProbe, vectors: np.ndarray, rows: np.ndarray | None = None, *,
                         k: int = 50, n_uncertain: int = 20, exclude: Sequence[int] = ()) -> Ranking:
    """The first version (a [N, K] softmax for every probe), kept for benchmarks/bench_workspace.py."""
    return rank_vectors(probe, vectors, rows, k=k, n_uncertain=n_uncertain, exclude=exclude, _softmax=True)


def rank_vectors(probe: LinearProbe, vectors: np.ndarray, rows: np.ndarray | None = None, *, k: int = 50,
                 n_uncertain: int = 20, exclude: Sequence[int] = (), _softmax: bool = False) -> Ranking:
    """Score `vectors` (or only `rows` of them) with the probe, in blocks; exclude the labelled rows."""
    import warnings

    import torch

    srt = None if rows is None else np.sort(np.asarray(rows, np.int64))
    n = len(vectors) if srt is None else len(srt)
    w = torch.from_numpy(probe.coef.astype(np.float32))
    b = torch.from_numpy(probe.intercept.astype(np.float32))
    pos_scores = np.empty(n, np.float32)
    margins = np.empty(n, np.float32)
    binary = len(probe.classes) == 2 and not _softmax
    if binary:  # one dot product per row: p = sigmoid(d . v + c), margin = |2p - 1|
        other = 1 - probe.positive
        d = (w[probe.positive] - w[other]).contiguous()
        c = float(b[probe.positive] - b[other])
        for start in range(0, n, RANK_BLOCK):
            stop = min(n, start + RANK_BLOCK)
            block = vectors[start:stop] if srt is None else vectors[srt[start:stop]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                v = torch.from_numpy(np.ascontiguousarray(block, np.float32))
            pos_scores[start:stop] = torch.sigmoid(v @ d + c).numpy()
        margins = np.abs(2.0 * pos_scores - 1.0)
    for start in range(0, 0 if binary else n, RANK_BLOCK):
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


__all__ = ["LinearProbe", "Ranking", "fit_linear_probe", "rank_vectors", "rank_vectors_softmax"]
