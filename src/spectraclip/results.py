"""Writing result tables a person opens: CSV or Parquet chosen by the file extension, atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_path


class OutputFormatError(SpectraclipError, ValueError):
    """An output file whose suffix names no format we write (names the file)."""


def write_table(path: str | Path, columns: Mapping[str, Sequence[Any]]) -> Path:
    """Write columns to `.csv` or `.parquet` (by extension) via a temporary file and rename."""
    path = Path(path)
    table = pa.table({k: list(v) for k, v in columns.items()})
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OutputFormatError(f"{path}: output must end in .csv or .parquet")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
    return path
