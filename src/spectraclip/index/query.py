"""Turning what a user gives (text, example ids, raster files, a raw vector) into one query vector and
running it: the one search path behind the CLI and the HTTP service.

Examples follow the relevance-feedback rule: query = normalise(mean(positives)) - w * mean(negatives),
normalised again; a text query counts as one more positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.index.errors import QueryError
from spectraclip.index.filters import Filters
from spectraclip.index.store import Hit, SearchIndex

DEFAULT_UNLIKE_WEIGHT = 0.5


def normalise(vector: np.ndarray, what: str = "query") -> np.ndarray:
    """Unit-length float32 copy of a vector (QueryError for a zero or non-finite one)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.sqrt(np.dot(v, v)))
    if not np.isfinite(norm) or norm == 0:
        raise QueryError(f"the {what} vector is zero or not finite")
    return v / norm


def example_query(positives: np.ndarray, negatives: np.ndarray | None = None,
                  unlike_weight: float = DEFAULT_UNLIKE_WEIGHT) -> np.ndarray:
    """normalise(mean of positives) minus `unlike_weight` x mean of negatives, normalised."""
    pos = np.atleast_2d(np.asarray(positives, dtype=np.float32))
    if not len(pos):
        raise QueryError("negative examples need at least one positive example or a text query")
    q = normalise(pos.mean(axis=0), "positive examples' mean")
    if negatives is not None and len(negatives):
        q = q - float(unlike_weight) * np.atleast_2d(np.asarray(negatives, dtype=np.float32)).mean(axis=0)
    return normalise(q, "positives minus negatives")


def encode_raster(model: Any, path: str | Path, bands: str | None = None, precision: str | None = "fp32") -> np.ndarray:
    """Embed one raster file on the fly (the same encode path as the tables); QueryError names the file."""
    from spectraclip.inference import encode_images

    errors: list[tuple[str, str]] = []
    enc = encode_images(model, [Path(path)], bands=bands, progress=False, precision=precision,
                        on_error=lambda w, m: errors.append((w, m)))
    if not len(enc.ids):
        why = errors[0][1] if errors else "unreadable"
        raise QueryError(f"--like-file {path}: cannot embed it ({why})")
    return enc.vectors[0]


@dataclass
class Query:
    """Everything a search may combine; at least one of text, like, like_vectors or vector."""

    text: str | None = None
    like: list[str] = field(default_factory=list)
    unlike: list[str] = field(default_factory=list)
    like_vectors: list[np.ndarray] = field(default_factory=list)
    vector: Sequence[float] | None = None
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    unlike_weight: float = DEFAULT_UNLIKE_WEIGHT
    exclude_examples: bool = True


def query_vector(index: SearchIndex, query: Query, model: Any = None, *, force: bool = False) -> tuple[np.ndarray, str]:
    """The normalised query vector and its modality (`text` when text dominates, else `image`)."""
    text = (query.text or "").strip()
    if query.text is not None and not text and not (query.like or query.vector is not None or query.like_vectors):
        raise QueryError("the text query is empty")
    positives: list[np.ndarray] = []
    if text:
        if model is None:
            raise QueryError("this index was opened without a model, so text queries cannot be encoded")
        from spectraclip.zeroshot.text import encode_texts

        index.check_model(model, force=force)
        positives.append(encode_texts(model, [text])[0])
    positives += [index.row_vector(index.row_of(i)) for i in query.like]
    if query.like_vectors and model is not None:
        index.check_model(model, force=force)
    positives += [np.asarray(v, dtype=np.float32) for v in query.like_vectors]
    if query.vector is not None:
        vec = np.asarray(query.vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != index.dim:
            raise QueryError(f"the query vector has {vec.shape[0]} dimensions; the index has {index.dim}")
        positives.append(normalise(vec))
    negatives = [index.row_vector(index.row_of(i)) for i in query.unlike]
    if not positives:
        raise QueryError("empty query: give text, like ids, a like file or a vector")
    for p in positives:
        if np.asarray(p).shape[-1] != index.dim:
            raise QueryError(f"an example has {np.asarray(p).shape[-1]} dimensions; the index has {index.dim}")
    modality = "text" if text and len(positives) == 1 else "image"
    pos = np.stack([normalise(p, "example") for p in positives])
    neg = np.stack(negatives) if negatives else None
    return example_query(pos, neg, query.unlike_weight), modality


def run_query(index: SearchIndex, query: Query, model: Any = None, *, force: bool = False) -> list[Hit]:
    """Rank the index for one query: filters first, then the top `k` (examples themselves left out)."""
    if query.k < 1:
        raise QueryError(f"k must be at least 1, got {query.k}")
    vec, modality = query_vector(index, query, model, force=force)
    exclude = [index.row_of(i) for i in [*query.like, *query.unlike]] if query.exclude_examples else []
    return index.search(vec[None, :], query.k, query.filters, exclude=exclude, modality=modality)[0]


@dataclass
class SearchHit:
    """One ranked hit of `search_vectors`: its 1-based rank, id, cosine score and source path."""

    rank: int
    id: str
    score: float
    path: str | None


def search_vectors(model: Any, vectors: np.ndarray, ids: Sequence[str], queries: Sequence[str], top_k: int = 10,
                   paths: Sequence[str | None] | None = None) -> dict[str, list[Any]]:
    """Text search over vectors in memory (an embeddings table, freshly encoded rasters): they are searched as a
    flat index by `run_query`, so a table gives the hits its flat index gives, and the service. The caller checks
    the vectors' embedding space (as `search` does for tables). Returns `SearchHit`s per query."""
    index = SearchIndex.from_vectors(vectors, ids, paths)
    out: dict[str, list[Any]] = {}
    for text in queries:
        hits = run_query(index, Query(text=text, k=top_k), model, force=True)
        out[text] = [SearchHit(r, h.id, h.score, paths[h.row] if paths else None) for r, h in enumerate(hits, 1)]
    return out


def search_texts(index: SearchIndex, texts: Sequence[str | None], model: Any = None, *, like: Sequence[str] = (),
                 unlike: Sequence[str] = (), like_vectors: Sequence[np.ndarray] = (), k: int = 10,
                 filters: Filters | None = None, force: bool = False) -> list[tuple[str | None, list[Hit]]]:
    """`spectraclip search INDEX_DIR` in Python: one ranked list per text (or one for examples alone, text None),
    each by `run_query` as the service runs a request."""
    out = []
    for text in texts or [None]:
        q = Query(text=text, like=list(like), unlike=list(unlike), like_vectors=list(like_vectors), k=k,
                  filters=filters or Filters())
        out.append((text, run_query(index, q, model, force=force)))
    return out


__all__ = ["DEFAULT_UNLIKE_WEIGHT", "Query", "encode_raster", "example_query", "normalise", "query_vector",
           "run_query", "search_texts", "search_vectors"]
