"""Probe targets keyed by id: read from CSV/Parquet columns or from folder names, with an optional split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from spectraclip.probe.errors import ProbeError

Task = Literal["multiclass", "multilabel", "regression"]
TASKS: tuple[str, ...] = ("multiclass", "multilabel", "regression")


@dataclass
class ProbeLabels:
    """Targets keyed by id: int class codes `[N]`, a binary matrix `[N, K]` or floats `[N]`."""

    ids: list[str]
    task: Task
    y: np.ndarray
    classes: list[str] = field(default_factory=list)
    split: list[str] | None = None  # per id: "train" / "val" / "test" (or None when not given)
    source: str = ""

    def subset(self, ids: Sequence[str]) -> ProbeLabels:
        """Labels for `ids`, in that order."""
        pos = {i: n for n, i in enumerate(self.ids)}
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        split = [self.split[i] for i in idx] if self.split is not None else None
        return ProbeLabels(list(ids), self.task, self.y[idx], list(self.classes), split, self.source)


def _read_frame(path: Path) -> dict[str, list]:
    """A CSV/TSV (all values as text, so ids like "0001" survive) or Parquet file as a dict of columns."""
    import csv

    if not path.exists():
        raise ProbeError(f"labels file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        if not rows:
            raise ProbeError(f"labels file {path} has no rows")
        return {c: [r[c] for r in rows] for c in rows[0]}
    raise ProbeError(f"labels file {path}: expected .csv, .tsv or .parquet")


def _is_number(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def labels_from_columns(ids: Sequence[object], values: Sequence[object], *, task: str = "auto",
                        split: Sequence[object] | None = None, sep: str = ";", source: str = "") -> ProbeLabels:
    """Build `ProbeLabels` from an id column and a label column; `task="auto"` guesses from the values.

    Lists or `sep`-joined strings are multi-labels; floats (non-integral) are a regression target;
    anything else is a class label.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ProbeError(f"{source or 'labels'}: duplicate ids {dup}")
    vals = list(values)
    if task == "auto":
        if any(isinstance(v, list | tuple | np.ndarray) for v in vals) or any(
            isinstance(v, str) and sep in v for v in vals
        ):
            task = "multilabel"
        elif all(_is_number(v) for v in vals) and any(not float(v).is_integer() for v in vals):
            task = "regression"
        else:
            task = "multiclass"
    if task not in TASKS:
        raise ProbeError(f"--task {task!r}: expected auto, multiclass, multilabel or regression")
    classes: list[str] = []
    if task == "regression":
        try:
            y = np.array([float(v) for v in vals], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"{source or 'labels'}: regression target is not numeric ({exc})") from exc
    elif task == "multiclass":
        names = [str(v) for v in vals]
        classes = sorted(set(names))
        code = {c: n for n, c in enumerate(classes)}
        y = np.array([code[c] for c in names], dtype=np.int64)
    else:
        sets: list[list[str]] = []
        for v in vals:
            if isinstance(v, str):
                sets.append([p.strip() for p in v.split(sep) if p.strip()])
            elif v is None:
                sets.append([])
            else:
                sets.append([str(p) for p in v])
        classes = sorted({c for s in sets for c in s})
        code = {c: n for n, c in enumerate(classes)}
        y = np.zeros((len(sets), len(classes)), dtype=np.int64)
        for row, s in enumerate(sets):
            y[row, [code[c] for c in s]] = 1
    split_list = None
    if split is not None:
        split_list = [str(s).strip().lower() if s not in (None, "") else "train" for s in split]
    return ProbeLabels(ids, task, y, classes, split_list, source)  # type: ignore[arg-type]


def read_labels(path: str | Path, *, id_column: str = "id", label_column: str = "label",
                split_column: str | None = None, task: str = "auto", sep: str = ";") -> ProbeLabels:
    """Read labels keyed by id from CSV/Parquet: a class, `sep`-separated or list multi-labels, or a number."""
    path = Path(path)
    cols = _read_frame(path)
    for name, opt in ((id_column, "--id-column"), (label_column, "--label-column"), (split_column, "--split-column")):
        if name is not None and name not in cols:
            raise ProbeError(f"labels file {path} has no column {name!r} ({opt}); columns: {', '.join(cols)}")
    return labels_from_columns(cols[id_column], cols[label_column], task=task,
                               split=cols[split_column] if split_column else None, sep=sep, source=str(path))


def labels_from_paths(ids: Sequence[str], paths: Sequence[str | None], source: str = "paths") -> ProbeLabels:
    """Class = name of each file's parent folder; split = a `train`/`val`/`test` folder above it, if any."""
    labels, splits = [], []
    for i, p in zip(ids, paths, strict=True):
        if not p:
            raise ProbeError(f"{source}: item {i!r} has no path to take a label from")
        parts = Path(p).parts
        labels.append(parts[-2])
        found = [s for s in parts[:-2] if s.lower() in ("train", "val", "test")]
        splits.append(found[-1].lower() if found else None)
    has_split = any(s is not None for s in splits)
    return labels_from_columns(ids, labels, task="multiclass", split=splits if has_split else None, source=source)
