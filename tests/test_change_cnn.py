"""The few-shot change network: it learns a synthetic change pattern (and not a distractor that changes on both
sides), tiled prediction equals one whole-scene pass, training is deterministic for a seed, bad label sets are
clear errors, save/load round-trips, and `change_scene` / the CLI map with it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from fixtures_change import SQUARE, labelled_root, make_pair, write_mask

from spectraclip.change.cnn import (
    CnnConfig,
    PairArrays,
    SiamDiffNet,
    fit_cnn_probe,
    predict_arrays,
    train_net,
)
from spectraclip.change.grid import ChangeInputError

TINY = CnnConfig(widths=(4, 8), steps=80, batch=4, crop=32, lr=1e-2, inner_folds=2, indices=False)


def synthetic_pair(seed: int, size: int = 64, bands: int = 3, squares: int = 3) -> PairArrays:
    """Noise on both dates; `squares` bright squares appear in AFTER (change); a 'phenology' field that dims
    every band a little in AFTER is not labelled change."""
    rng = np.random.default_rng(seed)
    za = rng.normal(0, 1, (bands, size, size)).astype(np.float32)
    zb = za + rng.normal(0, 0.3, za.shape).astype(np.float32)
    change = np.zeros((size, size), bool)
    for _ in range(squares):
        r, c = rng.integers(0, size - 10, 2)
        zb[:, r:r + 8, c:c + 8] += 4.0
        change[r:r + 8, c:c + 8] = True
    r, c = rng.integers(0, size - 20, 2)
    zb[:, r:r + 16, c:c + 16] -= 0.5 * (1 + rng.random())
    return PairArrays(f"s{seed}", za, zb, change, np.ones((size, size), bool), [f"B{i}" for i in range(bands)])


def _f1(prob: np.ndarray, y: np.ndarray, t: float) -> float:
    p = prob > t
    tp = (p & y).sum()
    return float(2 * tp / max(2 * tp + (p & ~y).sum() + (~p & y).sum(), 1))


def test_network_learns_a_synthetic_change_pattern_and_reduces_its_loss():
    torch.set_num_threads(1)
    train = [synthetic_pair(s) for s in range(3)]
    net, losses = train_net(train, TINY)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    test = synthetic_pair(99)
    assert _f1(predict_arrays(net, test.za, test.zb), test.change, 0.5) > 0.7


def test_tiled_prediction_equals_a_whole_scene_pass():
    torch.manual_seed(0)
    net = SiamDiffNet(3, (4, 8, 16)).eval()
    rng = np.random.default_rng(0)
    za, zb = (rng.normal(0, 1, (3, 100, 90)).astype(np.float32) for _ in range(2))
    whole = predict_arrays(net, za, zb, tile=4096, margin=0)  # one tile: the whole scene
    tiled = predict_arrays(net, za, zb, tile=24, margin=40)  # 24 px tiles (on the pooling grid), 40 px context
    assert tiled.shape == (100, 90) and np.abs(tiled - whole).max() < 1e-5
    cut = predict_arrays(net, za, zb, tile=24, margin=0)  # without context the tile edges differ: margin matters
    assert np.abs(cut - whole).max() > 1e-3


def test_test_time_augmentation_is_tiled_like_a_whole_pass_and_commutes_with_flips():
    torch.manual_seed(0)
    net = SiamDiffNet(3, (4, 8, 16)).eval()
    rng = np.random.default_rng(1)
    za, zb = (rng.normal(0, 1, (3, 100, 90)).astype(np.float32) for _ in range(2))
    whole = predict_arrays(net, za, zb, tile=4096, margin=0, tta=True)
    tiled = predict_arrays(net, za, zb, tile=24, margin=40, tta=True)
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.abs(whole - predict_arrays(net, za, zb)).max() > 1e-3  # an average of 8 passes, not one
    # on the pooling grid (96 x 88) the averaged map of a mirrored scene is the mirrored map
    a, b = za[:, :96, :88], zb[:, :96, :88]
    mirrored = predict_arrays(net, np.ascontiguousarray(a[..., ::-1]), np.ascontiguousarray(b[..., ::-1]), tta=True)
    assert np.abs(mirrored[..., ::-1] - predict_arrays(net, a, b, tta=True)).max() < 1e-5


def test_training_is_deterministic_for_a_seed():
    torch.set_num_threads(1)
    train = [synthetic_pair(s) for s in range(2)]
    cfg = replace(TINY, steps=15)
    (n1, l1), (n2, l2) = train_net(train, cfg), train_net(train, cfg)
    assert l1 == l2
    assert all(torch.equal(a, b) for a, b in zip(n1.state_dict().values(), n2.state_dict().values(), strict=True))
    _, l3 = train_net(train, replace(cfg, seed=1))
    assert l3 != l1


def test_radiometric_jitter_changes_each_dates_channels_but_not_the_crop_or_its_labels():
    from spectraclip.change.cnn import crop_sampler

    pairs = [synthetic_pair(s) for s in range(2)]
    plain = crop_sampler(pairs, TINY, np.random.default_rng(5))
    jittered = crop_sampler(pairs, replace(TINY, jitter=0.2), np.random.default_rng(5))
    for _ in range(5):
        (a0, b0, y0, k0), (a1, b1, y1, k1) = plain(), jittered()
        assert np.array_equal(y0, y1) and np.array_equal(k0, k1)  # same crop, same labels
        for z0, z1 in ((a0, a1), (b0, b1)):
            # each channel is an affine map of the plain one (a gain and an offset), never the identity
            for c in range(z0.shape[0]):
                g, o = np.polyfit(z0[c].ravel(), z1[c].ravel(), 1)
                assert np.allclose(z1[c], g * z0[c] + o, atol=1e-4) and (abs(g - 1) + abs(o)) > 1e-4
        # the two dates get different jitter (a haze on one date only)
        ga = np.polyfit(a0[0].ravel(), a1[0].ravel(), 1)[0]
        gb = np.polyfit(b0[0].ravel(), b1[0].ravel(), 1)[0]
        assert abs(ga - gb) > 1e-4


def test_fit_threshold_from_other_scenes_notes_and_bad_label_sets(tmp_path):
    from spectraclip.change.probe_io import load_probe, save_probe

    torch.set_num_threads(1)
    empty = synthetic_pair(5, squares=0)
    empty.change[:] = False
    probe = fit_cnn_probe([synthetic_pair(0), synthetic_pair(1), empty], replace(TINY, steps=60))
    assert 0 < probe.threshold < 1 and probe.inner_f1 is not None and any("s5" in n for n in probe.notes)
    assert probe.describe()["kind"] == "cnn" and probe.scenes == ["s0", "s1", "s5"]
    loaded = load_probe(save_probe(probe, tmp_path / "p.pt"))
    t = synthetic_pair(7)
    assert np.array_equal(loaded.predict_arrays(t.za, t.zb), probe.predict_arrays(t.za, t.zb))
    assert loaded.fingerprint() == probe.fingerprint() and loaded.threshold == probe.threshold
    with pytest.raises(ChangeInputError, match="no change pixel at all"):
        fit_cnn_probe([empty], TINY)
    with pytest.raises(ChangeInputError, match="multiple of"):
        train_net([synthetic_pair(0)], replace(TINY, crop=31))
    with pytest.raises(ChangeInputError, match="different bands"):
        fit_cnn_probe([synthetic_pair(0), synthetic_pair(1, bands=4)], TINY)
    (tmp_path / "junk.pt").write_bytes(b"not a probe")
    with pytest.raises(ChangeInputError, match="not a saved change probe"):
        load_probe(tmp_path / "junk.pt")


def test_the_probe_is_an_ensemble_of_the_final_and_inner_fold_networks_and_saves_as_one(tmp_path):
    from spectraclip.change.cnn import ChangeEnsemble
    from spectraclip.change.probe_io import load_probe, save_probe

    torch.set_num_threads(1)
    pairs = [synthetic_pair(s) for s in range(3)]
    cfg = replace(TINY, steps=20)
    single = fit_cnn_probe(pairs, replace(cfg, fold_ensemble=False))
    assert isinstance(single.net, SiamDiffNet)
    probe = fit_cnn_probe(pairs, cfg)  # the default: final network + one per inner fold
    assert isinstance(probe.net, ChangeEnsemble) and len(probe.net.members) == 1 + cfg.inner_folds
    assert probe.threshold == single.threshold  # the threshold comes from the inner folds either way
    t = synthetic_pair(7)
    members = [predict_arrays(m, t.za, t.zb) for m in probe.net.members]
    assert np.array_equal(members[0], single.predict_arrays(t.za, t.zb))  # the final network comes first
    mean = np.mean(members, 0)
    assert np.abs(probe.predict_arrays(t.za, t.zb) - mean).max() < 1e-5
    assert np.abs(predict_arrays(probe.net, t.za, t.zb, tile=32, margin=40) - mean).max() < 1e-5  # tiles too
    loaded = load_probe(save_probe(probe, tmp_path / "e.pt"))
    assert isinstance(loaded.net, ChangeEnsemble) and loaded.fingerprint() == probe.fingerprint()
    assert np.array_equal(loaded.predict_arrays(t.za, t.zb), probe.predict_arrays(t.za, t.zb))
    seeded = fit_cnn_probe(pairs, replace(cfg, seeds=2))  # every network trained with two seeds
    assert len(seeded.net.members) == 2 * (1 + cfg.inner_folds)
    assert np.array_equal(predict_arrays(seeded.net.members[0], t.za, t.zb), members[0])


def _labelled_root(tmp_path: Path) -> Path:
    return labelled_root(tmp_path / "train", {"a": (8, 40, 8, 40), "b": (50, 90, 30, 70)})


@pytest.mark.slow  # trains the change network on a scene (~6 s): `make test` only
def test_change_scene_maps_with_the_change_network(tmp_path):
    from spectraclip.change.labels import find_pairs
    from spectraclip.change.scene import change_scene, labelled_arrays
    from spectraclip.models.loading import load_model

    torch.set_num_threads(1)
    root = _labelled_root(tmp_path)
    model = load_model("tiny-test", bands="s2-l1c")
    with pytest.raises(ChangeInputError, match="input channels"):  # arrays read without the index channels
        first = find_pairs(root)[0]
        fit_cnn_probe([labelled_arrays(model, first.before, first.after, first.labels, indices=False)],
                      replace(TINY, indices=True))
    arrays = [labelled_arrays(model, p.before, p.after, p.labels, name=p.name, indices=True, cloud_mask="none")
              for p in find_pairs(root)]
    assert arrays[0].za.shape == (13 + 3, 96, 96) and arrays[0].change.sum() == 32 * 32
    probe = fit_cnn_probe(arrays, replace(TINY, steps=60, crop=64, widths=(4, 8, 16), indices=True))
    before, after = make_pair(tmp_path / "target")
    res = change_scene(model, before, after, tmp_path / "p.tif", probe=probe, progress=False, quicklook=False,
                       cloud_mask="none")  # synthetic L1C scenes: s2cloudless would call parts of them cloud
    with rasterio.open(res.path) as ds:
        _, flag, prob = ds.read()
        assert ds.descriptions[2] == "probe_probability"
    r0, r1, c0, c1 = SQUARE
    assert flag[r0 + 4:r1 - 4, c0 + 4:c1 - 4].mean() > 0.8 and flag[:30].mean() < 0.1
    assert np.array_equal(flag == 1, prob > probe.threshold) and res.threshold_rule.startswith("probe")
    # the map's probability is the network's whole-scene prediction, read back window by window
    with_mask = labelled_arrays(model, before, after, write_mask(tmp_path / "target", "town"), indices=True,
                                cloud_mask="none")
    assert np.abs(prob - probe.predict_arrays(with_mask.za, with_mask.zb)).max() < 1e-5


@pytest.mark.slow
def test_cli_change_trains_saves_and_reloads_the_change_network(tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    torch.set_num_threads(1)
    root = _labelled_root(tmp_path)
    before, after = make_pair(tmp_path / "target")
    runner = CliRunner()
    tiny = ["-m", "tiny-test", "--model-bands", "s2-l1c", "--device", "cpu", "--precision", "fp32"]
    saved = tmp_path / "probe.pt"
    r = runner.invoke(app, ["change", str(before), str(after), *tiny, "-o", str(tmp_path / "c.tif"), "--train-labels",
                            str(root), "--probe", "cnn", "--probe-steps", "10", "--probe-seeds", "2", "--save-probe",
                            str(saved)])
    assert r.exit_code == 0, r.output
    assert "probe (cnn)" in r.output and saved.is_file()
    from spectraclip.change.probe_io import load_probe

    ensemble = load_probe(saved).net  # 2 seeds x (final network + 2 inner folds of the 2 training pairs)
    assert len(ensemble.members) == 6 and load_probe(saved).config.seeds == 2
    r = runner.invoke(app, ["change", str(before), str(after), *tiny, "-o", str(tmp_path / "d.tif"), "--load-probe",
                            str(saved)])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "c.tif") as a, rasterio.open(tmp_path / "d.tif") as b:
        assert np.array_equal(a.read(3), b.read(3), equal_nan=True)
    r = runner.invoke(app, ["change", str(before), str(after), *tiny, "-o", str(tmp_path / "e.tif"), "--probe", "svm",
                            "--train-labels", str(root)])
    assert r.exit_code == 2 and "--probe 'svm'" in r.output


def test_threshold_and_share_cap_are_chosen_on_other_scenes_and_cap_a_flooded_scene():
    from spectraclip.change.cnn import CnnProbe, choose_threshold

    rng = np.random.default_rng(0)
    y1 = rng.random(20_000) < 0.01
    good = np.where(y1, 0.9, 0.1) + rng.normal(0, 0.05, y1.size)  # changes ranked first
    y2 = rng.random(20_000) < 0.01
    y2[:8000] = False
    flooded = np.where(y2, 0.99, 0.1) + rng.normal(0, 0.005, y2.size)
    flooded[:8000] = 0.9 + rng.normal(0, 0.02, 8000)  # a season change: 40 % of the scene as likely as a change
    t, f1, cap = choose_threshold([good, flooded], [y1, y2])
    assert cap is None and 0 < t < 1
    t2, f1_capped, cap2 = choose_threshold([good, flooded], [y1, y2], (0.01, 0.02, 0.05))
    assert cap2 in (0.01, 0.02) and f1_capped > f1 + 0.2
    probe = CnnProbe(SiamDiffNet(3, (4, 8)), t2, [], [], TINY, 0, max_share=cap2)
    assert probe.scene_threshold(flooded) == pytest.approx(np.quantile(flooded, 1 - cap2))
    assert (flooded > probe.scene_threshold(flooded)).mean() <= cap2 + 1e-3
    assert replace(probe, max_share=None).scene_threshold(flooded) == t2


def test_the_pixel_probe_saves_and_loads_too_but_only_as_a_trusted_pickle(tmp_path):
    from spectraclip.change.probe import PixelSamples, fit_change_probe
    from spectraclip.change.probe_io import load_probe, save_probe

    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        x = rng.normal(0, 1, (400, 3))
        y = x[:, 0] > 1.0
        samples.append(PixelSamples(f"p{i}", x, y, np.ones(400)))
    probe = fit_change_probe(samples, ["a", "b", "c"], max_iter=5)
    path = save_probe(probe, tmp_path / "gbm.pt")
    again = load_probe(path)
    assert again.kind == "gbm" and again.threshold == probe.threshold
    assert np.array_equal(again.predict_proba(samples[0].x), probe.predict_proba(samples[0].x))
    with pytest.raises(ChangeInputError, match="pickle"):
        load_probe(path, trust_pickle=False)
    with pytest.raises(ChangeInputError, match="no such probe"):
        load_probe(tmp_path / "missing.pt")
