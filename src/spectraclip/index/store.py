"""An index folder opened for search: memory-mapped vectors, the faiss structure (approximate kinds),
the metadata rows, and filtered top-k search.

Layout of INDEX_DIR: `info.json` (kind, parameters, build time, fingerprints, source tables),
`vectors.npy` (normalised float32, row i = id i), `index.faiss` (IVF-PQ or HNSW only) and
`metadata.parquet` (row i = id i).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spectraclip.identity import Fingerprints, check_fingerprints
from spectraclip.index.errors import IndexFormatError, QueryError, UnknownItemError
from spectraclip.index.faiss_import import import_faiss
from spectraclip.index.filters import ColumnCache, Filters, filter_mask
from spectraclip.index.metadata import row_record

INFO_FILE, VECTORS_FILE, FAISS_FILE, METADATA_FILE = "info.json", "vectors.npy", "index.faiss", "metadata.parquet"
FORMAT = "spectraclip-index"
# a filtered candidate set of at most this many rows x dims is scored exactly (cost comparable to probing IVF
# lists); larger ones go through faiss with an IDSelector
EXACT_SUBSET_CELLS = 4_000_000
MASK_CACHE = 64
MIN_CANDIDATES = 256  # re-ranked per query at least (k x refine_factor when larger): ~0.5 MB read at 512 dims
SCAN_BLOCK = 65_536
# gathered vectors of recent filtered subsets (a page reruns the same filters on every 👍/👎): bytes kept at most
SUBSET_CACHE_BYTES = 256 * 2**20


@dataclass
class Hit:
    """One result: the vector id (row), the item id and the cosine similarity."""

    row: int
    id: str
    score: float


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _as_tensor(block: np.ndarray):
    import warnings

    import torch

    with warnings.catch_warnings():  # read-only memory map: torch only reads it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None,
                 gathered: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of `queries` over `vectors` (or only `rows` of it), scanned in blocks so the
    score matrix stays small; returns (scores, rows), -1 where fewer than k exist. `gathered` (a float32 tensor
    of `vectors[rows]`, `rows` sorted) saves the gather from the memory map.

    torch mm + topk rather than numpy GEMM + argpartition: about 2x the queries/s on this machine
    (benchmarks/bench_index.py), and faiss' flat index at default settings is slower than both."""
    import torch

    q = _as_tensor(np.atleast_2d(queries))
    total = len(vectors) if rows is None else len(rows)
    best_s = torch.full((len(q), 0), -float("inf"))
    best_r = torch.zeros((len(q), 0), dtype=torch.int64)
    if rows is not None and gathered is None:
        rows = np.sort(np.asarray(rows, dtype=np.int64))  # sorted reads of the memory map
    with torch.inference_mode():
        for start in range(0, total, SCAN_BLOCK):
            end = min(total, start + SCAN_BLOCK)
            idx = np.arange(start, end) if rows is None else rows[start:end]
            if gathered is not None:
                block = gathered[start:end]
            else:
                block = _as_tensor(vectors[start:end] if rows is None else vectors[idx])
            s = q @ block.T
            top_s, top_i = torch.topk(s, min(k, s.shape[1]), dim=1)
            cand_s = torch.cat([best_s, top_s], dim=1)
            cand_r = torch.cat([best_r, torch.from_numpy(idx)[top_i]], dim=1)
            best_s, keep = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)
            best_r = torch.gather(cand_r, 1, keep)
    scores, found = best_s.numpy().astype(np.float32), best_r.numpy()
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
    return scores, found


class SearchIndex:
    """A loaded index: `search` ranks rows, `records` gives their metadata, `check_model` guards the space."""

    def __init__(self, directory: Path, info: dict[str, Any], vectors: np.ndarray, faiss_index: Any,
                 meta: pa.Table) -> None:
        self.directory = directory
        self.info = info
        self.vectors = vectors
        self._plain = vectors.view(np.ndarray) if isinstance(vectors, np.memmap) else np.asarray(vectors)
        self.faiss_index = faiss_index
        self.meta = meta
        self.ids: list[str] = [str(i) for i in meta.column("id").to_pylist()]
        self._row = {item: i for i, item in enumerate(self.ids)}
        self._columns = ColumnCache(meta)
        self._masks: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self._mask_lock = threading.Lock()
        self._subsets: OrderedDict[tuple, tuple[np.ndarray, Any]] = OrderedDict()
        self._subset_lock = threading.Lock()  # one gather at a time: concurrent requests of a filter share it

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, ids: Sequence[str], paths: Sequence[str | None] | None = None, *,
                     fingerprints: Fingerprints | None = None, where: str = "embeddings table") -> SearchIndex:
        """A flat (exact) index over vectors held in memory (an embeddings table, freshly encoded rasters), so a
        table is searched by the same path as an index folder (`index.query.run_query`)."""
        meta = pa.table({"id": pa.array([str(i) for i in ids], pa.string()),
                         "path": pa.array([None if p is None else str(p) for p in (paths or [None] * len(ids))],
                                          pa.string())})
        info = {"plan": {"kind": "flat"}, "fingerprints": fingerprints.to_metadata() if fingerprints else {}}
        return cls(Path(where), info, np.ascontiguousarray(vectors, dtype=np.float32), None, meta)

    @property
    def kind(self) -> str:
        return str(self.info["plan"]["kind"])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def row_vector(self, row: int) -> np.ndarray:
        """The stored vector of one row, read through a plain view of the memory map (cheaper than a memmap)."""
        return self._plain[row]

    @property
    def fingerprints(self) -> Fingerprints | None:
        return Fingerprints.from_metadata(self.info.get("fingerprints") or {})

    def check_model(self, model: Any, force: bool = False) -> None:
        """Refuse a model of another embedding space than the tables this index was built from (names both)."""
        check_fingerprints(self.fingerprints, model, f"index {self.directory}", force=force)
        model_dim = getattr(model, "embed_dim", self.dim)
        if int(model_dim) != self.dim:
            raise QueryError(f"index {self.directory} holds {self.dim}-dimensional vectors; "
                             f"the model makes {model_dim}")

    def row_of(self, item_id: str) -> int:
        """Vector id of an item id (UnknownItemError when it is not in the index)."""
        try:
            return self._row[item_id]
        except KeyError:
            raise UnknownItemError(item_id, str(self.directory)) from None

    def records(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """Metadata of these rows, JSON-ready (geometry as WKT, timestamp ISO 8601)."""
        return [row_record(self.meta, int(r)) for r in rows]

    def mask(self, filters: Filters | None) -> np.ndarray | None:
        """Rows passing `filters` (None: no filter), cached for repeated filters (read-only arrays)."""
        if filters is None or filters.is_empty():
            return None
        key = filters.key()
        with self._mask_lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
            mask = filter_mask(self.meta, filters, self._columns)
            if mask is not None:
                mask.setflags(write=False)
            self._masks[key] = mask
            while len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
            return mask

    def _subset(self, key: tuple, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        """(sorted rows, their vectors as one float32 tensor) of a filter's mask, kept for repeated filters."""
        with self._subset_lock:
            if key in self._subsets:
                self._subsets.move_to_end(key)
                return self._subsets[key]
            rows = np.flatnonzero(mask)
            got = (rows, _as_tensor(self.vectors[rows]))
            self._subsets[key] = got
            while len(self._subsets) > 1 and sum(int(t.numel()) * 4 for _, t in self._subsets.values()) > \
                    SUBSET_CACHE_BYTES:
                self._subsets.popitem(last=False)
            return got

    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None, *,
               exclude: Sequence[int] = (), modality: str = "image") -> list[list[Hit]]:
        """Top-k rows for each normalised query row, with filters applied before ranking.

        Selective filters (at most EXACT_SUBSET_CELLS / dim rows pass) are scored exactly on the subset; wider ones
        go through faiss with an IDSelector and fall back to the exact subset when the probed lists hold fewer
        than k passing items. `modality="text"` probes more IVF lists (text queries sit off the image cloud)."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise QueryError(f"query vectors have {q.shape[1]} dimensions; index {self.directory} has {self.dim}")
        mask = self.mask(filters)
        excluded = np.asarray(sorted(set(int(r) for r in exclude)), dtype=np.int64)
        if mask is None:
            want = k + len(excluded)  # excluded rows are dropped after ranking
            if self.faiss_index is None:
                scores, found = exact_search(self.vectors, q, want)
            else:
                scores, found = self._approximate(q, want, None, modality)
        elif self.faiss_index is None or int(np.count_nonzero(mask)) * self.dim <= EXACT_SUBSET_CELLS:
            # a selective filter: exact scores over the subset, gathered once per filter and kept for reruns
            rows, gathered = self._subset(filters.key(), mask)  # type: ignore[union-attr]
            if len(rows) == 0:
                return [[] for _ in q]
            scores, found = exact_search(self.vectors, q, k + len(excluded), rows, gathered)
        else:
            if len(excluded):
                mask = mask.copy()
                mask[excluded] = False
            rows = np.flatnonzero(mask)
            if len(rows) == 0:
                return [[] for _ in q]
            scores, found = self._approximate(q, k, mask, modality)
            short = (found >= 0).sum(axis=1) < min(k, len(rows))
            if short.any():  # the probed lists held fewer than k passing items
                s2, f2 = exact_search(self.vectors, q[short], k, rows)
                scores[short], found[short] = s2, f2
        skip = set(excluded.tolist())
        out = []
        for s_row, r_row in zip(scores, found, strict=True):
            hits = [Hit(int(r), self.ids[int(r)], float(s)) for s, r in zip(s_row, r_row, strict=True)
                    if r >= 0 and int(r) not in skip]
            out.append(hits[:k])
        return out

    def _approximate(self, q: np.ndarray, k: int, mask: np.ndarray | None,
                     modality: str) -> tuple[np.ndarray, np.ndarray]:
        """faiss candidates (k x refine_factor, at least MIN_CANDIDATES; twice that for text queries), re-ranked
        exactly from the memory-mapped vectors."""
        faiss = import_faiss()

        params = self.info["plan"]["params"]
        bits = None
        sel = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        if self.kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=max(int(params["efSearch"]), 2 * k))
        else:
            nprobe = int(params["text_nprobe"] if modality == "text" else params["nprobe"])
            sp = faiss.SearchParametersIVF(nprobe=nprobe)
        if sel is not None:
            sp.sel = sel
        n_cand = max(k * int(params.get("refine_factor", 1)), MIN_CANDIDATES)
        if modality == "text":  # text queries sit off the image cloud: the codes rank them more coarsely, so
            n_cand *= 2  # twice the candidates are re-ranked (1 M x 512: recall@10 0.977 -> 0.999, +0.15 ms)
        _, cand = self.faiss_index.search(q, n_cand, params=sp)
        del bits  # the bitmap must outlive the search call only
        scores = np.full((len(q), k), -np.inf, np.float32)
        found = np.full((len(q), k), -1, np.int64)
        for i, c in enumerate(cand):
            c = np.unique(c[c >= 0])
            if not len(c):
                continue
            # a plain ndarray view of the map: memmap's own fancy indexing costs more
            s = np.take(self._plain, c, axis=0).astype(np.float32, copy=False) @ q[i]
            top = _topk(s[None, :], k)[0]
            scores[i, :len(top)], found[i, :len(top)] = s[top], c[top]
        return scores, found


def read_info(directory: str | Path) -> dict[str, Any]:
    """The `info.json` of an index folder (IndexFormatError naming the folder when it is not one)."""
    path = Path(directory) / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexFormatError(f"{directory}: not an index folder (no {INFO_FILE}); build one with "
                               "`spectraclip index build`") from None
    except json.JSONDecodeError as exc:
        raise IndexFormatError(f"{path}: unreadable ({exc})") from exc
    if info.get("format") != FORMAT:
        raise IndexFormatError(f"{path}: not a spectraclip index (format {info.get('format')!r})")
    return info


def is_index_dir(path: str | Path) -> bool:
    """True for a folder holding an index `info.json` (cheap: no vectors are read)."""
    return (Path(path) / INFO_FILE).is_file()


def open_index(directory: str | Path, mmap: bool = True) -> SearchIndex:
    """Open an index: vectors memory-mapped, faiss structure memory-mapped when faiss can, metadata in RAM."""
    directory = Path(directory)
    info = read_info(directory)
    try:
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r" if mmap else None)
        meta = pq.read_table(directory / METADATA_FILE)
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise IndexFormatError(f"{directory}: damaged index ({exc})") from exc
    if len(meta) != len(vectors):
        raise IndexFormatError(f"{directory}: {len(meta)} metadata rows for {len(vectors)} vectors")
    faiss_index = None
    if info["plan"]["kind"] != "flat":
        faiss = import_faiss()

        path = str(directory / FAISS_FILE)
        try:
            faiss_index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap \
                else faiss.read_index(path)
        except RuntimeError:
            faiss_index = faiss.read_index(path)  # kinds faiss cannot map are read into memory
    return SearchIndex(directory, info, vectors, faiss_index, meta)


__all__ = ["EXACT_SUBSET_CELLS", "FORMAT", "Hit", "SearchIndex", "exact_search", "is_index_dir", "open_index",
           "read_info"]
