"""Change detection: the change map of two synthetic dates (a new bright square), its COG / PNG / GeoParquet,
text-guided columns, a resumed run equal to an uninterrupted one, co-registration (another grid, partial
overlap, no overlap), band sets, date order, label masks and the few-shot probe; the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from fixtures_change import ALL, SQUARE, labelled_root, make_date, make_pair, write_mask
from fixtures_scenes import ORIGIN

from spectraclip.apps.scene_job import FAULT_STOP_ENV, JobInterrupted
from spectraclip.change.features import feature_names
from spectraclip.change.grid import ChangeInputError
from spectraclip.change.labels import find_pairs, read_change_mask
from spectraclip.change.probe import fit_change_probe
from spectraclip.change.scene import ChangeRule, combine, otsu_threshold, robust_stats
from spectraclip.change.scene import change_scene as _change_scene
from spectraclip.change.scene import labelled_samples as _labelled_samples
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classes import ClassSpec

CLASSES = [ClassSpec("field", "green fields"), ClassSpec("building", "large bright roofs")]



def change_scene(*args, **kw):
    """`change_scene` with `cloud_mask="none"` unless a test asks for a mask: the synthetic L1C-band pairs have
    B10 and no SCL, so `auto` runs s2cloudless, which calls 30-45 % of their bright flat land cloud; these tests
    test change, not clouds (the cloud tests pass their mask)."""
    kw.setdefault("cloud_mask", "none")
    return _change_scene(*args, **kw)


def labelled_samples(*args, **kw):
    """`labelled_samples` with `cloud_mask="none"` (see `change_scene` above)."""
    kw.setdefault("cloud_mask", "none")
    return _labelled_samples(*args, **kw)


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-test", bands="s2-l1c")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return make_pair(tmp_path_factory.mktemp("change"))


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_otsu_splits_a_bimodal_sample_and_robust_stats_ignore_outliers():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 1, 5000), rng.normal(10, 1, 500)])
    assert 3 < otsu_threshold(v) < 7
    med, scale = robust_stats(np.concatenate([rng.normal(2, 1, 10000), np.full(100, 1e6)]))
    assert abs(med - 2) < 0.1 and 0.9 < scale < 1.1
    raw = np.stack([np.full((1, 2), 1.0), np.full((1, 2), 3.0), np.array([[5.0, 9.0]])])
    stats = {"emb_window": (0.0, 1.0), "emb_token": (1.0, 2.0), "cva": (5.0, 2.0)}
    np.testing.assert_allclose(combine(raw, stats, ChangeRule(0.5)), [[0.5 * 0 + 0.25 * 1 + 0.25 * 1, 0.5 * 2 + 0.5]])
    np.testing.assert_allclose(combine(raw, stats, ChangeRule(0.0)), [[0.0, 2.0]])  # the change vector alone
    skewed = np.concatenate([rng.normal(0, 1, 20000), rng.normal(6, 0.5, 400), rng.normal(12, 0.5, 100)])
    assert ChangeRule(0.0, "otsu2").threshold(skewed) > ChangeRule(0.0, "otsu").threshold(skewed)
    with pytest.raises(ChangeInputError, match="threshold-method"):
        ChangeRule(0.5, "kittler")


def test_change_map_finds_the_new_square_and_writes_cog_png_and_ranked_windows(model, pair, tmp_path):
    before, after = pair
    res = change_scene(model, before, after, tmp_path / "c.tif", classes=CLASSES, queries=["new buildings"],
                       progress=False)
    with rasterio.open(res.path) as ds, rasterio.open(next(before.glob("*_B02.tif"))) as ref:
        assert ds.count == 3 and ds.descriptions == ("change_score", "change", "query_change:new buildings")
        assert ds.crs == ref.crs and ds.transform == ref.transform and ds.shape == ref.shape
    score, flag, _ = _read(res.path)
    r0, r1, c0, c1 = SQUARE
    inside = np.zeros(score.shape, bool)
    inside[r0:r1, c0:c1] = True
    assert np.nanmean(score[inside]) > np.nanmean(score[~inside]) + 2  # robust z-scores: the square stands out
    near = np.zeros(score.shape, bool)  # window-level embedding change spreads over the windows holding it
    near[max(0, r0 - 32):r1 + 32, max(0, c0 - 32):c1 + 32] = True
    assert flag[inside].mean() > 0.9 and flag[~near].mean() < 0.05
    assert res.threshold_rule == "otsu" and res.quicklook.is_file() and res.quicklook.stat().st_size > 10_000
    import geopandas as gpd

    gdf = gpd.read_parquet(res.vector)
    assert list(gdf["rank"]) == list(range(1, len(gdf) + 1)) and gdf["score"].is_monotonic_decreasing
    assert {"from", "to", "from_to", "query_change:new buildings", "changed_share"} <= set(gdf.columns)
    top = gdf.iloc[0]
    assert r0 - 32 < top["row"] < r1 and c0 - 32 < top["col"] < c1  # the best-ranked window holds the square
    assert gdf.crs is not None and not res.notes  # same grid, right order: nothing to say


def test_given_threshold_and_precision_are_used(model, pair, tmp_path):
    before, after = pair
    res = change_scene(model, before, after, tmp_path / "t.tif", threshold=1e9, precision="bf16", vector=None,
                       quicklook=False, progress=False)
    assert res.threshold == 1e9 and res.threshold_rule.startswith("given")
    assert np.nansum(_read(res.path)[1]) == 0 and res.vector is None


def test_resumed_run_equals_uninterrupted_run(model, pair, tmp_path, monkeypatch):
    before, after = pair
    full = change_scene(model, before, after, tmp_path / "full.tif", progress=False, quicklook=False)
    monkeypatch.setenv(FAULT_STOP_ENV, "32")
    with pytest.raises(JobInterrupted):
        change_scene(model, before, after, tmp_path / "part.tif", progress=False, quicklook=False,
                     checkpoint_rows=16)
    monkeypatch.delenv(FAULT_STOP_ENV)
    assert (tmp_path / "part.tif.parts" / "state.npz").is_file()
    resumed = change_scene(model, before, after, tmp_path / "part.tif", progress=False, quicklook=False,
                           checkpoint_rows=16)
    assert resumed.summary.resumed_at_row == 32
    np.testing.assert_array_equal(_read(full.path), _read(resumed.path))
    assert not (tmp_path / "part.tif.parts").exists()
    import geopandas as gpd

    a, b = gpd.read_parquet(full.vector), gpd.read_parquet(resumed.vector)
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))


def test_after_on_another_grid_is_reprojected_and_partial_overlap_is_cut_and_said(model, tmp_path):
    before = make_date(tmp_path / "b", stamp="20200101")
    # AFTER: 20 m-ish pixels (another transform), shifted 300 m east: overlaps BEFORE's eastern 660 m only
    after = make_date(tmp_path / "a", change=True, pixel=12.5, size10=96, stamp="20210101",
                      origin=(ORIGIN[0] + 300.0, ORIGIN[1]))
    res = change_scene(model, before, after, tmp_path / "c.tif", progress=False, quicklook=False, vector=None)
    text = " ".join(res.notes)
    assert "partial overlap" in text and "reprojected" in text
    assert res.grid.offset == (0, 30) and res.grid.reprojected
    with rasterio.open(res.path) as ds:
        assert ds.shape == (96, 66) and ds.transform.c == pytest.approx(ORIGIN[0] + 300.0)
    score = _read(res.path)[0]
    assert np.isfinite(score).mean() > 0.95


def test_scenes_that_do_not_overlap_are_refused(model, tmp_path):
    before = make_date(tmp_path / "b")
    after = make_date(tmp_path / "a", origin=(ORIGIN[0] + 5000.0, ORIGIN[1]))
    with pytest.raises(ChangeInputError, match="do not overlap"):
        change_scene(model, before, after, tmp_path / "c.tif", progress=False)


def test_band_sets_are_matched_by_name_and_a_missing_band_follows_the_policy(model, tmp_path):
    before = make_date(tmp_path / "b")
    after = make_date(tmp_path / "a", change=True, bands=[b for b in ALL if b != "B01"])
    with pytest.raises(ChangeInputError, match=r"B01 \(missing in .*a"):
        change_scene(model, before, after, tmp_path / "c.tif", progress=False)
    try:
        res = change_scene(model.set_input_options(missing_bands="fill"), before, after, tmp_path / "c.tif",
                           progress=False, quicklook=False, vector=None)
    finally:
        model.set_input_options(missing_bands="error")
    assert any("B01" in n and "filled" in n for n in res.notes)
    assert res.grid.bands[0] == "B02" and "B01" not in res.grid.bands


def test_dates_in_the_wrong_order_are_allowed_and_reported(model, tmp_path):
    before = make_date(tmp_path / "b", stamp="20220601")
    after = make_date(tmp_path / "a", change=True, stamp="20190601")
    res = change_scene(model, before, after, tmp_path / "c.tif", progress=False, quicklook=False, vector=None)
    assert any("wrong order" in n and "2019-06-01" in n for n in res.notes)


def test_label_masks_empty_or_of_another_grid_get_clear_errors(tmp_path):
    empty = write_mask(tmp_path, "x", value=0)
    with pytest.raises(ChangeInputError, match="empty change mask"):
        read_change_mask(empty, (96, 96))
    with pytest.raises(ChangeInputError, match="96x96 pixels, but the first date's grid is 80x80"):
        read_change_mask(write_mask(tmp_path, "y"), (80, 80))
    with pytest.raises(ChangeInputError, match="not an OSCD-layout folder"):
        find_pairs(tmp_path / "nowhere")


def test_few_shot_probe_learns_change_from_other_scenes(model, tmp_path):
    root = tmp_path / "train"
    boxes = {"a": (8, 40, 8, 40), "b": (50, 90, 30, 70)}
    for name, box in boxes.items():
        base = root / "images" / name
        make_date(base / "imgs_1")
        make_date(base / "imgs_2", change=True, box=box)
        write_mask(root, name, box=box)
    write_mask(root, "none", value=1)  # a mask without change pixels trains as no-change only
    make_date(root / "images" / "none" / "imgs_1")
    make_date(root / "images" / "none" / "imgs_2")
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["a", "b", "none"]
    model.train()  # the caller's mode: a library call leaves it as it was
    samples = [labelled_samples(model, p.before, p.after, p.labels, name=p.name, stride=32) for p in pairs]
    assert model.training
    model.eval()
    assert samples[0].y.sum() == 32 * 32  # every change pixel, once (windows do not repeat pixels)
    assert samples[0].x.shape[1] == len(feature_names(model.bands.names))
    probe = fit_change_probe(samples, feature_names(model.bands.names), max_iter=30)
    assert any("none" in n for n in probe.notes) and 0 < probe.threshold < 1 and probe.inner_f1 > 0.5
    with pytest.raises(ChangeInputError, match="no change pixel at all"):
        fit_change_probe(samples[2:], feature_names(model.bands.names))
    before, after = make_pair(tmp_path / "target")
    res = change_scene(model, before, after, tmp_path / "p.tif", probe=probe, progress=False, quicklook=False)
    _, flag, prob = _read(res.path)
    r0, r1, c0, c1 = SQUARE
    assert flag[r0 + 4:r1 - 4, c0 + 4:c1 - 4].mean() > 0.8 and flag[:30].mean() < 0.1
    assert res.threshold_rule.startswith("probe") and np.nanmax(prob) <= 1


def test_cli_change_writes_the_map_and_reports_bad_input(pair, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    before, after = pair
    runner = CliRunner()
    out = tmp_path / "cli.tif"
    tiny = ["-m", "tiny-test", "--model-bands", "s2-l1c", "--device", "cpu"]
    r = runner.invoke(app, ["change", str(before), str(after), *tiny, "-o", str(out), "--classes", "field,building",
                            "--query", "new buildings", "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and out.with_suffix(".png").is_file() and out.with_suffix(".windows.parquet").is_file()
    assert "changed windows" in r.output and "otsu" in r.output
    far = make_date(tmp_path / "far", origin=(ORIGIN[0] + 9000.0, ORIGIN[1]))
    r = runner.invoke(app, ["change", str(before), str(far), *tiny, "-o", str(tmp_path / "x.tif")])
    assert r.exit_code == 2 and "do not overlap" in r.output


@pytest.mark.slow
def test_cli_evaluate_oscd_runs_cva_unsupervised_and_leave_one_out_probe(tmp_path):
    import json

    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    root = labelled_root(tmp_path / "oscd", {"east": (8, 40, 50, 90), "west": (50, 90, 8, 40)})
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", "--dataset", "oscd", "--root", str(root), "-m", "tiny-test",
                                 "--model-bands", "s2-l1c", "-o", str(out), "--device", "cpu", "--precision", "fp32",
                                 "--probe-steps", "10"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert set(res["pooled"]) == {"cva-otsu", "change", "change-probe", "change-cnn"}
    assert set(res["per_city"]) == {"east", "west"}
    assert res["per_city"]["east"]["probe"]["scenes"] == ["west"]  # the probe never sees the city it scores
    assert res["per_city"]["east"]["cnn"]["scenes"] == ["west"] and res["settings"]["cnn_config"]["steps"] == 10
    assert (out / "maps" / "east.tif").is_file() and (out / "maps" / "east.gbm.tif").is_file()
    assert res["per_city"]["east"]["change"]["rule"] == res["selected_rules"]["east"]
    assert res["pooled"]["change"]["f1"] > 0.5 and res["pooled"]["cva-otsu"]["f1"] > 0.5
    assert (out / "results.md").is_file() and (out / "quicklooks" / "west.png").is_file()
    curve = res["label_efficiency"]
    assert curve["fractions"] == [0.01, 0.1, 1.0] and len(curve["pooled_f1"]) == 3
    assert curve["labelled_pixels"][0] < curve["labelled_pixels"][2] and curve["pooled_f1"][2] > 0.5


def test_pixel_sampler_stays_bounded_and_keeps_class_totals():
    from spectraclip.change.probe import PixelSampler
    from spectraclip.io.scene import window_grid

    labels = np.zeros((128, 128), bool)
    labels[:16] = True  # 2048 change pixels
    s = PixelSampler(labels, np.ones_like(labels), rate=0.5, max_pixels=1000)
    for w in window_grid(128, 128, 32, 32):
        s(w, np.ones((3, 32, 32), np.float32), np.ones((32, 32), bool))
        assert s.count <= 4 * 1000 + 32 * 32
    got = s.samples("t")
    assert len(got.y) == 1000
    assert got.w[got.y].sum() == pytest.approx(2048, rel=1e-6)  # every change pixel, by weight
    assert got.w[~got.y].sum() == pytest.approx((128 * 128 - 2048), rel=0.05)  # the others, back to their count


def test_a_finished_run_with_kept_raw_raster_reruns_from_scratch(model, pair, tmp_path):
    before, after = pair
    first = change_scene(model, before, after, tmp_path / "k.tif", progress=False, quicklook=False, vector=None,
                         keep_raw=True)
    expected = _read(first.path)
    Path(first.extra["raw"]).unlink()
    again = change_scene(model, before, after, tmp_path / "k.tif", progress=False, quicklook=False, vector=None)
    assert again.summary.encoded == first.summary.encoded > 0 and again.summary.resumed_at_row is None
    np.testing.assert_array_equal(expected, _read(again.path))


def test_a_window_cloudy_after_is_missing_not_compared(model, tmp_path):
    """AFTER has a planted cloud (its SCL marks the top-left window): that window has no change score, is listed
    as missing (status cloud, missing_at after) and counted in the skipped summary; BEFORE's input is never
    compared in its place."""
    import pandas as pd
    from fixtures_scenes import write_band

    before, after = make_pair(tmp_path)
    clear = np.full((48, 48), 4, np.uint8)  # SCL at 20 m: 4 vegetation
    cloudy = clear.copy()
    cloudy[:16, :16] = 9  # the first 32x32 px window at 10 m
    write_band(before / "S2A_MSIL2A_20200101T100000_T33UXP_SCL.tif", clear, 20.0)
    write_band(after / "S2A_MSIL2A_20210101T100000_T33UXP_SCL.tif", cloudy, 20.0)
    res = change_scene(model, before, after, tmp_path / "c.tif", tile=32, stride=32, progress=False,
                       quicklook=False, max_skipped=0.5, precision="fp32", device="cpu", cloud_mask="auto")
    assert res.summary.skipped == {"cloud": 1}
    assert any(m.startswith("AFTER") and "cloud" in m for _, m in res.summary.skipped_windows)
    with rasterio.open(res.path) as ds:
        score = ds.read(1)
    assert np.isnan(score[:32, :32]).all() and np.isfinite(score[40:, 40:]).all()
    t = pd.read_parquet(res.vector)
    miss = t[t.status == "cloud"]
    assert list(miss["window"]) == [0] and list(miss["missing_at"]) == ["after"] and miss["score"].isna().all()
    assert 0 not in set(t[t.status == "ok"]["window"])
