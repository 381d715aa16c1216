"""Caption manifests: JSONL/Parquet, per-epoch caption sampling, skipped rows counted, band checks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fixtures_train import MSCLIP, write_toy_set

from spectraclip.bands import MissingBandError
from spectraclip.data.augment import SpectralAugment
from spectraclip.data.captions import (
    CaptionDataset,
    MissingCaptionFieldError,
    collate_pairs,
    parse_manifest,
    read_manifest_rows,
)


def test_skips_missing_failed_and_captionless_rows(tmp_path):
    m = write_toy_set(tmp_path, n=6)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows.append({"id": "gone", "path": "nope.npy", "bands": "msclip", "captions": ["x"]})
    rows.append({"id": "failed", "path": rows[0]["path"], "captions": ["x"], "status": "failed"})
    rows.append({"id": "empty", "path": rows[0]["path"], "captions": []})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = CaptionDataset(m)
    assert len(ds) == 6
    reasons = {s.where.split("id ")[-1].rstrip(")"): s.reason for s in ds.skipped}
    assert set(reasons) == {"gone", "failed", "empty"}
    assert "not found" in reasons["gone"]


def test_unreadable_image_is_replaced_and_counted(tmp_path):
    m = write_toy_set(tmp_path, n=4)
    (tmp_path / "img001.npy").write_bytes(b"not an array")
    ds = CaptionDataset(m)
    item = ds[1]
    assert item["n_bad"] == 1 and item["id"] == "img002"
    batch = collate_pairs([ds[0], ds[1]])
    assert batch["n_bad"] == 1 and batch["pixels"].shape == (2, 10, 32, 32)


def test_parquet_and_split_and_caption_sampling(tmp_path):
    m = write_toy_set(tmp_path, n=8, val=2)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    assert len(read_manifest_rows(tmp_path / "m.parquet")) == 10
    recs, _ = parse_manifest(tmp_path / "m.parquet", split="val")
    assert len(recs) == 2
    ds = CaptionDataset(tmp_path / "m.parquet", split="train", seed=3)
    drawn = {ds.caption(0, epoch=e) for e in range(20)}
    assert drawn == set(ds.records[0].captions)  # several captions per image, drawn per epoch
    assert ds.caption(0, epoch=5) == ds.caption(0, epoch=5)


def test_single_caption_field_rows_are_read(tmp_path):
    """The issue's manifest of `{"id", "caption"}` rows (plus the image path): `caption` is a schema field."""
    m = write_toy_set(tmp_path, n=3)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    m.write_text("".join(json.dumps({"id": r["id"], "path": r["path"], "caption": r["captions"][0]}) + "\n"
                         for r in rows))
    recs, skipped = parse_manifest(m)
    assert [r.captions for r in recs] == [[r["captions"][0]] for r in rows] and not skipped
    # the same rows as CSV: one training row per line, captions read from the `caption` column
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("id,path,bands,caption\n" + "".join(
        f"{r['id']},{r['path']},\"{r['bands']}\",{r['captions'][0]}\n" for r in rows))
    ds = CaptionDataset(csv_path)
    assert len(ds) == 3 and ds[0]["caption"] == rows[0]["captions"][0] and ds[0]["pixels"].shape[0] == 10


def test_rows_without_a_caption_field_are_an_error_naming_file_and_fields(tmp_path):
    m = write_toy_set(tmp_path, n=2)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    m.write_text("".join(json.dumps({"id": r["id"], "path": r["path"], "text": "x"}) + "\n" for r in rows))
    with pytest.raises(MissingCaptionFieldError) as err:
        CaptionDataset(m)
    msg = str(err.value)
    assert str(m) in msg and "'captions'" in msg and "'caption'" in msg and "'text'" in msg
    with pytest.raises(ValueError):  # callers that caught ValueError still do
        parse_manifest(m)


def test_check_bands_names_missing_band(tmp_path):
    m = write_toy_set(tmp_path, n=2)
    ds = CaptionDataset(m)
    ds.check_bands("msclip")
    with pytest.raises(MissingBandError, match="B01"):
        ds.check_bands(["B01"] + MSCLIP)


def test_per_band_paths(tmp_path):
    for b, s in (("B02", 16), ("B11", 8)):
        np.save(tmp_path / f"{b}.npy", np.full((1, s, s), 7.0, np.float32))
    (tmp_path / "m.jsonl").write_text(json.dumps(
        {"id": "a", "path": {"B02": "B02.npy", "B11": "B11.npy"}, "captions": ["c"]}) + "\n")
    ds = CaptionDataset(tmp_path / "m.jsonl")
    item = ds[0]
    assert item["pixels"].shape == (2, 16, 16)
    assert torch.allclose(item["pixels"], torch.full((2, 16, 16), 7.0))


def test_augment_same_on_all_bands():
    x = torch.arange(16.0).reshape(1, 4, 4).repeat(5, 1, 1) * torch.arange(1.0, 6.0)[:, None, None]
    aug = SpectralAugment(crop_scale=None)
    for s in range(8):
        y = aug(x, torch.Generator().manual_seed(s))
        assert torch.allclose(y / torch.arange(1.0, 6.0)[:, None, None], y[:1].expand(5, 4, 4))
        assert torch.equal(y, aug(x, torch.Generator().manual_seed(s)))
    crop = SpectralAugment(hflip=False, vflip=False, rot90=False, crop_scale=(0.3, 0.6))(x, torch.Generator())
    assert crop.shape == x.shape
