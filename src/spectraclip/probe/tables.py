"""Embeddings tables loaded for probing, merged when they are parts of one set, and aligned on shared ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.embeddings import read_embeddings
from spectraclip.identity import Fingerprints, check_fingerprints, check_same_space
from spectraclip.probe.errors import ProbeError
from spectraclip.probe.labels import ProbeLabels


@dataclass
class EmbeddingSet:
    """One named embeddings table loaded for probing."""

    name: str
    ids: list[str]
    vectors: np.ndarray
    path: str = ""
    paths: list[str | None] | None = None
    fingerprints: Fingerprints | None = None


def load_embeddings(path: str | Path, name: str | None = None) -> EmbeddingSet:
    """Read an embeddings table (Parquet: id + vector) for probing, with the fingerprints it records."""
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"embeddings table {path} does not exist")
    table = read_embeddings(path)
    paths = table.columns.get("path") if table.columns else None
    return EmbeddingSet(name or path.stem, [str(i) for i in table.ids], np.asarray(table.vectors, np.float32),
                        str(path), list(paths) if paths is not None else None, table.fingerprints)


def merge_sets(parts: Sequence[EmbeddingSet], name: str, *, force: bool = False) -> EmbeddingSet:
    """One set from several tables of the same items' embeddings (e.g. shards of one run): rows concatenated,
    the first row of a repeated id kept.

    Refused (`FingerprintMismatchError`) when the tables' fingerprints say they come from different models or
    preprocessing, or some record none: their vectors would be mixed in one classifier. `force` accepts them.
    """
    if len(parts) == 1:
        return parts[0]
    check_same_space({p.path or p.name: p.fingerprints for p in parts}, f"merge the tables of {name!r} into one set",
                     force=force)
    dims = {p.path or p.name: p.vectors.shape[1] for p in parts}
    if len(set(dims.values())) > 1:
        raise ProbeError(f"cannot merge the tables of {name!r}: vector dimensions differ "
                         f"({', '.join(f'{k}: {v}' for k, v in dims.items())})")
    seen: set[str] = set()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    paths: list[str | None] = []
    for p in parts:
        keep = [n for n, i in enumerate(p.ids) if i not in seen]
        seen.update(p.ids)
        ids += [p.ids[n] for n in keep]
        rows.append(p.vectors[keep])
        paths += [p.paths[n] for n in keep] if p.paths is not None else [None] * len(keep)
    fps = {p.fingerprints for p in parts}
    return EmbeddingSet(name, ids, np.concatenate(rows), " + ".join(p.path for p in parts),
                        paths if any(x is not None for x in paths) else None,
                        next(iter(fps)) if len(fps) == 1 else None)


def group_by_name(sets: Sequence[EmbeddingSet], *, force: bool = False) -> list[EmbeddingSet]:
    """Tables given the same display name merged into one set (see `merge_sets`), in first-seen order."""
    groups: dict[str, list[EmbeddingSet]] = {}
    for s in sets:
        groups.setdefault(s.name, []).append(s)
    return [merge_sets(parts, name, force=force) for name, parts in groups.items()]


def check_sets_against(sets: Sequence[EmbeddingSet], model: Any, model_label: str, *, force: bool = False) -> None:
    """Refuse any set whose fingerprints differ from `model`'s (the model the user says made them)."""
    for s in sets:
        check_fingerprints(s.fingerprints, model, s.path or s.name, force=force, model_label=model_label)


def align(sets: Sequence[EmbeddingSet], labels: ProbeLabels) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Ids present in the labels AND in every table (labels' order), each table's vectors in that order."""
    if not sets:
        raise ProbeError("probe needs at least one embeddings table")
    common = set(labels.ids)
    for s in sets:
        common &= set(s.ids)
    ids = [i for i in labels.ids if i in common]
    notes = []
    for s in sets:
        extra = len(set(s.ids)) - len(ids)
        if extra:
            notes.append(f"{s.name}: {extra} item(s) without a label or missing from another table were left out")
    if len(ids) < 4:
        raise ProbeError(
            f"only {len(ids)} ids are in the labels ({labels.source}) and in every embeddings table "
            f"({', '.join(s.name for s in sets)}); check that the id columns match"
        )
    mats = []
    for s in sets:
        pos = {i: n for n, i in enumerate(s.ids)}
        mats.append(s.vectors[[pos[i] for i in ids]])
    return ids, mats, notes
