"""The embeddings table: GeoParquet, one row per item (`id`, `vector`, source path, footprint, Major TOM columns).

Everything downstream of the model (evaluation, probes, indexes, search) reads this table and checks
the model and preprocessing fingerprints in its metadata (`spectraclip.identity`). A `geometry`
column (WKB, WGS84) gets GeoParquet's `geo` metadata, so geopandas and GDAL open the file as a layer.
Large jobs write numbered part files beside the output and merge them at the end, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spectraclip.errors import SpectraclipError
from spectraclip.geo import GEOMETRY_COLUMN, MAJOR_TOM_TYPES, geo_metadata, with_geo_metadata
from spectraclip.identity import (
    MODEL_KEY,
    PREPROCESSING_KEY,
    PREPROCESSING_SPEC_KEY,
    Fingerprints,
    preprocessing_spec,
)
from spectraclip.io.atomic import atomic_path

SCHEMA_VERSION = "1"
# metadata that describes a run but not the embedding space, so it may change when a run is resumed
RUN_DESCRIPTION_KEYS = frozenset({"failed", "sources", "layout", "large_rasters"})


class EmbeddingsTableError(SpectraclipError, ValueError):
    """A file that is not a usable embeddings table; the message names the file."""


@dataclass
class EmbeddingsTable:
    """Ids, an `[N, D]` float32 matrix and any extra columns, with the table's key/value metadata."""

    ids: list[str]
    vectors: np.ndarray
    columns: dict[str, list[Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def fingerprints(self) -> Fingerprints | None:
        """The model and preprocessing fingerprints the table records (None for a table without them)."""
        return Fingerprints.from_metadata(self.metadata)

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """The preprocessing spec the table records (bands, normalisation, input size, ...), if any."""
        spec = self.metadata.get(PREPROCESSING_SPEC_KEY)
        return spec if isinstance(spec, dict) else None


def identity_metadata(model: Any) -> dict[str, Any]:
    """The metadata that says which embedding space a table holds: both fingerprints and the preprocessing spec."""
    return {**Fingerprints.of(model).to_metadata(), PREPROCESSING_SPEC_KEY: preprocessing_spec(model)}


def _with_fingerprints(metadata: Mapping[str, Any] | None, fingerprints: Fingerprints | None) -> dict[str, Any]:
    meta = dict(metadata or {})
    if fingerprints is not None:
        meta.update(fingerprints.to_metadata())
    return meta


def _column(name: str, values: list[Any]) -> pa.Array:
    """A column in its Major TOM type where it has one; ISO-8601 text is accepted for `timestamp`."""
    kind = MAJOR_TOM_TYPES.get(name)
    if kind is not None and pa.types.is_timestamp(kind) and any(isinstance(v, str) for v in values):
        from spectraclip.geo import parse_time

        bad = [v for v in values if isinstance(v, str) and v.strip() and parse_time(v) is None]
        if bad:
            raise EmbeddingsTableError(f"column {name!r}: {bad[0]!r} is not an ISO-8601 time")
        values = [parse_time(v) if isinstance(v, str) else v for v in values]
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise EmbeddingsTableError(f"column {name!r}: values do not fit {kind} ({exc})") from exc


def _table(ids: Sequence[str], vectors: np.ndarray, columns: Mapping[str, Sequence[Any]] | None,
           metadata: Mapping[str, Any] | None) -> pa.Table:
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise EmbeddingsTableError(f"vectors of shape {vectors.shape} do not match {len(ids)} ids")
    dim = vectors.shape[1]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    arrays: dict[str, pa.Array] = {
        "id": pa.array([str(i) for i in ids], type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    for name, values in (columns or {}).items():
        if name in arrays:
            raise EmbeddingsTableError(f"column name {name!r} is reserved")
        if len(values) != len(ids):
            raise EmbeddingsTableError(f"column {name!r} has {len(values)} values for {len(ids)} ids")
        arrays[name] = _column(name, list(values))
    meta = {"spectraclip.schema": SCHEMA_VERSION, "spectraclip.dim": str(dim)}
    for k, v in (metadata or {}).items():
        meta[f"spectraclip.{k}"] = v if isinstance(v, str) else json.dumps(v)
    return with_geo_metadata(pa.table(arrays).replace_schema_metadata(meta))


def write_embeddings(path: str | Path, ids: Sequence[str], vectors: np.ndarray,
                     columns: Mapping[str, Sequence[Any]] | None = None,
                     metadata: Mapping[str, Any] | None = None, *,
                     fingerprints: Fingerprints | None = None) -> Path:
    """Write an embeddings table atomically (temporary file, then rename), with `fingerprints` in its metadata."""
    table = _table(ids, vectors, columns, _with_fingerprints(metadata, fingerprints))
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _decode_meta(raw: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (raw or {}).items():
        key = k.decode()
        if not key.startswith("spectraclip."):
            continue
        text = v.decode()
        try:
            out[key.removeprefix("spectraclip.")] = json.loads(text)
        except json.JSONDecodeError:
            out[key.removeprefix("spectraclip.")] = text
    return out


def _from_arrow(table: pa.Table, where: str) -> EmbeddingsTable:
    if "id" not in table.column_names or "vector" not in table.column_names:
        raise EmbeddingsTableError(f"{where}: not an embeddings table (needs `id` and `vector` columns)")
    vec = table.column("vector").combine_chunks()
    if len(table) == 0:
        dim = int(_decode_meta(table.schema.metadata).get("dim", 0))
        vectors = np.zeros((0, dim), dtype=np.float32)
    elif pa.types.is_fixed_size_list(vec.type):
        vectors = vec.flatten().to_numpy(zero_copy_only=False).reshape(len(table), vec.type.list_size)
    else:  # variable lists written by other tools
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in vec.to_pylist()])
    columns = {c: table.column(c).to_pylist() for c in table.column_names if c not in ("id", "vector")}
    return EmbeddingsTable(
        ids=[str(i) for i in table.column("id").to_pylist()],
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        columns=columns,
        metadata=_decode_meta(table.schema.metadata),
    )


def read_embeddings(path: str | Path) -> EmbeddingsTable:
    """Read an embeddings table (a Parquet file) written by `write_embeddings` or a compatible tool."""
    path = Path(path)
    if not path.exists():
        raise EmbeddingsTableError(f"{path}: no such embeddings table")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EmbeddingsTableError(f"{path}: cannot read as Parquet ({exc})") from exc
    return _from_arrow(table, str(path))


def read_table_metadata(path: str | Path) -> dict[str, Any]:
    """The spectraclip metadata of a table (fingerprints, dim, shard, ...), reading its schema only."""
    try:
        return _decode_meta(pq.read_schema(Path(path)).metadata)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EmbeddingsTableError(f"{path}: cannot read as Parquet ({exc})") from exc


def is_embeddings_table(path: str | Path) -> bool:
    """True for a Parquet file with `id` and `vector` columns (cheap: reads the schema only)."""
    path = Path(path)
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return False
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError):
        return False
    return "id" in names and "vector" in names


def write_part(parts_dir: str | Path, name: str, ids: Sequence[str], vectors: np.ndarray,
               columns: Mapping[str, Sequence[Any]] | None, metadata: Mapping[str, Any] | None) -> Path:
    """Write one finished batch as `<parts_dir>/part-<name>.parquet` (atomically: a part is there whole or not
    at all), for `PartWriter` and for workers of other processes writing parts of the same table."""
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    table = _table(ids, vectors, columns, metadata)
    path = parts_dir / f"part-{name}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


class PartWriter:
    """Resumable writer: finished batches go to `<output>.parts/part-NNNNN.parquet`; `finish()` merges.

    On restart, `done_ids` holds the ids already written, so the caller skips them.
    """

    def __init__(self, output: str | Path, metadata: Mapping[str, Any] | None = None, *,
                 fingerprints: Fingerprints | None = None) -> None:
        self.output = Path(output)
        self.parts_dir = self.output.with_name(self.output.name + ".parts")
        self.metadata = _with_fingerprints(metadata, fingerprints)
        self.done_ids: set[str] = set()
        self._n_parts = 0
        if self.parts_dir.is_dir():
            for part in sorted(self.parts_dir.glob("part-*.parquet")):
                try:
                    table = pq.read_table(part, columns=["id"])
                except (pa.ArrowInvalid, OSError):
                    part.unlink()  # a part is renamed into place only when complete; drop debris
                    continue
                self._check_same_run(part, _decode_meta(table.schema.metadata))
                self.done_ids.update(table.column("id").to_pylist())
                number = part.stem.split("-", 1)[1]
                if number.isdigit():  # parts named by other writers (e.g. part-r<hash> of Ray workers) too
                    self._n_parts = max(self._n_parts, int(number) + 1)

    def _check_same_run(self, part: Path, old: Mapping[str, Any]) -> None:
        """Refuse to resume parts written with another model or bands: one table must hold one embedding space.

        Parts without fingerprints cannot be vouched for by a run that records them, so they are refused too.
        """
        for key in (MODEL_KEY, PREPROCESSING_KEY):
            if key in self.metadata and key not in old:
                raise EmbeddingsTableError(
                    f"{part}: unfinished parts of an earlier run that recorded no {key}, so nothing says they "
                    f"come from this model; delete {self.parts_dir} to start over")
        for key in sorted(set(old) & set(self.metadata) - RUN_DESCRIPTION_KEYS):
            new = json.loads(json.dumps(self.metadata[key]))  # compare as stored (tuples become lists)
            if old[key] != new and str(old[key]) != str(new):
                raise EmbeddingsTableError(
                    f"{part}: unfinished parts of an earlier run with a different {key} ({old[key]!r}, now "
                    f"{new!r}); rerun with the earlier settings to resume, or delete {self.parts_dir} to start over")

    def write(self, ids: Sequence[str], vectors: np.ndarray,
              columns: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Write one finished batch as the next part file (atomically), so a restart skips its ids."""
        if not len(ids):
            return
        write_part(self.parts_dir, f"{self._n_parts:05d}", ids, vectors, columns, self.metadata)
        self._n_parts += 1
        self.done_ids.update(ids)

    def finish(self, order: Sequence[str] | None = None) -> EmbeddingsTable:
        """Merge all parts (deduplicated by id, first wins) into the output file and remove the parts.

        `order` (the item ids in listing order) sorts the rows, so parts written in any order (by parallel
        workers) give the table one process gives; ids not in it follow in part order."""
        parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []
        merge_tables(parts, self.output, metadata=self.metadata, order=order)
        for p in parts:
            p.unlink()
        for debris in self.parts_dir.glob(".part-*.tmp") if self.parts_dir.is_dir() else []:
            debris.unlink()  # temporary files of a worker killed while writing
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
        return read_embeddings(self.output)


def merge_tables(parts: Sequence[str | Path], output: str | Path, *, metadata: Mapping[str, Any] | None = None,
                 drop_keys: Sequence[str] = (), order: Sequence[str] | None = None) -> int:
    """The one merge of embeddings tables (a run's part files, the shards of a job array) into `output`, atomically;
    returns the rows written. Columns missing in some parts become null there; an id in several parts is kept
    once (first wins). Metadata: the first part's, less `drop_keys`, plus `metadata`; the GeoParquet bbox covers
    every part. `order` (ids in listing order) sorts the rows (parts written in any order give one table; it reads
    every part at once); without it, parts are streamed one at a time in the order given."""
    files = [Path(p) for p in parts]
    schemas = [pq.read_schema(f) for f in files]
    if schemas:
        schema = pa.unify_schemas([sc.remove_metadata() for sc in schemas], promote_options="permissive")
        first = schemas[0].metadata or {}
    else:  # nothing finished (every item failed): a valid empty table of the run's dimension
        first = (schema := _table([], np.zeros((0, int((metadata or {}).get("dim", 0))), np.float32), None,
                                  None).schema).metadata or {}
    meta = {k: v for k, v in first.items() if k != b"geo" and k.decode().removeprefix("spectraclip.") not in drop_keys}
    for k, v in (metadata or {}).items():
        meta[f"spectraclip.{k}".encode()] = (v if isinstance(v, str) else json.dumps(v)).encode()
    if GEOMETRY_COLUMN in schema.names:
        boxes = [_geo_bbox(sc) for sc in schemas]
        geo = geo_metadata(pa.array([], pa.binary()))
        boxes = [b for b in boxes if b]
        if boxes:
            geo["columns"][GEOMETRY_COLUMN]["bbox"] = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                                                       max(b[2] for b in boxes), max(b[3] for b in boxes)]
        meta[b"geo"] = json.dumps(geo).encode()
    schema = schema.with_metadata(meta)

    def aligned(table: pa.Table) -> pa.Table:
        for name in schema.names:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
        return table.select(schema.names).cast(schema)

    seen: set[str] = set()

    def first_seen(table: pa.Table) -> pa.Table:
        keep = []
        for i, id_ in enumerate(table.column("id").to_pylist()):
            if id_ not in seen:
                seen.add(id_)
                keep.append(i)
        return table if len(keep) == len(table) else table.take(pa.array(keep, type=pa.int64()))

    rows = 0
    with atomic_path(Path(output)) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        if order is None:
            for f in files:  # one part in memory at a time
                table = first_seen(aligned(pq.read_table(f)))
                writer.write_table(table)
                rows += len(table)
        elif files:
            table = first_seen(pa.concat_tables([aligned(pq.read_table(f)) for f in files]))
            rank = {id_: r for r, id_ in enumerate(order)}
            ids = table.column("id").to_pylist()
            idx = sorted(range(len(ids)), key=lambda i: (rank.get(ids[i], len(rank)), i))
            table = table.take(pa.array(idx, type=pa.int64()))
            writer.write_table(table)
            rows = len(table)
    return rows


def _geo_bbox(schema: pa.Schema) -> list[float] | None:
    raw = (schema.metadata or {}).get(b"geo")
    return json.loads(raw).get("columns", {}).get(GEOMETRY_COLUMN, {}).get("bbox") if raw else None
