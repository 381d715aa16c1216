"""Reading manifests: one row per item as a dict, from JSONL / NDJSON, CSV, TSV or Parquet."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from spectraclip.io.sample import RasterError


class ManifestFormatError(RasterError):
    """A manifest that cannot be parsed (names the file and line)."""


def read_manifest_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL / CSV / TSV / Parquet manifest as dicts."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ManifestFormatError(path, f"line {n} is not JSON ({exc.msg})") from exc
        return rows
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            return [dict(r) for r in csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")]
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ManifestFormatError(path, "manifest must be .jsonl, .csv, .tsv or .parquet")
