"""Learning from a handful of labels and ranking an archive with it (the workspace's "learn" step).

For a target (positive / negative labels) the probe is a Rocchio update of the target's text embedding
(normalise(text + mean of positives) - 0.5 x mean of negatives) with a 1-D logistic for probabilities: the text
query is its anchor, so a few or unbalanced labels cannot collapse the ranking (the first version, standardised
inputs fitted on ten examples in 384 dimensions, did; `method="standardised"` keeps it for benchmarks). The fit
is one linear map `v @ W.T + b` over the (unit) vectors, so ranking a whole index is one matrix-vector product
(a float16 copy of the vectors picks a shortlist that float32 re-scores: `rank_vectors`), and it saves as a
window probe (`apps.probe_head` format) that `spectraclip map --probe` reads.
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


SCAN_COPY_MIN_ROWS = 65_536  # below this a float32 scan is as fast as the copy's
SCAN_COPY_MAX_BYTES = 4 << 30  # the largest float16 copy kept in memory (4 M x 512); larger indexes scan float32
MAX_SHORTLIST = 200_000  # a float16 top band wider than this is scored in float32 instead


def scan_copy(vectors: np.ndarray, max_bytes: int = SCAN_COPY_MAX_BYTES) -> Any:
    """A float16 torch copy of `vectors` for ranking scans, or None when the index is small (a float32 scan is as
    fast) or the copy would exceed `max_bytes`.

    Ranking one probe over an index is one matrix-vector product, bound by the bytes streamed from memory, not by
    arithmetic: 1 M x 512 float32 is 2 GB per scan. Half of that in float16 halves the scan (measured in
    benchmarks/bench_workspace.py); the shortlist it picks is re-scored in float32 (`rank_vectors`), so the
    returned rows and scores are the exact ones. Built in blocks (no float32 temporary of the whole index)."""
    import warnings

    import torch

    n, d = vectors.shape
    if n < SCAN_COPY_MIN_ROWS or n * d * 2 > max_bytes:
        return None
    out = torch.empty((n, d), dtype=torch.float16)
    plain = vectors.view(np.ndarray) if isinstance(vectors, np.memmap) else vectors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only memory map: only read
        for start in range(0, n, RANK_BLOCK):
            stop = min(n, start + RANK_BLOCK)
            out[start:stop] = torch.from_numpy(np.asarray(plain[start:stop], np.float32))
    return out


def _exact_logits(vectors: np.ndarray, rows: np.ndarray | None, d: np.ndarray, c: float) -> np.ndarray:
    """float32 `v . d + c` for every row (or `rows`), in blocks through BLAS (no copy of a memory map)."""
    plain = vectors.view(np.ndarray) if isinstance(vectors, np.memmap) else np.asarray(vectors)
    n = len(plain) if rows is None else len(rows)
    z = np.empty(n, np.float32)
    for start in range(0, n, RANK_BLOCK):
        stop = min(n, start + RANK_BLOCK)
        block = plain[start:stop] if rows is None else plain[rows[start:stop]]
        z[start:stop] = np.asarray(block, np.float32) @ d
    z += c
    return z


def _smallest(values: Any, k: int) -> np.ndarray:
    """Positions of the k smallest of a float32 torch vector, ascending (ties by position)."""
    import torch

    k = min(k, len(values))
    if k == 0:
        return np.zeros(0, np.int64)
    idx = torch.topk(values, k, largest=False, sorted=False).indices.numpy()
    return idx[np.lexsort((idx, values.numpy()[idx]))]


SCAN_CHUNK = 65_536  # rows per task of the parallel float16 scan
_SCAN_POOL: dict[int, Any] = {}  # thread count -> its pool, made on first use


def _scan_mv(part: Any, q: Any) -> Any:
    """`part @ q` in float16, in chunks on torch's thread count: torch's float16 matrix-vector product runs on one
    thread (a chunked scan on two threads measured 1.5-2.5x faster on 1 M x 512, benchmarks/bench_workspace.py)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    n, threads = len(part), torch.get_num_threads()
    out = torch.empty(n, dtype=part.dtype)
    if threads < 2 or n <= SCAN_CHUNK:
        return torch.mv(part, q, out=out)
    pool = _SCAN_POOL.setdefault(threads, ThreadPoolExecutor(threads, thread_name_prefix="rank-scan"))
    starts = range(0, n, SCAN_CHUNK)
    list(pool.map(lambda s: torch.mv(part[s:s + SCAN_CHUNK], q, out=out[s:s + SCAN_CHUNK]), starts))
    return out


def _shortlist(part: Any, d: np.ndarray, c: float, excluded: np.ndarray, want_top: int,
               want_unc: int) -> np.ndarray | None:
    """Rows (positions in `part`, the float16 scan copy or its filtered rows) to re-score in float32: every row
    whose exact logit v . d + c could be among the top `want_top`, and the 4 x `want_unc` + 64 rows the scan puts
    nearest the boundary; `excluded` positions never. None when the top band needs more than MAX_SHORTLIST rows.

    The query is scaled to a largest component of 1 (float16's range) and each vector and query component is
    rounded by at most 2^-11 relative, the product by 2^-11 |v . d|: |scan - exact| <= 2^-10 |d| + 2^-11 |v . d|
    for unit vectors. The top rows are taken within twice that of the k-th, so they are exactly float32's. The
    boundary is dense (tens of thousands of a million rows lie within that bound of it), so the uncertain rows
    are the scan's nearest, each within the bound of the exact nearest; their reported scores are exact."""
    import torch

    m = float(np.abs(d).max()) or 1.0
    z = _scan_mv(part, torch.from_numpy(d / m).to(torch.float16))  # (v . d) / m, float16
    if len(excluded):
        z[torch.from_numpy(excluded)] = -float("inf")
    scored = len(z) - len(excluded)
    parts = []
    if want_top:
        err = 2.0**-9 * float(np.linalg.norm(d / m)) * 1.01  # unit vectors, with room for their float32 rounding
        k = min(len(z), max(4 * want_top, want_top + 64))
        while True:  # widen until every row within the band of the k-th is in
            vals, idx = torch.topk(z, k)
            t_k, top = float(vals[want_top - 1]), float(vals[0])
            band = 2 * (err + 2.0**-10 * max(abs(t_k), abs(top)))
            if k >= len(z) or float(vals[-1]) < t_k - band:
                break
            if k > MAX_SHORTLIST:
                return None
            k = min(len(z), 4 * k)
        parts.append(idx[vals >= t_k - band])
    if want_unc:  # |v . d + c| nearest zero; excluded rows are -inf, so +inf here
        mag = torch.add(z, c / m).abs_()
        parts.append(torch.topk(mag, min(scored, 4 * want_unc + 64), largest=False, sorted=False).indices)
    if not parts:
        return np.zeros(0, np.int64)
    return torch.unique(torch.cat(parts)).numpy()


def _rank_binary(probe: LinearProbe, vectors: np.ndarray, srt: np.ndarray | None, excluded: np.ndarray, k: int,
                 n_uncertain: int, scan: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Top and most uncertain positions of a two-class probe: one logit z per row (p = sigmoid(z); |z| orders the
    margin), from a shortlist of the float16 `scan` copy re-scored in float32, or in float32 throughout."""
    import warnings

    import torch

    other = 1 - probe.positive
    d = (probe.coef[probe.positive] - probe.coef[other]).astype(np.float32)
    c = float(probe.intercept[probe.positive] - probe.intercept[other])
    n = len(vectors) if srt is None else len(srt)
    scored = n - len(excluded)
    want_top, want_unc = min(k, scored), min(n_uncertain, scored)
    cand = None
    if scan is not None:
        cand = _shortlist(scan if srt is None else scan[torch.from_numpy(srt)], d, c, excluded, want_top, want_unc)
    if cand is not None:
        z = _exact_logits(vectors, cand if srt is None else srt[cand], d, c)
    else:  # no copy, or the top band was too wide: every row in float32
        cand = np.arange(n)
        z = _exact_logits(vectors, srt, d, c)
        z[excluded] = np.nan
    zt = torch.from_numpy(z)
    top_at = _smallest(torch.nan_to_num(-zt, nan=float("inf")), want_top)
    unc_at = _smallest(torch.nan_to_num(zt.abs(), nan=float("inf")), want_unc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sig = 1.0 / (1.0 + np.exp(-z[np.concatenate([top_at, unc_at])]))
    return cand[top_at], sig[:len(top_at)], cand[unc_at], sig[len(top_at):], scored


def rank_vectors_softmax(probe: LinearProbe, vectors: np.ndarray, rows: np.ndarray | None = None, *,
                         k: int = 50, n_uncertain: int = 20, exclude: Sequence[int] = ()) -> Ranking:
    """The first version (a [N, K] softmax for every probe), kept for benchmarks/bench_workspace.py."""
    return rank_vectors(probe, vectors, rows, k=k, n_uncertain=n_uncertain, exclude=exclude, _softmax=True)


def rank_vectors(probe: LinearProbe, vectors: np.ndarray, rows: np.ndarray | None = None, *, k: int = 50,
                 n_uncertain: int = 20, exclude: Sequence[int] = (), scan: Any = None,
                 _softmax: bool = False) -> Ranking:
    """Score `vectors` (or only `rows` of them) with the probe, leaving the labelled rows `exclude` out.

    Two classes (the workspace's positive / negative): one logit per row; with `scan` (the index's float16
    `scan_copy`: half the bytes to stream) the scan picks a shortlist that is re-scored in float32, so the top
    rows and every returned score are exactly float32's; the uncertain rows are the scan's nearest to the
    boundary (`_shortlist` gives the bound). More classes: a softmax per block, float32.
    """
    import warnings

    import torch

    srt = None if rows is None else np.sort(np.asarray(rows, np.int64))
    n = len(vectors) if srt is None else len(srt)
    ids = np.arange(n) if srt is None else srt
    ex = np.asarray(list(exclude), np.int64)
    if srt is None:
        excluded = np.unique(ex[(ex >= 0) & (ex < n)])
    else:
        at = np.searchsorted(srt, ex)
        excluded = np.unique(at[(at < n) & (srt[np.minimum(at, n - 1)] == ex)]) if n else np.zeros(0, np.int64)
    if len(probe.classes) == 2 and not _softmax:
        top, top_p, unc, unc_p, scored = _rank_binary(probe, vectors, srt, excluded, k, n_uncertain, scan)
        return Ranking(ids[top], top_p, ids[unc], unc_p, scored)
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
    keep = np.ones(n, bool)
    keep[excluded] = False
    ids, pos_scores, margins = ids[keep], pos_scores[keep], margins[keep]
    kk = min(k, len(ids))
    top = np.argpartition(-pos_scores, kk - 1)[:kk] if kk else np.zeros(0, np.int64)
    top = top[np.argsort(-pos_scores[top], kind="stable")]
    ku = min(n_uncertain, len(ids))
    unc = np.argpartition(margins, ku - 1)[:ku] if ku else np.zeros(0, np.int64)
    unc = unc[np.argsort(margins[unc], kind="stable")]
    return Ranking(ids[top], pos_scores[top], ids[unc], pos_scores[unc], len(ids))


__all__ = ["LinearProbe", "Ranking", "fit_linear_probe", "rank_vectors", "rank_vectors_softmax", "scan_copy"]
