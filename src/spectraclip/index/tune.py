"""Search depth from the data (the autofaiss idea): after an IVF index is built, search a sample of its own
vectors through the real search path at increasing nprobe (and, when probing deeper stops helping, more
re-ranked candidates) and keep the cheapest setting that reaches the target recall@k against exact search.
A fixed fraction of the lists (the former nlist/16) is too shallow for near-isotropic clusters and
needlessly slow for structured ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

TARGET_RECALL = 0.98  # recall@10 the tuning aims at on the sample (the issue asks >= 0.95 of queries)
SAMPLE = 256
MIN_ROWS = 20_000  # below this the sample would be a large share of the index: keep the rule


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]))


REFINE_FACTORS = (10, 20, 40, 80)  # candidates re-ranked exactly: k x this (at least MIN_CANDIDATES)


def tune_nprobe(vectors: np.ndarray, faiss_index: Any, plan_params: dict[str, Any], meta: pa.Table, *,
                k: int = 10, target: float = TARGET_RECALL, sample: int = SAMPLE, seed: int = 0) -> dict[str, Any]:
    """The cheapest probing depth reaching `target` recall@k on `sample` stored vectors (each query's own row
    left out): for each re-ranking depth in turn, nprobe doubles from 8 until the target is reached or recall
    stops growing (then more candidates are re-ranked). Text queries get twice the nprobe found (and re-rank
    twice the candidates: `SearchIndex._approximate`). `meta` is the index's metadata (row i = vector i), so
    the search runs exactly as it will on the built index."""
    from spectraclip.index.store import SearchIndex, exact_search

    n = len(vectors)
    nlist = int(plan_params["nlist"])
    if n < MIN_ROWS:
        return {}
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(sample, n), replace=False))
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    _, exact = exact_search(vectors, q, k + 1)
    truth = np.array([[r for r in e if r != own][:k] for e, own in zip(exact, rows, strict=True)])
    params = dict(plan_params)
    index = SearchIndex(Path("."), {"plan": {"kind": "ivfpq", "params": params}}, vectors, faiss_index, meta)

    def recall(nprobe: int, refine: int) -> float:
        params.update(nprobe=nprobe, refine_factor=refine)
        hits = index.search(q, k + 1)
        found = [[h.row for h in hs if h.row != own][:k] for hs, own in zip(hits, rows, strict=True)]
        return round(_recall(found, truth), 4)

    tried: dict[str, float] = {}
    best = (-1.0, nlist, REFINE_FACTORS[-1])
    for refine in REFINE_FACTORS:
        depth, last = 8, -1.0
        while depth <= nlist:
            r = tried[f"{depth}x{refine}"] = recall(depth, refine)
            if r > best[0]:
                best = (r, depth, refine)
            if r >= target or r - last < 0.002:  # reached, or probing deeper no longer helps
                break
            depth, last = depth * 2, r
        if best[0] >= target:
            break
    _, nprobe, refine = best
    return {"nprobe": nprobe, "text_nprobe": min(nlist, 2 * nprobe), "refine_factor": refine,
            "tuning": {"target_recall_at_k": target, "k": k, "sample": len(rows), "reached": best[0],
                       "recall_by_nprobe_x_refine": tried, "queries": "stored vectors, own row left out"}}


__all__ = ["MIN_ROWS", "REFINE_FACTORS", "SAMPLE", "TARGET_RECALL", "tune_nprobe"]
