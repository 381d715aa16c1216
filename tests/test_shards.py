"""WebDataset shards: writer round-trip (float16/int16), skipped rows, streaming reader splitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_train import write_toy_set

from spectraclip.bands import MissingBandError
from spectraclip.data.shards import ShardDataset, expand_shard_urls, write_shards


def test_write_and_read_roundtrip(tmp_path):
    m = write_toy_set(tmp_path / "d", n=10)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows.append({"id": "gone", "path": "missing.npy", "bands": "msclip", "captions": ["x"]})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = write_shards(m, tmp_path / "s", dtype="int16", maxcount=4, bands="B04,B03,B02", progress=False)
    assert res.n_samples == 10 and len(res.shards) == 3 and len(res.skipped) == 1
    assert expand_shard_urls(tmp_path / "s") == res.shards
    ds = ShardDataset(tmp_path / "s", shuffle=0)
    items = list(ds)
    assert sorted(it["id"] for it in items) == [f"img{i:03d}" for i in range(10)]
    orig = np.load(tmp_path / "d" / "img003.npy")[[2, 1, 0]]
    got = next(it for it in items if it["id"] == "img003")["pixels"].numpy()
    assert np.allclose(got, np.rint(orig), atol=0.5)
    ds.check_bands("rgb")
    with pytest.raises(MissingBandError, match="B08"):
        ds.check_bands("s2-10m")


def test_float16_and_worker_split(tmp_path):
    import torch

    m = write_toy_set(tmp_path / "d", n=8)
    write_shards(m, tmp_path / "s", maxcount=2, progress=False)
    ds = ShardDataset(tmp_path / "s", shuffle=4, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    ids = [it["id"] for it in loader]
    assert sorted(ids) == [f"img{i:03d}" for i in range(8)]  # each shard read once across workers
    ds.set_epoch(1)
    assert len(list(ds)) == 8
