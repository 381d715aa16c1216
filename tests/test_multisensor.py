"""Multi-file layouts read into one Sample (co-registration, SSL4EO-S12 / BigEarthNet S1+S2 / manifest) and
multi-group models (fusion, dropout, pairwise InfoNCE, bundles)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from spectraclip.bands import BandSet, MissingBandError
from spectraclip.bands import InputGroupError as ModalityError
from spectraclip.bands import check_group as check_modality
from spectraclip.bands import split_by_group as split_bands
from spectraclip.io.layouts import (
    MultiSensorLayoutError,
    bigearthnet_s1s2_items,
    coregister,
    manifest_items,
    pair_by_date,
    resample_to_grid,
    ssl4eo_s12_items,
)
from spectraclip.io.layouts import open_layout as open_multisensor
from spectraclip.io.layouts import read_item as read_multisample
from spectraclip.io.sample import Sample
from spectraclip.io.writers import write_geotiff

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UTM = "EPSG:32633"


def _need(name: str) -> Path:
    root = DATA / name
    if not root.exists():
        pytest.skip(f"real data folder {root} not present")
    return root


def _sample(bands: str, h: int, w: int, transform=None, crs=UTM, fill=None, sid="x") -> Sample:
    bs = BandSet.parse(bands)
    px = np.stack([np.arange(h * w, dtype=np.float32).reshape(h, w) + 1000 * i for i in range(len(bs))])
    if fill is not None:
        px[:] = fill
    return Sample(px, bs, sid, None, crs if transform else None, transform)


def test_modality_names_and_band_grouping():
    assert check_modality("SAR") == "s1" and check_modality("coh") == "coherence"
    with pytest.raises(ModalityError, match="unknown input group \\(modality\\) 'lidar'"):
        check_modality("lidar")
    groups = split_bands("B04,VV,B03,COH_VV")
    assert {m: b.to_list() for m, b in groups.items()} == {"s2": ["B04", "B03"], "s1": ["VV"],
                                                           "coherence": ["COH_VV"]}


def test_coregister_reprojects_onto_the_reference_grid():
    s2 = _sample("B02,B03", 20, 20, (10.0, 0, 1000.0, 0, -10.0, 2000.0))
    # S1 at 20 m covering the same footprint, constant per band -> stays constant after resampling
    s1 = _sample("s1", 10, 10, (20.0, 0, 1000.0, 0, -20.0, 2000.0), fill=-12.0)
    ms = coregister("p1", {"s1": s1, "s2": s2})
    assert list(ms.meta["modalities"]) == ["s2", "s1"] and ms.shape == (4, 20, 20) and ms.meta["grid"] == "s2"
    assert ms.bands.to_list() == ["B02", "B03", "VV", "VH"] and ms.transform == s2.transform
    np.testing.assert_allclose(ms.select("s1").pixels, -12.0)
    np.testing.assert_array_equal(ms.select("B02,B03").pixels, s2.pixels)  # the reference is untouched
    # a source shifted by 5 pixels east leaves 5 columns uncovered: filled with the band mean, reported
    shifted = _sample("s1", 20, 20, (10.0, 0, 1050.0, 0, -10.0, 2000.0))
    out, filled = resample_to_grid(shifted, (20, 20), UTM, s2.transform)
    assert filled == pytest.approx(5 / 20)
    np.testing.assert_allclose(out.pixels[0, :, 5:], shifted.pixels[0, :, :15])
    # without georeferencing: plain resize
    plain = _sample("s1", 10, 10, None, fill=3.0)
    out, filled = resample_to_grid(plain, (20, 20))
    assert out.pixels.shape == (2, 20, 20) and filled == 0.0
    np.testing.assert_allclose(out.pixels, 3.0)


def test_pair_by_date_is_one_to_one_nearest():
    a = [(date(2020, 6, 4), "a1"), (date(2020, 8, 23), "a2"), (date(2020, 12, 1), "a3")]
    b = [(date(2020, 6, 7), "b1"), (date(2020, 9, 3), "b2")]
    assert pair_by_date(a, b) == [("a1", "b1", 3), ("a2", "b2", 11), ("a3", None, None)]
    assert pair_by_date(a, b, max_days=5) == [("a1", "b1", 3), ("a2", None, None), (None, "b2", None),
                                              ("a3", None, None)]


def test_ssl4eo_s12_real_pairs():
    root = _need("ssl4eo-s12-mini")
    items = ssl4eo_s12_items(root)
    assert [it.id for it in items] == ["0000200_20200604", "0000200_20200823"]
    assert items[0].meta["day_gap"] == 3 and items[1].meta["day_gap"] == 11
    assert items[1].paths["s1"].name.startswith("S1A_IW_GRDH_1SDV_20200903")
    ms = read_multisample(items[0])
    assert list(ms.meta["modalities"]) == ["s2", "s1"] and ms.shape[1:] == (264, 264)
    assert len(split_bands(ms.bands)["s2"]) == 13 and split_bands(ms.bands)["s1"].to_list() == ["VV", "VH"]
    assert ms.select("s1").pixels.max() < 10 and ms.select("s2-l1c").pixels.mean() > 100  # dB vs reflectance
    l2a = ssl4eo_s12_items(root, s2="s2a")
    assert read_multisample(l2a[1], modalities=["s2"]).bands == BandSet.parse("s2-l2a")
    assert list(read_multisample(l2a[0], modalities=["s1"]).meta["modalities"]) == ["s1"]


def test_bigearthnet_s1s2_real_pairs():
    root = _need("bigearthnet-mini")
    items = bigearthnet_s1s2_items(root)
    assert len(items) == 6 and all(set(it.paths) == {"s1", "s2"} for it in items)
    first = next(it for it in items if it.id == "S2A_MSIL2A_20170613T101031_87_48")
    assert first.meta["s1_patch"] == "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    assert "Non-irrigated arable land" in first.meta["labels"]
    ds = open_multisensor(root)
    ms = ds[0]
    assert list(ms.meta["modalities"]) == ["s2", "s1"] and ms.shape[1:] == (120, 120)
    assert ms.meta["filled_fraction"] == {}
    assert ms.meta["labels"] == ds.items[0].meta["labels"]


def test_bigearthnet_pairing_has_one_owner(tmp_path):
    """The labelled dataset and the multi-file layout pair S2 with S1 through the same `bigearthnet_pairs`."""
    from fixtures_datasets import BEN_PATCHES, make_bigearthnet_v1

    from spectraclip.data.bigearthnet import BigEarthNet
    from spectraclip.io.layouts import bigearthnet_pairs, bigearthnet_s1_patches

    s2 = make_bigearthnet_v1(tmp_path)
    orphan = tmp_path / "BigEarthNet-S1" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_9_9"  # names no S2 patch
    orphan.mkdir()
    (orphan / f"{orphan.name}_labels_metadata.json").write_text(json.dumps({"labels": ["Pastures"]}))
    pairs = bigearthnet_pairs(tmp_path / "BigEarthNet-S1")
    assert set(pairs) == set(BEN_PATCHES) and all(p.name.startswith("S1") for p in pairs.values())
    assert bigearthnet_s1_patches(tmp_path)[orphan.name].s2_name is None
    ds = BigEarthNet(s2, include_s1=True)
    assert ds.s1_dirs == pairs  # every S2 patch, including the one dropped for having no 19-class label
    items = {it.id: it for it in bigearthnet_s1s2_items(tmp_path)}
    assert {k: it.paths["s1"] for k, it in items.items() if "s2" in it.paths} == pairs
    assert set(items[orphan.name].paths) == {"s1"}
    with pytest.raises(MultiSensorLayoutError, match="nowhere"):
        bigearthnet_pairs(tmp_path / "nowhere")


def test_bigearthnet_real_pairs_agree():
    root = _need("bigearthnet-mini")
    from spectraclip.data.bigearthnet import BigEarthNet
    from spectraclip.io.layouts import bigearthnet_pairs

    pairs = bigearthnet_pairs(root / "BigEarthNet-S1-Example")
    assert len(pairs) == 6
    assert pairs["S2A_MSIL2A_20170613T101031_87_48"].name == "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    assert BigEarthNet(root / "BigEarthNet-S2-Example", include_s1=True).s1_dirs == pairs
    assert {it.id: it.paths["s1"] for it in bigearthnet_s1s2_items(root)} == pairs


def test_manifest_jsonl_and_csv(tmp_path):
    t10 = (10.0, 0, 500.0, 0, -10.0, 900.0)
    t20 = (20.0, 0, 500.0, 0, -20.0, 900.0)
    rng = np.random.default_rng(0)
    write_geotiff(tmp_path / "a_s2.tif", rng.random((3, 8, 8), dtype=np.float32), crs=UTM, transform=t10,
                  band_names=["B04", "B03", "B02"])
    write_geotiff(tmp_path / "a_s1.tif", rng.random((2, 4, 4), dtype=np.float32) - 15, crs=UTM, transform=t20,
                  band_names=["VV", "VH"])
    write_geotiff(tmp_path / "a_coh.tif", rng.random((1, 4, 4), dtype=np.float32), crs=UTM, transform=t20,
                  band_names=["COH_VV"])
    rows = [{"id": "a", "s2": "a_s2.tif", "s1": "a_s1.tif", "coherence": "a_coh.tif", "labels": ["x"]},
            {"id": "b", "s1": str(tmp_path / "a_s1.tif"), "bands": {"s1": "VV,VH"}, "split": "test"}]
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = open_multisensor(man)
    a, b = ds[0], ds[1]
    assert list(a.meta["modalities"]) == ["s2", "s1", "coherence"] and a.shape == (6, 8, 8)
    assert a.meta["modalities"]["coherence"] == ["COH_VV"] and a.meta["labels"] == ["x"]
    assert list(b.meta["modalities"]) == ["s1"] and b.shape == (2, 4, 4) and b.meta["split"] == "test"
    # CSV with per-modality band specs; S2 read without file descriptions needs the spec
    csv = tmp_path / "m.csv"
    csv.write_text("id,s2,s2_bands,s1\nc,a_s2.tif,\"B04,B03,B02\",\n")
    items = manifest_items(csv)
    assert items[0].paths == {"s2": tmp_path / "a_s2.tif"} and items[0].bands["s2"] == "B04,B03,B02"
    # a file given for the wrong modality is an error naming the bands
    wrong = tmp_path / "w.jsonl"
    wrong.write_text(json.dumps({"id": "w", "s1": "a_s2.tif"}) + "\n")
    with pytest.raises(ModalityError, match="do not belong to modality 's1'"):
        open_multisensor(wrong)[0]
    with pytest.raises(MultiSensorLayoutError, match="names no modality"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"id": "z"}) + "\n")
        manifest_items(bad)
    with pytest.raises(MultiSensorLayoutError, match="not a multi-sensor layout"):
        open_multisensor(tmp_path)


# ---------------------------------------------------------------------------- multi-group models
def _model(modality_dropout=0.0, channel_dropout=0.0, seed=0):
    import torch

    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(seed)
    cfg = tiny_group_config({"s2": "rgb", "s1": "s1", "coherence": "coherence"}, modality_dropout=modality_dropout,
                            channel_dropout=channel_dropout)
    return SpectralCLIP.from_config(cfg).eval()


def _ms(sid="p", mods=("s2", "s1", "coherence"), seed=0):
    """One Sample holding any mix of sensors (a band's group comes from the catalog)."""
    rng = np.random.default_rng(seed)
    specs = {"s2": ("rgb", 1500, 500), "s1": ("s1", -12, 3), "coherence": ("coherence", 0.5, 0.2)}
    parts, names = [], []
    for m in mods:
        bands, mu, sd = specs[m]
        bs = BandSet.parse(bands)
        parts.append((mu + sd * rng.standard_normal((len(bs), 16, 16))).astype(np.float32))
        names += bs.names
    return Sample(np.concatenate(parts), BandSet(tuple(names)), sid)


def _embed(model, sample):
    import torch

    p = model.prepare(sample)
    with torch.inference_mode():
        vec = model.encode_image({g: t[None] for g, t in p.x.items()})[0]
    return vec, list(p.x), p.filled


def test_model_inference_with_each_subset_and_the_fusion_rule():
    import itertools

    import torch
    import torch.nn.functional as F

    model = _model()
    full = _ms()
    x = model.preprocess(full)
    with torch.inference_mode():
        single = {m: model.encode_group(m, x[m][None])[0] for m in x}
    for r in (1, 2, 3):
        for subset in itertools.combinations(("s2", "s1", "coherence"), r):
            keep = [b for b in full.bands if split_bands([b]).popitem()[0] in subset]
            vec, used, filled = _embed(model, full.select(keep))
            assert used == list(subset) and filled == []
            expect = F.normalize(torch.stack([single[m] for m in subset]).mean(0), dim=-1)
            torch.testing.assert_close(vec, expect, atol=1e-5, rtol=1e-5)
            assert abs(float(vec.norm()) - 1) < 1e-5
    # a missing band is filled with its mean (the model declares `fill`) and reported
    _, used, filled = _embed(model, full.select("B04,B03,VV"))
    assert used == ["s2", "s1"] and filled == ["B02", "VH"]
    # with the policy set to error, the same sample is an error naming the bands
    model.set_input_options(missing_bands="error")
    with pytest.raises(MissingBandError, match="B02"):
        model.prepare(full.select("B04,B03,VV"))
    # bands no group of the model takes are ignored; a sample with none of its groups is an error naming them
    with pytest.raises(MissingBandError, match="none of the model's input groups"):
        _model().prepare(Sample(np.zeros((1, 16, 16), np.float32), BandSet.parse("B08"), "q"))


def test_modality_and_channel_dropout_at_training():
    import torch

    from spectraclip.models.inputs import drop_batch

    model = _model(modality_dropout=0.5, channel_dropout=0.5)
    b = 64
    x = {m: torch.ones(b, len(model.config.group(m).bands), 32, 32) for m in model.groups}
    present = {m: torch.ones(b, dtype=torch.bool) for m in model.groups}
    present["coherence"][:16] = False  # some samples lack coherence to begin with
    g = torch.Generator().manual_seed(0)
    pres, xs = drop_batch(x, present, model.config.modality_dropout, model.config.channel_dropout, g)
    kept = torch.stack([pres[m] for m in model.groups], 1)
    assert (kept.sum(1) >= 1).all()  # never drops everything
    assert kept.sum() < sum(int(p.sum()) for p in present.values())  # but does drop
    assert not pres["coherence"][:16].any()  # never resurrects an absent modality
    for t in xs.values():
        per_sample = (t[:, :, 0, 0] != 0).sum(1)
        assert (per_sample >= 1).all()
        if t.shape[1] > 1:
            assert (per_sample < t.shape[1]).any()  # some bands were zeroed
    # the model drops only when asked; the trainer drops per item in its data instead
    model.train()
    emb, pres_t, fused = model.encode_groups(x, present, dropout=True, generator=torch.Generator().manual_seed(1))
    assert sum(int(p.sum()) for p in pres_t.values()) < sum(int(p.sum()) for p in present.values())
    assert (emb["s1"][~pres_t["s1"]] == 0).all()
    _, pres_e, _ = model.encode_groups(x, present)
    assert all(torch.equal(pres_e[m], present[m]) for m in present)


def test_per_item_dropout_is_seeded_and_keeps_one_group_and_band():
    import torch

    from spectraclip.models.inputs import drop_inputs

    x = {"s2": torch.ones(3, 4, 4), "s1": torch.ones(2, 4, 4), "coherence": torch.ones(1, 4, 4)}
    outs = [drop_inputs(x, 0.7, 0.7, torch.Generator().manual_seed(s)) for s in range(50)]
    assert all(len(o) >= 1 for o in outs) and any(len(o) < 3 for o in outs)
    assert all((t[:, 0, 0] != 0).sum() >= 1 for o in outs for t in o.values())
    again = drop_inputs(x, 0.7, 0.7, torch.Generator().manual_seed(3))
    assert again.keys() == outs[3].keys() and all(torch.equal(again[g], outs[3][g]) for g in again)


def test_pairwise_infonce_equals_open_clip_per_pair():
    import torch
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss

    from spectraclip.train.objective import Features, Objective, masked_infonce

    torch.manual_seed(0)
    emb = {m: F.normalize(torch.randn(6, 8), dim=-1) for m in ("s2", "s1", "coherence")}
    present = {"s2": torch.ones(6, dtype=torch.bool), "s1": torch.tensor([1, 1, 1, 0, 0, 1], dtype=torch.bool),
               "coherence": torch.tensor([1, 0, 0, 0, 0, 0], dtype=torch.bool)}
    scale = torch.tensor(10.0)
    both = present["s1"]
    expect = ClipLoss()(emb["s2"][both], emb["s1"][both], scale)
    torch.testing.assert_close(masked_infonce(emb["s2"], emb["s1"], both, scale), expect)
    loss, logs = Objective(ClipLoss())(Features(emb, present, emb["s2"], None, None, scale))
    assert set(logs) == {"s2-s1", "loss"}  # pairs with < 2 shared samples are skipped
    torch.testing.assert_close(loss, expect)


def test_few_training_steps_on_real_pairs_and_embeddings_table(tmp_path):
    import torch

    ssl, ben = _need("ssl4eo-s12-mini"), _need("bigearthnet-mini")
    from spectraclip.data.stats import compute_stats
    from spectraclip.embeddings import read_embeddings
    from spectraclip.inference import embed_to_table
    from spectraclip.models.checkpoints import load_bundle, save_bundle
    from spectraclip.models.inputs import collate_inputs
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP
    from spectraclip.train.config import recipe_from_dict
    from spectraclip.train.distributed import DistInfo
    from spectraclip.train.loop import make_loss
    from spectraclip.train.objective import Objective, forward_features

    torch.manual_seed(0)
    stats = compute_stats([ssl, ben], progress=False)
    model = SpectralCLIP.from_config(tiny_group_config({"s2": "s2-l1c", "s1": "s1"}, stats=stats,
                                                       modality_dropout=0.2))
    model.set_input_options(allow_resize=True)  # a 32-pixel test model on 120-264 pixel patches
    samples = list(open_multisensor(ssl)) + list(open_multisensor(ben))
    x, present = collate_inputs([model.prepare(s) for s in samples], model.groups)
    assert x["s2"].shape == (8, 13, 32, 32) and present["s1"].all()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    before = model.patch_embeds["s1"].weight.detach().clone()
    objective = Objective(make_loss(recipe_from_dict({}).loss, DistInfo()))
    losses = []
    for _ in range(4):
        loss, logs = objective(forward_features(model, {"x": x, "present": present}))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not torch.equal(before, model.patch_embeds["s1"].weight)
    # inference with S2 only, S1 only, both, and bands removed, through the one encode path; the table
    # records the groups each embedding used and the bands that were filled
    base = samples[2]
    s2_bands = list(split_bands(base.bands)["s2"].names)  # BigEarthNet is L2A: no B10
    variants = [base.select(list(base.bands)), base.select(s2_bands), base.select("s1"),
                base.select("B04,B03,B02,B08,VV")]
    for n, v in enumerate(variants):
        v.id = f"{base.id}#{n}"
    model.eval()
    embed_to_table(model, variants, tmp_path / "emb.parquet", progress=False)
    table = read_embeddings(tmp_path / "emb.parquet")
    assert table.columns["groups"] == ["s2,s1", "s2", "s1", "s2,s1"]
    filled = table.columns["filled_bands"][3].split(",")
    assert filled[:2] == ["B01", "B05"] and "VH" in filled
    assert table.columns["filled_bands"][:3] == ["B10", "B10", ""]  # the L1C model fills B10; S1 has all
    np.testing.assert_allclose(np.linalg.norm(table.vectors, axis=1), 1, atol=1e-5)
    back = load_bundle(save_bundle(model, tmp_path / "bundle")).set_input_options(allow_resize=True)
    np.testing.assert_allclose(_embed(back, variants[0])[0].numpy(), table.vectors[0], atol=1e-6)


def test_bundle_round_trip_through_the_standard_loaders(tmp_path):
    import torch

    from spectraclip.models.checkpoints import CheckpointError, load_bundle, save_bundle
    from spectraclip.models.loading import load_model
    from spectraclip.models.spectral_clip import SpectralCLIP

    model = _model()
    d = save_bundle(model, tmp_path / "b", provenance={"note": "test"})
    assert sorted(p.name for p in d.iterdir()) == ["model.safetensors", "spectraclip.json"]
    cfg = json.loads((d / "spectraclip.json").read_text())
    assert cfg["format_version"] == 2 and cfg["provenance"]["note"] == "test"
    assert cfg["inputs"][0]["bands"] == ["B04", "B03", "B02"] and len(cfg["inputs"][0]["std"]) == 3
    assert cfg["missing_bands"] == "fill"
    sample = _ms()
    ref = _embed(model, sample)[0]
    for back in (load_model(checkpoint=d), load_model(str(d)), load_bundle(d)):
        assert isinstance(back, SpectralCLIP) and not back.training and back.config.multi
        assert back.config == model.config or back.config.groups == model.config.groups
        for k, v in model.state_dict().items():
            assert torch.equal(v, back.state_dict()[k]), k
        torch.testing.assert_close(_embed(back, sample)[0], ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="several input groups"):
        load_model(checkpoint=d, bands="rgb")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing"):
        save_bundle(model, tmp_path / "junk")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(checkpoint=d)


def test_format_1_bundles_still_load_with_the_same_embeddings():
    """Bundles written by spectraclip before input groups (kept in tests/data/bundles_v1)."""
    import torch

    from spectraclip.models.loading import load_model

    root = Path(__file__).parent / "data" / "bundles_v1"
    ref = np.load(root / "reference.npz")
    single = load_model(checkpoint=root / "single")
    assert not single.config.multi and single.config.missing_bands == "error"
    assert single.groups == ["s2"] and single.config.bands == ["B02", "B03", "B04", "B08"]
    multi = load_model(checkpoint=root / "multisensor")
    assert multi.groups == ["s2", "s1"] and multi.config.missing_bands == "fill"
    with torch.inference_mode():
        # to float32 rounding, as below: the references were written on another CPU (AMD), whose kernels round
        # differently from this one's (Intel) by ~1e-7
        np.testing.assert_allclose(single.encode_image(torch.from_numpy(ref["single_x"])).numpy(),
                                   ref["single_emb"], atol=1e-6)
        both = multi.encode_image({"s2": torch.from_numpy(ref["ms_s2"]), "s1": torch.from_numpy(ref["ms_s1"])})
        s2only = multi.encode_image({"s2": torch.from_numpy(ref["ms_s2"])})
    np.testing.assert_allclose(both.numpy(), ref["ms_emb"], atol=1e-6)
    np.testing.assert_allclose(s2only.numpy(), ref["ms_s2only_emb"], atol=1e-6)
