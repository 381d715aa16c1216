"""Stratified draws of k training examples, and the fixed train-pool / test split every series shares."""

from __future__ import annotations

import math

import numpy as np

from spectraclip.probe.errors import ProbeError
from spectraclip.probe.labels import ProbeLabels, Task


def _strata(task: Task, y: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """Integer strata for sampling: the class (multiclass) or a quantile bin (regression)."""
    if task == "multiclass":
        return y
    if task == "regression":
        edges = np.unique(np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1]))
        return np.searchsorted(edges, y, side="right")
    raise ValueError(task)


def _allocate(counts: np.ndarray, k: int, min_one: bool) -> np.ndarray:
    """Split `k` over strata proportionally to `counts` (at least one each if `min_one`), never over a count."""
    alloc = np.minimum(counts, 1) if min_one else np.zeros_like(counts)
    target = counts / counts.sum() * k
    for _ in range(k - int(alloc.sum())):
        deficit = np.where(alloc < counts, target - alloc, -np.inf)
        alloc[int(np.argmax(deficit))] += 1
    return alloc


def sample_k(task: Task, y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `k` training examples, stratified.

    multiclass: proportional to class frequency with at least one per class when k >= n_classes
    (k < n_classes: k different classes, one example each); regression: proportional over
    quantile bins of the target; multilabel: first one example for each label (rarest label first)
    while k allows, then uniformly at random. Sorted indices into `y`.
    """
    n = len(y)
    if k >= n:
        return np.arange(n)
    if task == "multilabel":
        chosen: list[int] = []
        taken = np.zeros(n, dtype=bool)
        for lab in np.argsort(y.sum(axis=0), kind="stable"):
            if len(chosen) >= k:
                break
            if y[taken, lab].any():  # already covered by an earlier pick
                continue
            cand = np.flatnonzero(y[:, lab].astype(bool) & ~taken)
            if len(cand):
                pick = int(rng.choice(cand))
                chosen.append(pick)
                taken[pick] = True
        rest = k - len(chosen)
        if rest > 0:
            chosen.extend(rng.choice(np.flatnonzero(~taken), size=rest, replace=False).tolist())
        return np.sort(np.array(chosen, dtype=np.int64))
    strata = _strata(task, y)
    groups, codes = np.unique(strata, return_inverse=True)
    counts = np.bincount(codes, minlength=len(groups))
    if task == "multiclass" and k < len(groups):
        alloc = np.zeros_like(counts)
        alloc[rng.choice(len(groups), size=k, replace=False)] = 1
    else:
        alloc = _allocate(counts, k, min_one=task == "multiclass")
    out = [rng.choice(np.flatnonzero(codes == g), size=int(a), replace=False) for g, a in enumerate(alloc) if a]
    return np.sort(np.concatenate(out).astype(np.int64))


def make_split(labels: ProbeLabels, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_pool, test) index arrays: from the labels' split column when given, else a seeded stratified split.

    With a split column, `test` rows are the test set and every other row (train, val) is the training pool.
    """
    n = len(labels.ids)
    if labels.split is not None:
        is_test = np.array([s == "test" for s in labels.split])
        if not is_test.any():
            raise ProbeError(f"{labels.source or 'labels'}: split column has no 'test' rows")
        if is_test.all():
            raise ProbeError(f"{labels.source or 'labels'}: split column has only 'test' rows")
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    stratify = None
    if labels.task != "multilabel":
        strata = _strata(labels.task, labels.y)
        _, counts = np.unique(strata, return_counts=True)
        n_test = math.ceil(test_size * n) if test_size < 1 else int(test_size)
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            stratify = strata
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)
