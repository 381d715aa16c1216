"""SSL4EO-S12 v1.1 zarr zips + Llama3 captions: reading, cloud handling, workers, DDP sharding and a resumed
training that equals an uninterrupted one (fixtures in the published formats: tests/fixtures_archives.py)."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
import yaml
from fixtures_archives import (
    CLOUDY,
    L1C_BANDS,
    L2A_BANDS,
    SAMPLES,
    file_samples,
    make_captions,
    make_ssl4eo_v11,
)
from fixtures_train import run_training, tiny_recipe

from spectraclip.data.ssl4eo_v11 import Ssl4eoV11Dataset, Ssl4eoV11Item, load_captions, open_group, split_qa


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl4eo")
    split = make_ssl4eo_v11(root / "data", "train", files=2)
    caps = make_captions(root / "captions", "train", files=2)
    return split, caps


def test_fixture_has_the_published_layout(archive):
    split, _ = archive
    g = open_group(split / "S2L2A" / "ssl4eos12_train_seasonal_data_000001.zarr.zip")
    assert g["bands"].shape == (2, 4, 12, 16, 16) and g["bands"].dtype == np.int16
    assert g["bands"].attrs["_ARRAY_DIMENSIONS"] == ["sample", "time", "band", "y", "x"]
    assert [str(b) for b in g["band"][:]] == L2A_BANDS
    assert g["cloud_mask"].shape == (2, 4, 16, 16)
    g1 = open_group(split / "S2L1C" / "ssl4eos12_train_seasonal_data_000001.zarr.zip")
    assert [str(b) for b in g1["band"][:]] == L1C_BANDS


def test_item_reads_one_season_with_georef(archive):
    split, _ = archive
    f = split / "S2L1C" / "ssl4eos12_train_seasonal_data_000001.zarr.zip"
    s = Ssl4eoV11Item(str(f), 1, 2, "x").read()
    assert s.pixels.shape == (13, 16, 16) and s.crs == "EPSG:32751"
    assert s.meta["timestamp"].startswith("2021-05-25") and s.meta["cloud_fraction"] == 0.0
    assert s.transform[0] == 10.0 and s.transform[4] == -10.0


def test_captions_and_question_answer_pairs(archive):
    _, caps = archive
    rows = load_captions(caps, "train")
    assert len(rows) == 16  # 2 files × 2 locations × 4 seasons
    row = rows[("ssl4eos12_train_seasonal_data_000001.zarr.zip", int(SAMPLES[0]), 0)]
    assert row.caption.startswith("The image is") and len(row.qa) == 3
    assert row.qa[0][0].endswith("?") and row.qa[0][1].startswith("A river")
    assert split_qa("no question") == ("", "no question")
    # the CSV per zarr file and the split's parquet give the same rows
    assert load_captions(caps / "train", "train").keys() == rows.keys()


def test_one_season_per_location_clouds_skipped_or_flagged(archive):
    split, caps = archive
    ds = Ssl4eoV11Dataset(split, captions=caps, max_cloud=0.2)
    assert len(ds) == 4
    seen = {ds.choose_season(0, e)[0] for e in range(40)}
    assert 1 not in seen and seen == {0, 2, 3}  # season 1 of location 0 is fully cloudy
    item = ds[0]
    assert item["pixels"].shape == (12, 16, 16) and item["caption"] and len(item["texts"]) == 3
    # every season cloudy: skip passes to the next location, flag uses the least cloudy season
    strict = Ssl4eoV11Dataset(split, captions=caps, max_cloud=-1.0)
    with pytest.raises(Exception, match="no usable location"):
        strict[0]
    flag = Ssl4eoV11Dataset(split, captions=caps, max_cloud=-1.0, cloud_policy="flag")
    assert flag[1]["cloudy"] is True
    assert (1, 3) in CLOUDY


def test_workers_and_ranks_read_disjoint_locations(archive):
    from spectraclip.data.captions import collate_pairs
    from spectraclip.train.data import GlobalBatchSampler

    split, caps = archive
    ds = Ssl4eoV11Dataset(split, captions=caps)
    ids = []
    for rank in range(2):
        sampler = GlobalBatchSampler(len(ds), 4, rank=rank, world_size=2, seed=0)
        dl = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=1, collate_fn=collate_pairs)
        ids += [i.split("_")[0] for b in dl for i in b["ids"]]
    assert sorted(ids) == sorted(SAMPLES + file_samples(1))


def test_texts_choose_what_the_loss_sees_per_item_and_epoch(archive):
    """data.texts: caption | qa | both picks the text each location contributes (collated as `captions`, the
    loss's input), drawn from (seed, epoch, location): the same again for the same epoch, and the pairs kept."""
    from spectraclip.data.captions import collate_pairs

    split, caps = archive

    def seen(texts, epoch, seed=0):
        ds = Ssl4eoV11Dataset(split, captions=caps, max_cloud=0.6, texts=texts, seed=seed)
        ds.set_epoch(epoch)
        return collate_pairs([ds[i] for i in range(len(ds))])

    cap, qa = seen("caption", 0), seen("qa", 0)
    assert all(c.startswith("The image is") for c in cap["captions"]) and set(cap["text_sources"]) == {"caption"}
    assert all(c.startswith("What is") for c in qa["captions"]) and set(qa["text_sources"]) == {"qa"}
    assert all(len(t) == 3 and c in t for c, t in zip(qa["captions"], qa["texts"], strict=True))
    assert cap["ids"] == qa["ids"] and cap["texts"] == qa["texts"]  # same seasons; only the loss's text differs
    both = [seen("both", e) for e in range(6)]
    assert {s for b in both for s in b["text_sources"]} == {"caption", "qa"}
    assert seen("both", 3)["captions"] == both[3]["captions"]  # a resumed epoch sees the same texts
    assert len({tuple(b["captions"]) for b in both}) > 1  # and epochs differ
    with pytest.raises(ValueError, match="texts"):
        Ssl4eoV11Dataset(split, captions=caps, texts="answers")


def test_texts_other_than_caption_need_the_v11_layout(tmp_path):
    from spectraclip.train.config import RecipeError, load_recipe

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"data": {"train": "x.jsonl", "texts": "qa"}}))
    with pytest.raises(RecipeError, match="ssl4eo-v1.1"):
        load_recipe(p)


def _recipe(tmp, split, caps, out, texts="caption", **run):
    r = tiny_recipe(split, out, data={"layout": "ssl4eo-v1.1", "captions": str(caps), "batch_size": 2,
                                      "max_cloud": 0.6, "augment": True, "texts": texts},
                    model={"bands": "msclip"}, run={"max_steps": 5, "checkpoint_every": 1, "epochs": 5, **run})
    p = tmp / f"{out.name}.yaml"
    p.write_text(yaml.safe_dump(r))
    return p




@pytest.mark.slow
@pytest.mark.parametrize("texts", ["caption", "both"])
def test_training_from_zarr_resumed_equals_uninterrupted(tmp_path, archive, texts):
    """2 steps per epoch (4 locations, batch 2): killed after step 3, the run resumes in the middle of epoch 2
    (with texts: both, the caption or pair each location feeds the loss is drawn again identically)."""
    from safetensors.torch import load_file

    from spectraclip.train.config import load_recipe
    from spectraclip.train.loop import train

    split, caps = archive
    full = _recipe(tmp_path, split, caps, tmp_path / "full", texts)
    killed = _recipe(tmp_path, split, caps, tmp_path / "killed", texts)
    torch.set_num_threads(1)
    res = train(load_recipe(full))
    assert res.steps == 5
    k = run_training(killed, kill_after=3)
    assert k.returncode == -signal.SIGKILL, k.stderr[-2000:]
    r = run_training(killed, resume=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_file(tmp_path / "full" / "model" / "model.safetensors"), \
        load_file(tmp_path / "killed" / "model" / "model.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key
