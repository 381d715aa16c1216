"""`spectraclip embed-merge PARTS… -o TABLE`: the parts of a job array (or any embeddings tables of one
embedding space) as one table, which `index build` and everything downstream read directly.

Refused: parts of different models or preprocessing (both fingerprints named), an id in two parts (the
ids and parts named), and, when the parts record their shards (`embed --shard I/N`), a missing shard or
parts of different item listings. Rows come in shard order (so the sorted id order of the listing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from spectraclip.distributed.errors import ShardError
from spectraclip.distributed.shards import SHARD_KEYS
from spectraclip.embeddings import EmbeddingsTableError, is_embeddings_table, merge_tables, read_table_metadata
from spectraclip.identity import Fingerprints, check_same_space

SHOW = 5  # ids / shards named in an error message


@dataclass
class MergeReport:
    """What a merge wrote: rows, parts, the shard count (0 when the parts record none) and items the shards
    listed but did not embed (their jobs skipped them as bad input)."""

    output: Path
    rows: int
    parts: list[Path]
    shard_count: int = 0
    missing_shards: list[int] = field(default_factory=list)
    not_embedded: int = 0


def _part_files(paths: Sequence[str | Path]) -> list[Path]:
    """Parquet files given, and those in folders given (sorted), each checked to be an embeddings table."""
    out: list[Path] = []
    for p in map(Path, paths):
        found = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        if p.is_dir() and not found:
            raise ShardError(f"{p}: no .parquet parts in this folder")
        for f in found:
            if not f.exists():
                raise ShardError(f"{f}: no such part")
            if not is_embeddings_table(f):
                raise EmbeddingsTableError(f"{f}: not an embeddings table (a .parquet file with id and vector)")
            out.append(f)
    if not out:
        raise ShardError("give the parts to merge (embeddings tables or folders of them)")
    return out


def _check_shards(metas: dict[Path, dict[str, Any]]) -> tuple[int, list[int]]:
    """The shard count the parts agree on (0 if none records one) and the shards missing."""
    counts = {p: m.get("shard_count") for p, m in metas.items()}
    with_shard = {p: c for p, c in counts.items() if c is not None}
    if not with_shard:
        return 0, []
    if len(with_shard) != len(metas):
        plain = [str(p) for p in metas if p not in with_shard]
        raise ShardError(f"cannot merge shards with tables that are not shards: {', '.join(plain[:SHOW])} record "
                         "no --shard; merge the shards first, or give only tables without shards")
    if len(set(with_shard.values())) > 1:
        listing = ", ".join(f"{p.name}: {metas[p].get('shard')}" for p in with_shard)
        raise ShardError(f"the parts come from arrays of different sizes ({listing}); give the parts of one run")
    digests = {metas[p].get("items_digest") for p in with_shard}
    if len(digests) > 1:
        listing = ", ".join(f"{p.name}: {metas[p].get('items_digest')} ({metas[p].get('items_total')} items)"
                            for p in with_shard)
        raise ShardError(f"the shards listed different items ({listing}): every job of an array must be given the "
                         "same inputs, or its slice is not the one the others left to it")
    n = int(next(iter(with_shard.values())))
    present = {int(metas[p]["shard_index"]) for p in with_shard}
    return n, sorted(set(range(1, n + 1)) - present)


def merge_parts(parts: Sequence[str | Path], output: str | Path, *, allow_missing: bool = False,
                force: bool = False) -> MergeReport:
    """Check the parts (one embedding space, each id once, every shard there) and write them as one table,
    atomically. `allow_missing` writes what is there when shards are missing; `force` skips the fingerprint
    check (as `--force` elsewhere)."""
    files = _part_files(parts)
    output = Path(output)
    if output.resolve() in {f.resolve() for f in files}:
        raise ShardError(f"{output}: the output is one of the parts; write the merged table elsewhere")
    metas = {f: read_table_metadata(f) for f in files}
    check_same_space({str(f): Fingerprints.from_metadata(m) for f, m in metas.items()}, "merge into one table",
                     force=force)
    n_shards, missing = _check_shards(metas)
    if missing and not allow_missing:
        shown = ", ".join(f"{i}/{n_shards}" for i in missing[:SHOW]) + (" ..." if len(missing) > SHOW else "")
        raise ShardError(f"{len(missing)} of {n_shards} shards missing: {shown}; run them (`spectraclip embed ... "
                         "--shard I/N`) and merge again, or pass --allow-missing to write the shards given")
    if n_shards:
        files.sort(key=lambda f: int(metas[f]["shard_index"]))
    seen: dict[str, Path] = {}
    dups: list[tuple[str, Path, Path]] = []
    for f in files:  # ids only: a merge holds one part in memory at a time
        for id_ in pq.read_table(f, columns=["id"]).column("id").to_pylist():
            if id_ in seen:
                dups.append((id_, seen[id_], f))
            else:
                seen[id_] = f
    if dups:
        shown = "; ".join(f"{i} ({a.name} and {b.name})" for i, a, b in dups[:SHOW])
        raise ShardError(f"{len(dups)} item(s) appear in more than one part: {shown}"
                         f"{' ...' if len(dups) > SHOW else ''}; the parts overlap (the same shard twice, or "
                         "tables of overlapping inputs), so give each item's part once")
    dims = {int(m.get("dim", 0)) for m in metas.values() if m.get("dim")}
    if len(dims) > 1:
        raise ShardError(f"the parts hold vectors of different dimensions ({sorted(dims)})")
    extra: dict[str, Any] = {"merged_from": [f.name for f in files]}
    if n_shards:
        extra["shards"] = str(n_shards)
    rows = merge_tables(files, output, metadata=extra, drop_keys=SHARD_KEYS)
    listed = sum(int(metas[f].get("shard_items", 0)) for f in files) if n_shards else rows
    return MergeReport(output, rows, files, n_shards, missing, max(0, listed - rows))


__all__ = ["MergeReport", "merge_parts"]
