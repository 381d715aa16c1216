"""Text-to-image retrieval metrics: AP@k in two stated definitions, mAP@k and recall@k (numpy, pure).

`scores` is `[Q, N]` (one row per text query, e.g. a class prompt), `relevant` a `[Q, N]` 0/1 matrix.
Ranking sorts scores in decreasing order; ties keep image order (stable sort).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

AP_DEFINITIONS: dict[str, str] = {
    "torchmetrics": "AP@k as torchmetrics RetrievalMAP(top_k=k) and the Llama3-MS-CLIP paper: mean of "
    "precision@i over the ranks i <= k holding a relevant image, i.e. divided by the number of relevant "
    "images found in the top k; 0 when none is found. (torchmetrics >= 1.x also treats images with "
    "score <= 0 as non-relevant; we do not, so the two agree for positive scores.)",
    "standard": "AP@k = sum of precision@i over relevant ranks i <= k, divided by min(k, number of "
    "relevant images); 0 when none is found in the top k.",
}
RECALL_DEFINITION = "recall@k = relevant images in the top k / all relevant images (torchmetrics RetrievalRecall)"
EMPTY_DEFINITION = {
    "skip": "queries (classes) with no relevant image are left out of the mean (torchmetrics "
    "empty_target_action='skip')",
    "zero": "queries (classes) with no relevant image count as 0 (torchmetrics empty_target_action='neg')",
}


def _ranked_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevant).astype(bool)
    if s.shape != r.shape:
        raise ValueError(f"scores {s.shape} and relevance {r.shape} differ in shape")
    order = np.argsort(-s, axis=-1, kind="stable")
    return np.take_along_axis(r, order, axis=-1)


def average_precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int,
                           definition: str = "torchmetrics") -> float:
    """AP@k of one query (`[N]` scores, `[N]` relevance) under `definition` ('torchmetrics'|'standard')."""
    if definition not in AP_DEFINITIONS:
        raise ValueError(f"unknown AP@k definition {definition!r}; choose from {', '.join(AP_DEFINITIONS)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # Not sklearn average_precision_score: that ranks all N items and groups tied scores; AP@k cuts at k and
    # keeps ties in input order. They agree only for k >= N without ties (tests/test_evaluate_metrics.py).
    ranked = _ranked_relevance(scores, relevant)
    top = ranked[:k]
    hits = int(top.sum())
    if hits == 0:
        return 0.0
    ranks = np.flatnonzero(top) + 1
    precisions = np.arange(1, hits + 1) / ranks
    denom = hits if definition == "torchmetrics" else min(k, int(ranked.sum()))
    return float(precisions.sum() / denom)


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Relevant items in the top k / all relevant items of one query (0 when there are none)."""
    # sklearn has no per-query retrieval recall@k (top_k_accuracy_score asks whether one label is in the top k).
    ranked = _ranked_relevance(scores, relevant)
    total = int(ranked.sum())
    return float(ranked[:k].sum() / total) if total else 0.0


def _mean(values: np.ndarray, has_relevant: np.ndarray, empty: str) -> float:
    if empty not in EMPTY_DEFINITION:
        raise ValueError(f"empty must be one of {', '.join(EMPTY_DEFINITION)}, got {empty!r}")
    vals = values if empty == "zero" else values[has_relevant]
    return float(vals.mean()) if len(vals) else float("nan")


def mean_average_precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 100,
                                definition: str = "torchmetrics", empty: str = "skip") -> float:
    """Mean over queries of AP@k; `empty` says what a query with no relevant image contributes."""
    s, r = np.atleast_2d(scores), np.atleast_2d(relevant).astype(bool)
    aps = np.array([average_precision_at_k(s[q], r[q], k, definition) for q in range(s.shape[0])])
    return _mean(aps, r.any(axis=1), empty)


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray, query_names: list[str],
                      k: int = 100, recall_ks: Iterable[int] = (1, 5, 10, 100), empty: str = "skip") -> dict:
    """mAP@k in both definitions, recall@k and per-query numbers, JSON-ready."""
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevant).astype(bool)
    has_rel = r.any(axis=1)
    out: dict = {"k": k, "n_images": int(s.shape[1]), "n_queries": int(s.shape[0]),
                 "n_queries_with_relevant": int(has_rel.sum()), "empty": empty}
    per_query: dict[str, dict] = {name: {"n_relevant": int(r[q].sum())} for q, name in enumerate(query_names)}
    for definition in AP_DEFINITIONS:
        aps = np.array([average_precision_at_k(s[q], r[q], k, definition) for q in range(s.shape[0])])
        out[f"mAP@{k}_{definition}"] = _mean(aps, has_rel, empty)
        for q, name in enumerate(query_names):
            per_query[name][f"AP@{k}_{definition}"] = float(aps[q])
    for rk in recall_ks:
        rec = np.array([recall_at_k(s[q], r[q], rk) for q in range(s.shape[0])])
        out[f"recall@{rk}"] = _mean(rec, has_rel, empty)
    out["per_query"] = per_query
    return out
