"""Building an index folder from embeddings tables, and appending tables to one without a rebuild.

Vectors are re-normalised (inner product = cosine), items with a duplicate id or a zero/non-finite
vector are skipped and reported, and the model/preprocessing fingerprints of the tables (which must
agree) travel into `info.json`. Every file is written to a fresh folder that replaces the old one
only when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spectraclip.embeddings import EmbeddingsTable, EmbeddingsTableError, read_embeddings
from spectraclip.identity import MODEL_KEY, PREPROCESSING_KEY, Fingerprints
from spectraclip.index.choose import DEFAULT_MAX_MEMORY, IndexPlan, choose_index
from spectraclip.index.errors import IndexFormatError
from spectraclip.index.faiss_import import import_faiss
from spectraclip.index.metadata import concat_metadata, metadata_from_table
from spectraclip.index.store import FAISS_FILE, FORMAT, INFO_FILE, METADATA_FILE, VECTORS_FILE, read_info

# table metadata copied into info.json (describes the embedding space)
SPACE_KEYS = ("bands", "dim", "model", "preprocessing", "model_declared", "source_format")


@dataclass
class BuildReport:
    """What a build or an append did: items indexed, items skipped (id, reason), the plan and timing."""

    directory: Path
    added: int
    total: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_tables: list[str] = field(default_factory=list)
    plan: IndexPlan | None = None
    seconds: float = 0.0


@dataclass
class _Batch:
    vectors: np.ndarray
    meta: pa.Table
    fingerprints: Fingerprints | None
    space: dict[str, Any]
    sources: list[dict[str, Any]]


def _normalise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(vectors, axis=1)
    good = np.isfinite(norms) & (norms > 0)
    out = vectors / np.where(good, norms, 1.0)[:, None]
    return np.ascontiguousarray(out, dtype=np.float32), good


def _published_table(path: str | Path, published: dict[str, Any] | None) -> EmbeddingsTable:
    """A published Major TOM embedding file as a table of the declared model's space (`published`: the metadata
    of the model named with --published: its fingerprints, bands, dim); refused without it."""
    from spectraclip.data.majortom import PUBLISHED_HINT, read_published_columns, read_published_embeddings

    if published is None:
        raise IndexFormatError(f"{path} is a published Major TOM embedding file: {PUBLISHED_HINT}")
    ids, vectors, info = read_published_embeddings(path, str(published.get("model_declared") or ""))
    dim = published.get("dim")
    if dim is not None and len(ids) and vectors.shape[1] != int(dim):
        raise IndexFormatError(f"{path}: {vectors.shape[1]}-dimensional embeddings; the model named with "
                               f"--published ({published.get('model_declared')}) makes {dim}")
    return EmbeddingsTable(ids, vectors, read_published_columns(path), {**published, **info})


def _read_tables(tables: Sequence[str | Path], known_ids: set[str], force: bool,
                 expect: Fingerprints | None = None, expect_dim: int | None = None,
                 have_fingerprints: bool | None = None,
                 published: dict[str, Any] | None = None) -> tuple[_Batch, list[tuple[str, str]]]:
    """Read and check tables: one dimension, one embedding space; skip duplicate ids and bad vectors. A published
    Major TOM file is read only with `published` (the declared model's metadata), recorded as declared."""
    from spectraclip.data.majortom import is_published_embeddings

    vecs, metas, sources, skipped = [], [], [], []
    fps, space, dim = expect, {}, expect_dim
    seen = set(known_ids)
    first = None
    for path in tables:
        try:
            table = _published_table(path, published) if is_published_embeddings(path) else read_embeddings(path)
        except EmbeddingsTableError as exc:
            raise IndexFormatError(str(exc)) from exc
        where = str(path)
        fp = Fingerprints.from_metadata(table.metadata)
        if dim is not None and table.dim != dim and len(table):
            raise IndexFormatError(f"{where}: {table.dim}-dimensional vectors; the index holds {dim}")
        if first is None and have_fingerprints is None:
            have_fingerprints = fp is not None
        if not force:
            if (fp is None) != (not have_fingerprints):
                raise IndexFormatError(
                    f"{where} {'has no' if fp is None else 'has'} model fingerprints, unlike "
                    f"{first or 'the index'}; one index holds one embedding space (--force to mix anyway)")
            if fp is not None and fps is not None and fp != fps:
                raise IndexFormatError(
                    f"{where} was embedded with model {fp.model} / preprocessing {fp.preprocessing}, but "
                    f"{first or 'the index'} with model {fps.model} / preprocessing {fps.preprocessing}")
        fps = fps or fp
        first = first or where
        dim = dim if dim is not None else (table.dim if len(table) else None)
        space = space or {k: table.metadata[k] for k in SPACE_KEYS if k in table.metadata}
        vectors, good = _normalise(table.vectors) if len(table) else (table.vectors, np.zeros(0, bool))
        keep = []
        for i, item in enumerate(table.ids):
            if item in seen:
                skipped.append((item, f"{where}: duplicate id (already indexed)"))
            elif not good[i]:
                skipped.append((item, f"{where}: zero or non-finite vector"))
            else:
                seen.add(item)
                keep.append(i)
        meta = metadata_from_table(table, where)
        take = np.asarray(keep, dtype=np.int64)
        vecs.append(vectors[take] if len(table) else np.zeros((0, dim or 0), np.float32))
        metas.append(meta.take(pa.array(take)))
        sources.append({"path": str(Path(path).resolve()), "rows": len(table), "indexed": len(keep)})
    if dim is None:
        raise IndexFormatError(f"no vectors in {', '.join(map(str, tables)) or 'the tables given'}")
    batch = _Batch(np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32), concat_metadata(metas),
                   fps, space, sources)
    return batch, skipped


def _train_faiss(plan: IndexPlan, vectors: np.ndarray, seed: int) -> Any:
    faiss = import_faiss()

    if plan.kind == "hnsw":
        index = faiss.IndexHNSWFlat(plan.dim, int(plan.params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(plan.params["efConstruction"])
        return index
    index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False  # a hamming pre-filter this search never uses; costs minutes
    rng = np.random.default_rng(seed)
    n_train = int(plan.params["train_size"])
    sample = vectors if n_train >= len(vectors) else vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def _add_faiss(index: Any, vectors: np.ndarray, start: int, chunk: int = 100_000) -> None:
    for i in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[i:i + chunk], dtype=np.float32))
    if index.ntotal != start + len(vectors):
        raise IndexFormatError(f"faiss holds {index.ntotal} vectors, expected {start + len(vectors)}")


def _write_folder(out_dir: Path, info: dict[str, Any], vectors: np.ndarray, meta: pa.Table,
                  faiss_index: Any) -> None:
    """Write the whole folder beside `out_dir`, then swap it in (the old folder survives any failure)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".building", dir=out_dir.parent))
    try:
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
        pq.write_table(meta, tmp / METADATA_FILE)
        if faiss_index is not None:
            faiss = import_faiss()

            faiss.write_index(faiss_index, str(tmp / FAISS_FILE))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
        old = None
        if out_dir.exists():
            if any(out_dir.iterdir()) and not (out_dir / INFO_FILE).is_file():
                raise IndexFormatError(f"{out_dir} exists and is not an index folder; choose another -o")
            old = out_dir.with_name(f".{out_dir.name}.old-{int(time.time() * 1e6)}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_from_arrays(vectors: np.ndarray, meta: pa.Table, out_dir: str | Path, *,
                      max_memory: int = DEFAULT_MAX_MEMORY, kind: str = "auto",
                      fingerprints: Fingerprints | None = None, space: dict[str, Any] | None = None,
                      sources: list[dict[str, Any]] | None = None, seed: int = 0) -> IndexPlan:
    """Build an index folder from normalised vectors and their metadata rows (row i = id i)."""
    if len(meta) != len(vectors) or "id" not in meta.column_names:
        raise IndexFormatError(f"{len(meta)} metadata rows (with an `id` column) needed for {len(vectors)} vectors")
    t0 = time.perf_counter()
    plan = choose_index(len(vectors), int(vectors.shape[1]), max_memory, kind)
    faiss_index = None
    if plan.kind != "flat":
        faiss_index = _train_faiss(plan, vectors, seed)
        _add_faiss(faiss_index, vectors, 0)
        if plan.kind == "ivfpq":
            from spectraclip.index.tune import tune_nprobe

            plan.params.update(tune_nprobe(vectors, faiss_index, plan.params, meta, seed=seed))
    seconds = time.perf_counter() - t0
    info = {"format": FORMAT, "version": 1, "plan": plan.to_dict(), "n": len(vectors), "dim": int(vectors.shape[1]),
            "max_memory": max_memory, "build_seconds": round(seconds, 3), "created": _now(),
            "fingerprints": fingerprints.to_metadata() if fingerprints else None, "space": space or {},
            "tables": sources or [], "appended": []}
    _write_folder(Path(out_dir), info, vectors, meta, faiss_index)
    return plan


def declared_space(model: Any, name: str) -> dict[str, Any]:
    """The metadata under which published Major TOM embeddings are indexed when the user names `model` (called
    `name`) as the one that made them: its fingerprints, bands and dimension, marked as declared, not verified."""
    from spectraclip.embeddings import identity_metadata

    return {"model_declared": name, "bands": ",".join(model.bands.names), "dim": int(model.embed_dim),
            **identity_metadata(model)}


def build_index(tables: Sequence[str | Path], out_dir: str | Path, *, max_memory: int = DEFAULT_MAX_MEMORY,
                kind: str = "auto", force: bool = False, seed: int = 0,
                published: dict[str, Any] | None = None) -> BuildReport:
    """`spectraclip index build`: read embeddings tables, choose the index kind, write INDEX_DIR. Published Major
    TOM embedding files are read only with `published` (`declared_space` of the model named as their maker)."""
    if not tables:
        raise IndexFormatError("give at least one embeddings table")
    t0 = time.perf_counter()
    batch, skipped = _read_tables(tables, set(), force, published=published)
    if not len(batch.vectors):
        raise IndexFormatError(f"no usable vectors in {', '.join(map(str, tables))}")
    plan = build_from_arrays(batch.vectors, batch.meta, out_dir, max_memory=max_memory, kind=kind,
                             fingerprints=batch.fingerprints, space=batch.space, sources=batch.sources, seed=seed)
    return BuildReport(Path(out_dir), len(batch.vectors), len(batch.vectors), skipped, [], plan,
                       time.perf_counter() - t0)


def add_to_index(index_dir: str | Path, tables: Sequence[str | Path], *, force: bool = False) -> BuildReport:
    """`spectraclip index add`: append tables (same embedding space) without retraining; items whose id is
    already indexed are skipped, so re-running an interrupted add is harmless."""
    faiss = import_faiss()

    index_dir = Path(index_dir)
    info = read_info(index_dir)
    t0 = time.perf_counter()
    old_vectors = np.load(index_dir / VECTORS_FILE, mmap_mode="r")
    old_meta = pq.read_table(index_dir / METADATA_FILE)
    known = set(old_meta.column("id").to_pylist())
    fps = Fingerprints.from_metadata(info.get("fingerprints") or {})
    batch, skipped = _read_tables(tables, known, force, expect=fps, expect_dim=int(info["dim"]),
                                  have_fingerprints=fps is not None)
    skipped_tables = [s["path"] for s in batch.sources if s["indexed"] == 0]
    plan = IndexPlan(**info["plan"])
    if not len(batch.vectors):
        return BuildReport(index_dir, 0, len(old_meta), skipped, skipped_tables, plan, time.perf_counter() - t0)
    faiss_index = None
    if plan.kind != "flat":
        faiss_index = faiss.read_index(str(index_dir / FAISS_FILE))
        _add_faiss(faiss_index, batch.vectors, len(old_vectors))
    vectors = np.concatenate([np.asarray(old_vectors), batch.vectors])
    meta = concat_metadata([old_meta, batch.meta])
    rebuild = choose_index(len(vectors), int(info["dim"]), int(info.get("max_memory", DEFAULT_MAX_MEMORY)))
    info = {**info, "n": len(vectors), "tables": info.get("tables", []) + batch.sources,
            "appended": info.get("appended", []) + [{"at": _now(), "added": len(batch.vectors),
                                                     "seconds": round(time.perf_counter() - t0, 3)}],
            "rebuild_would_choose": rebuild.factory if rebuild.kind != plan.kind else None}
    _write_folder(index_dir, info, vectors, meta, faiss_index)
    return BuildReport(index_dir, len(batch.vectors), len(vectors), skipped, skipped_tables, plan,
                       time.perf_counter() - t0)


__all__ = ["BuildReport", "MODEL_KEY", "PREPROCESSING_KEY", "add_to_index", "build_from_arrays", "build_index"]
