"""Manifest files (JSONL / NDJSON, CSV, TSV, Parquet) read into rows, and the one caption-manifest schema.

Every manifest reader of the package (captioning, training, caption-quality, multi-sensor items,
statistics) reads its file with `read_manifest_rows`; errors name the file and the line (or Parquet row).

The caption-manifest schema, one row per image (written by `spectraclip caption` and the label
captioner, read by training and `caption-quality`):

- `id`: the image's id (unique within a manifest).
- `path`: the image: a raster file, a band folder, or a `{band: file}` mapping of per-band files
  (`paths` is read as an alias). Relative paths resolve against the manifest's folder.
- `s2`, `s1`, `coherence`: multi-sensor rows, instead of `path`: one raster file or band folder per
  modality (empty = missing), with `s2_bands`, `s1_bands`, `coherence_bands` or `bands: {modality: spec}`.
- `bands`: the band order of `path` (a spec such as `s2-l2a` or `B04,B03,B02`, or a list of names);
  absent = read from the file.
- `captions`: a list of caption strings (what every writer writes). `caption`, one string, is read as a
  one-caption list; in CSV/TSV a `captions` cell is a JSON array or a single caption.
- `split`: optional `train` / `val` / `test`; rows without one are training rows.
- `status`: optional `ok` / `failed` (the captioning job's record of an image it could not caption);
  failed rows are skipped.

Any other field (`qa`, `tags`, `label`, `backend`, `model`, `prompt_version`, `attempts`, `error`,
`created`, ...) is metadata that readers carry along. A manifest in which no row has a caption field
(`captions` or `caption`) is not a caption manifest: `require_caption_field` raises
`MissingCaptionFieldError` naming the file, the expected fields and the fields it found.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spectraclip.bands import GROUP_ORDER
from spectraclip.errors import ManifestError

MANIFEST_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq")
CAPTION_FIELDS: tuple[str, ...] = ("captions", "caption")
IMAGE_FIELDS: tuple[str, ...] = ("path", "paths")
MODALITY_FIELDS: tuple[str, ...] = GROUP_ORDER  # per-modality file fields of multi-sensor rows
_PARQUET = (".parquet", ".pq")


class MissingCaptionFieldError(ManifestError):
    """A manifest read as captions whose rows have no caption field; names the file and the fields found."""


def is_manifest(path: str | Path) -> bool:
    """True for an existing file whose suffix is a manifest format (so callers can tell it from a raster)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES


def row_location(path: str | Path, number: int) -> str:
    """Where a row is, for messages: `file:line` for text manifests, `file row N` for Parquet."""
    p = Path(path)
    return f"{p} row {number}" if p.suffix.lower() in _PARQUET else f"{p}:{number}"


def read_numbered_rows(path: str | Path, *, allow_partial_tail: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a manifest with their 1-based line (JSONL, CSV, TSV) or row (Parquet) number, in file order.

    `allow_partial_tail` drops an unparsable last JSONL line without a newline (a writer killed mid-line);
    resumable jobs read their own output that way. Empty CSV/TSV cells are None (a missing value).
    """
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: manifest not found")
    suffix = p.suffix.lower()
    if suffix in _PARQUET:
        return _parquet_rows(p)
    if suffix in (".csv", ".tsv"):
        return _delimited_rows(p, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _json_rows(p, allow_partial_tail)
    raise ManifestError(f"{p}: a manifest must be {', '.join(MANIFEST_SUFFIXES)}; got {suffix or 'no suffix'}")


def read_manifest_rows(path: str | Path, *, allow_partial_tail: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL/NDJSON, CSV, TSV or Parquet manifest as dicts, in file order (see `read_numbered_rows`)."""
    return [row for _, row in read_numbered_rows(path, allow_partial_tail=allow_partial_tail)]


def _parquet_rows(p: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(p).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"{p}: not a readable Parquet manifest ({exc})") from exc
    return list(enumerate(rows, 1))


def _delimited_rows(p: Path, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for raw in reader:
                if None in raw:  # more cells than header columns
                    raise ManifestError(f"{row_location(p, reader.line_num)}: more cells than the "
                                        f"{len(reader.fieldnames or [])} header columns")
                out.append((reader.line_num, {k: (v if v != "" else None) for k, v in raw.items()}))
        except csv.Error as exc:
            kind = "TSV" if delimiter == "\t" else "CSV"
            raise ManifestError(f"{row_location(p, reader.line_num)}: not valid {kind} ({exc})") from exc
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{p}: not UTF-8 text ({exc.reason})") from exc
    return out


def _json_rows(p: Path, allow_partial_tail: bool) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{p}: not UTF-8 text ({exc.reason})") from exc
    if p.suffix.lower() == ".json" and text.lstrip().startswith("["):  # a JSON array of objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{row_location(p, exc.lineno)}: not valid JSON ({exc.msg})") from exc
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise ManifestError(f"{p}: element {n} of the JSON array is not an object")
        return list(enumerate(rows, 1))
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if allow_partial_tail and n == len(lines):  # the last line has no newline: an interrupted write
                break
            raise ManifestError(f"{row_location(p, n)}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ManifestError(f"{row_location(p, n)}: expected one JSON object per line, got "
                                f"{type(row).__name__}")
        out.append((n, row))
    return out


# ------------------------------------------------------------------------------- caption schema
def has_caption_field(row: Mapping[str, Any]) -> bool:
    """True when the row carries a caption field (`captions` or `caption`), even an empty one."""
    return any(row.get(f) is not None for f in CAPTION_FIELDS)


def row_captions(row: Mapping[str, Any]) -> list[str]:
    """The row's captions as a list of non-empty stripped strings: `captions` (list, or in CSV/TSV a JSON
    array or one caption), else `caption` (one string)."""
    raw = row.get("captions")
    if raw is None:
        raw = row.get("caption")
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, list):
                raw = decoded
        if isinstance(raw, str):
            raw = [raw]
    if not isinstance(raw, Iterable) or isinstance(raw, Mapping):
        return []
    return [str(c).strip() for c in raw if c is not None and str(c).strip()]


def require_caption_field(rows: Iterable[Mapping[str, Any]], path: str | Path) -> None:
    """Fail (MissingCaptionFieldError) when no row of the manifest at `path` has a caption field; the
    message names the file, the expected fields and the fields the rows do have."""
    found: dict[str, None] = {}
    n = 0
    for row in rows:
        n += 1
        if has_caption_field(row):
            return
        found.update(dict.fromkeys(map(str, row)))
    if n == 0:
        raise MissingCaptionFieldError(f"{path}: the manifest has no rows (expected one row per image with "
                                       f"'id', 'path' and 'captions')")
    raise MissingCaptionFieldError(
        f"{path}: no row has a caption field: expected 'captions' (a list of strings) or 'caption' (one "
        f"string); the {n} row(s) have {', '.join(repr(f) for f in found) or 'no fields'}")


def row_image(row: Mapping[str, Any]) -> str | dict[str, str] | None:
    """The row's image field: a path string, a `{band: file}` mapping, or None when it has none."""
    for f in IMAGE_FIELDS:
        raw = row.get(f)
        if raw:
            return {str(b): str(v) for b, v in raw.items()} if isinstance(raw, Mapping) else str(raw)
    return None


def resolve_path(base: str | Path, path: str | Path) -> Path:
    """`path` (user home expanded) if absolute, else relative to `base` (the manifest's folder)."""
    q = Path(path).expanduser()
    return q if q.is_absolute() else Path(base) / q


__all__ = [
    "CAPTION_FIELDS",
    "IMAGE_FIELDS",
    "MANIFEST_SUFFIXES",
    "MODALITY_FIELDS",
    "ManifestError",
    "MissingCaptionFieldError",
    "has_caption_field",
    "is_manifest",
    "read_manifest_rows",
    "read_numbered_rows",
    "require_caption_field",
    "resolve_path",
    "row_captions",
    "row_image",
    "row_location",
]
