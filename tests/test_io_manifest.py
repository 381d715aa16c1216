"""Manifest rows from JSONL/NDJSON/JSON, CSV, TSV and Parquet; errors naming file and line; the caption
fields of the one caption-manifest schema."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spectraclip.errors import SpectraclipError
from spectraclip.io.manifest import (
    ManifestError,
    MissingCaptionFieldError,
    read_manifest_rows,
    read_numbered_rows,
    require_caption_field,
    row_captions,
    row_image,
)

ROWS = [{"id": "a", "path": "a.tif", "caption": "a lake"}, {"id": "b", "path": "b.tif", "caption": "a road"}]


def _write_all(tmp_path) -> dict[str, object]:
    jsonl = "".join(json.dumps(r) + "\n" for r in ROWS)
    (tmp_path / "m.jsonl").write_text(jsonl)
    (tmp_path / "m.ndjson").write_text("\n" + jsonl)  # a blank line is no row
    (tmp_path / "m.json").write_text(json.dumps(ROWS))
    (tmp_path / "m.csv").write_text("id,path,caption\na,a.tif,a lake\nb,b.tif,a road\n")
    (tmp_path / "m.tsv").write_text("id\tpath\tcaption\na\ta.tif\ta lake\nb\tb.tif\ta road\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "m.parquet")
    return {s: tmp_path / f"m.{s}" for s in ("jsonl", "ndjson", "json", "csv", "tsv", "parquet")}


def test_every_format_reads_the_same_rows(tmp_path):
    for suffix, path in _write_all(tmp_path).items():
        assert read_manifest_rows(path) == ROWS, suffix
    assert [n for n, _ in read_numbered_rows(tmp_path / "m.ndjson")] == [2, 3]  # file lines, for messages
    assert [n for n, _ in read_numbered_rows(tmp_path / "m.csv")] == [2, 3]
    assert [n for n, _ in read_numbered_rows(tmp_path / "m.parquet")] == [1, 2]


def test_empty_csv_cells_are_missing_values(tmp_path):
    (tmp_path / "m.csv").write_text("id,s2,s1\nx,s2/x.tif,\n")
    assert read_manifest_rows(tmp_path / "m.csv") == [{"id": "x", "s2": "s2/x.tif", "s1": None}]


def test_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n\n{"id": "b", oops}\n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:3: not valid JSON"):
        read_manifest_rows(bad)
    bad.write_text('{"id": "a"}\n["not", "an", "object"]\n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2: expected one JSON object per line, got list"):
        read_manifest_rows(bad)
    (tmp_path / "wide.csv").write_text("id,path\na,a.tif\nb,b.tif,extra\n")
    with pytest.raises(ManifestError, match=r"wide\.csv:3: more cells than the 2 header columns"):
        read_manifest_rows(tmp_path / "wide.csv")
    (tmp_path / "m.txt").write_text("id\n")
    with pytest.raises(ManifestError, match=r"m\.txt: a manifest must be .*\.parquet"):
        read_manifest_rows(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match=r"gone\.jsonl: manifest not found"):
        read_manifest_rows(tmp_path / "gone.jsonl")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ManifestError, match=r"junk\.parquet: not a readable Parquet manifest"):
        read_manifest_rows(tmp_path / "junk.parquet")
    # one base class for the CLI, and ValueError as before
    assert issubclass(ManifestError, SpectraclipError) and issubclass(MissingCaptionFieldError, ValueError)


def test_interrupted_last_line_only_when_allowed(tmp_path):
    m = tmp_path / "job.jsonl"
    m.write_text('{"id": "a", "captions": ["x"]}\n{"id": "b", "capt')
    with pytest.raises(ManifestError, match=r"job\.jsonl:2"):
        read_manifest_rows(m)
    assert read_manifest_rows(m, allow_partial_tail=True) == [{"id": "a", "captions": ["x"]}]
    m.write_text('{"id": "a", "capt\n{"id": "b"}\n')  # a bad line in the middle is never a partial tail
    with pytest.raises(ManifestError, match=r"job\.jsonl:1"):
        read_manifest_rows(m, allow_partial_tail=True)


def test_caption_fields_of_the_schema():
    assert row_captions({"captions": ["  one ", "", None, "two"]}) == ["one", "two"]
    assert row_captions({"caption": "a single caption"}) == ["a single caption"]
    assert row_captions({"captions": '["from", "a csv cell"]'}) == ["from", "a csv cell"]
    assert row_captions({"captions": "[not json"}) == ["[not json"]
    assert row_captions({"captions": [], "caption": "ignored: captions is the field"}) == []
    assert row_captions({"text": "not a caption field"}) == []
    assert row_image({"paths": {"B02": "b2.tif"}}) == {"B02": "b2.tif"} and row_image({"s2": "x.tif"}) is None


def test_no_caption_field_names_file_expected_and_found_fields(tmp_path):
    require_caption_field([{"id": "a", "captions": []}, {"id": "b"}], tmp_path / "m.jsonl")  # a field, even empty
    with pytest.raises(MissingCaptionFieldError) as err:
        require_caption_field([{"id": "a", "path": "a.tif", "text": "x"}, {"id": "b", "txt": "y"}], "m.jsonl")
    msg = str(err.value)
    assert msg.startswith("m.jsonl: no row has a caption field") and "'captions'" in msg and "'caption'" in msg
    assert "the 2 row(s) have 'id', 'path', 'text', 'txt'" in msg
    with pytest.raises(MissingCaptionFieldError, match="m.jsonl: the manifest has no rows"):
        require_caption_field([], "m.jsonl")
