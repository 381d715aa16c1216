"""Thematic maps: blending without seams, the COG written on the scene's grid, resume after a kill giving the same
file, skipped windows reported, probes, multi-group models, real OSCD city end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from fixtures_scenes import make_multiband, make_scene_folder

from spectraclip.apps.blend import StripBlender, window_weight
from spectraclip.apps.maps import map_scene
from spectraclip.apps.scene_job import FAULT_STOP_ENV, JobInterrupted, ResumeError
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classes import ClassesError, ClassSpec, parse_classes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASSES = [ClassSpec("water", "a lake or a river"), ClassSpec("forest", "a dense forest"),
           ClassSpec("town", "buildings and streets")]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-test", bands="s2-l1c")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_multiband(tmp_path_factory.mktemp("map") / "scene.tif", size=96)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_hann_blend_of_constant_windows_is_seamless():
    """Overlapping windows that agree give exactly their value everywhere (no seams, no edge fall-off)."""
    b = StripBlender(64, 64, 2, 32, "hann")
    out = []
    for r in (0, 16, 32):
        if r:
            out.append(b.pop_until(r)[1])
        for c in (0, 16, 32):
            b.add(r, c, np.array([0.25, 0.75]), np.ones((32, 32), bool))
    out.append(b.pop_until(64)[1])
    full = np.concatenate(out, axis=1)
    assert full.shape == (2, 64, 64)
    np.testing.assert_allclose(full[0], 0.25, rtol=1e-5)
    np.testing.assert_allclose(full[1], 0.75, rtol=1e-5)


def test_hann_weight_falls_to_the_edges_but_never_to_zero_and_uniform_is_a_plain_mean():
    w = window_weight(32, 32, "hann")
    assert w.min() > 0 and w[16, 16] > 10 * w[0, 0]
    b = StripBlender(32, 48, 1, 32, "uniform")
    b.add(0, 0, np.array([1.0]), np.ones((32, 32), bool))
    b.add(0, 16, np.array([0.0]), np.ones((32, 32), bool))
    _, v, _ = b.pop_until(32)
    assert v[0, 0, 20] == pytest.approx(0.5) and v[0, 0, 5] == 1.0 and v[0, 0, 40] == 0.0


def test_map_cog_on_the_scene_grid_with_classes_colours_and_probabilities(model, scene, tmp_path):
    out = tmp_path / "map.tif"
    res = map_scene(model, scene, out, CLASSES, stride=16, vector=tmp_path / "w.parquet", progress=False)
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
        assert ds.count == 4 and ds.dtypes[0] == "uint8"
        assert ds.descriptions == ("class", "p_water", "p_forest", "p_town")
        assert ds.tags()["classes"] == '["water", "forest", "town"]'
        assert ds.colormap(1)[0][:3] != ds.colormap(1)[1][:3]
        assert ds.overviews(1) == [] or ds.is_tiled  # COG layout
        data = ds.read().astype(int)
    assert set(np.unique(data[0])) <= {0, 1, 2}
    np.testing.assert_array_equal(data[0], data[1:].argmax(0))  # class = argmax of the probabilities
    assert np.abs(data[1:].sum(0) - 255).max() <= 3  # uint8 x 255, rounding only
    assert res.summary.encoded == res.summary.windows == 25 and res.summary.skipped == {}
    assert res.quicklook.exists() and res.quicklook.stat().st_size > 1000
    import geopandas as gpd

    gdf = gpd.read_parquet(res.vector)
    assert len(gdf) == res.summary.windows and {"p_water", "p_forest", "p_town", "class"} <= set(gdf.columns)
    assert gdf.crs.to_epsg() == 32633


def test_float32_probabilities(model, scene, tmp_path):
    res = map_scene(model, scene, tmp_path / "f.tif", CLASSES, probabilities="float32", progress=False,
                    quicklook=False)
    data = _read(res.path)
    assert data.dtype == np.float32
    np.testing.assert_allclose(data[1:].sum(0), 1.0, atol=1e-4)


def test_resumed_run_equals_an_uninterrupted_one(model, tmp_path, monkeypatch):
    scene = make_multiband(tmp_path / "big.tif", size=160)
    full = map_scene(model, scene, tmp_path / "full.tif", CLASSES, progress=False, quicklook=False)
    out = tmp_path / "resumed.tif"
    monkeypatch.setenv(FAULT_STOP_ENV, "48")
    with pytest.raises(JobInterrupted):  # as if killed after the first checkpoint
        map_scene(model, scene, out, CLASSES, progress=False, quicklook=False, checkpoint_rows=32)
    monkeypatch.delenv(FAULT_STOP_ENV)
    assert (tmp_path / "resumed.tif.parts" / "state.npz").exists() and not out.exists()
    res = map_scene(model, scene, out, CLASSES, progress=False, quicklook=False, checkpoint_rows=32)
    assert res.summary.resumed_at_row and res.summary.resumed_at_row >= 48
    np.testing.assert_array_equal(_read(out), _read(full.path))
    assert not (tmp_path / "resumed.tif.parts").exists()


def test_loader_workers_give_the_same_map_as_reading_in_process(model, scene, tmp_path):
    """Windows read by DataLoader worker processes (the reader and preprocessor are pickled) change nothing."""
    a = map_scene(model, scene, tmp_path / "w0.tif", CLASSES, progress=False, quicklook=False, num_workers=0)
    b = map_scene(model, scene, tmp_path / "w1.tif", CLASSES, progress=False, quicklook=False, num_workers=1,
                  batch_size=4)
    assert b.summary.encoded == a.summary.encoded
    np.testing.assert_allclose(_read(b.path).astype(int), _read(a.path).astype(int), atol=1)


def test_resume_state_of_another_job_is_refused(model, tmp_path, monkeypatch):
    scene = make_multiband(tmp_path / "s.tif", size=128)
    out = tmp_path / "m.tif"
    monkeypatch.setenv(FAULT_STOP_ENV, "16")
    with pytest.raises(JobInterrupted):
        map_scene(model, scene, out, CLASSES, progress=False, quicklook=False, checkpoint_rows=16)
    monkeypatch.delenv(FAULT_STOP_ENV)
    with pytest.raises(ResumeError, match=r"m\.tif\.parts.*classes"):
        map_scene(model, scene, out, CLASSES[:2], progress=False, quicklook=False)


def test_bad_windows_are_skipped_counted_and_the_rest_is_written(model, tmp_path):
    arr = np.stack([np.full((96, 96), 1200 + 50 * i, np.float32) for i in range(13)])
    arr[:, :32, :32] = np.nan  # an all-nodata corner
    arr[3, 70, 70] = np.nan
    from fixtures_scenes import RES

    path = tmp_path / "nan.tif"
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=13, dtype="float32", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:
        dst.write(arr)
        for i, b in enumerate(RES, start=1):
            dst.set_band_description(i, b)
    res = map_scene(model, path, tmp_path / "m.tif", CLASSES, nodata="error", stride=32, progress=False,
                    quicklook=False, cloud_mask="none")  # a flat bright scene: s2cloudless would call it cloud
    assert res.summary.skipped == {"nodata": 1, "error": 1} and res.summary.encoded == 7
    assert any("NaN or nodata pixels in band(s) B04=1" in m for _, m in res.summary.skipped_windows)
    with rasterio.open(res.path) as ds:
        cls, mask = ds.read(1), ds.read_masks(1)
    assert (cls[:32, :32] == 255).all() and (mask[:32, :32] == 0).all()  # nothing speaks for the corner
    assert (cls[:32, 32:64] != 255).all()


def test_probe_replaces_the_prompts_and_another_models_probe_is_refused(model, scene, tmp_path):
    from spectraclip.apps.probe_head import fit_probe
    from spectraclip.errors import FingerprintMismatchError

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(40, model.embed_dim))
    probe = fit_probe(model, vecs / np.linalg.norm(vecs, axis=1, keepdims=True), ["a", "b"] * 20)
    p = probe.save(tmp_path / "probe.json")
    res = map_scene(model, scene, tmp_path / "p.tif", None, probe=p, progress=False, quicklook=False)
    assert res.classes == ["a", "b"]
    other = load_model("tiny-test", bands="rgb")
    with pytest.raises(FingerprintMismatchError, match="probe.json"):
        map_scene(other, scene, tmp_path / "q.tif", None, probe=p, progress=False)


def test_multigroup_model_maps_a_scene_of_its_optical_bands(tmp_path):
    import torch

    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    m = SpectralCLIP.from_config(tiny_group_config({"s2": "rgb", "s1": "s1"})).eval()
    folder = make_scene_folder(tmp_path, "rgb", bands=("B02", "B03", "B04"), size10=64)
    res = map_scene(m, folder, tmp_path / "mg.tif", CLASSES, progress=False, quicklook=False)
    assert res.summary.encoded == res.summary.windows
    res = map_scene(m, folder, tmp_path / "mgd.tif", CLASSES, dense=True, progress=False, quicklook=False)
    assert res.summary.encoded == res.summary.windows


def test_classes_option_forms(tmp_path):
    assert [c.prompt for c in parse_classes("SeaLake,water=open water")] == ["lake or sea", "open water"]
    assert len(parse_classes("eurosat")) == 10
    f = tmp_path / "c.txt"
    f.write_text("# comment\nForest\nroads=a highway\n")
    assert [c.name for c in parse_classes(file=f)] == ["Forest", "roads"]
    with pytest.raises(ClassesError, match="repeats"):
        parse_classes("a,a")


@pytest.mark.skipif(not (DATA / "oscd-mini").exists(), reason="shared data not present")
def test_oscd_city_mapped_end_to_end(model, tmp_path):
    folder = DATA / "oscd-mini" / "images" / "bercy" / "imgs_1"
    res = map_scene(model, folder, tmp_path / "bercy.tif", parse_classes("eurosat"), stride=32, progress=False)
    with rasterio.open(res.path) as ds, rasterio.open(next(folder.glob("*_B02.tif"))) as b02:
        assert ds.crs == b02.crs and ds.transform == b02.transform and ds.shape == b02.shape
        assert (ds.read_masks(1) == 255).all()
    assert res.quicklook.exists()


def test_demo_scene_is_shipped_and_mapped(model, tmp_path):
    from spectraclip.apps.demo_scene import demo_scene_path, map_demo_scene
    from spectraclip.io.scene import open_scene

    folder = demo_scene_path(cache=tmp_path / "cache")
    sc = open_scene(folder)
    assert (sc.height, sc.width) == (395, 360) and len(sc.bands) == 13
    assert not list(folder.parent.rglob("*-cm.tif"))  # the OSCD change labels are never shipped
    got = map_demo_scene(model, tmp_path / "demo", stride=32)
    assert Path(got["quicklook"]).exists() and abs(sum(got["shares"].values()) - 1) < 1e-6
    assert "Copernicus Sentinel-2" in got["attribution"]


def test_cli_map_and_heatmap_write_outputs_and_name_bad_input(scene, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["map", str(scene), "-m", "tiny-test", "--classes", "water,forest", "--stride", "32",
                            "-o", str(tmp_path / "m.tif")])
    assert r.exit_code == 0, r.output
    assert "9 windows: 9 encoded" in " ".join(r.output.split()) and (tmp_path / "m.png").exists()
    r = runner.invoke(app, ["heatmap", str(scene), "-m", "tiny-test", "-q", "water", "--stride", "32",
                            "--precision", "bf16", "-o", str(tmp_path / "h.tif")])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "h.tif") as ds:
        assert ds.descriptions == ("water",) and '"precision": "bf16"' in ds.tags()["spectraclip_heatmap"]
    r = runner.invoke(app, ["map", str(scene), "-m", "tiny-test", "--classes", "a,b", "--precision", "fp8",
                            "-o", str(tmp_path / "p.tif")])
    assert r.exit_code == 2 and "fp8" in r.output
    r = runner.invoke(app, ["map", str(tmp_path / "nope.tif"), "-m", "tiny-test", "--classes", "a,b", "-o",
                            str(tmp_path / "x.tif")])
    assert r.exit_code == 2 and "nope.tif" in "".join(r.output.split())


L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")  # no B10


def _cli():
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    return CliRunner(), app


@pytest.mark.parametrize("command", ["map", "heatmap"])
def test_l1c_model_on_an_l2a_scene_fails_naming_the_band_and_fill_maps_it(command, tmp_path):
    """Every window lacks B10: no empty map with exit 0 (D2), but exit 2 naming the band and the fix, and
    `--missing-bands fill` (which map and heatmap now take) maps it."""
    scene = make_multiband(tmp_path / "l2a.tif", bands=L2A_BANDS, size=64)
    runner, app = _cli()
    what = ["--classes", "water,forest"] if command == "map" else ["-q", "water"]
    base = [command, str(scene), "-m", "tiny-test", "--model-bands", "s2-l1c", *what, "--device", "cpu",
            "--precision", "fp32", "-o", str(tmp_path / "out.tif")]
    r = runner.invoke(app, base)
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "B10" in text and "--missing-bands fill" in text and "no window was encoded" in text
    assert not (tmp_path / "out.tif").exists()  # nothing that looks like a good map
    assert (tmp_path / "out.tif.partial.tif").exists() and (tmp_path / "out.tif.parts").is_dir()
    r = runner.invoke(app, [*base, "--missing-bands", "fill"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.tif").exists() and not (tmp_path / "out.tif.parts").exists()


def test_more_skipped_windows_than_max_skipped_fail_and_a_larger_share_resumes(model, tmp_path):
    from spectraclip.apps.runner import SkippedWindowsError

    arr = np.stack([np.full((96, 96), 1200 + 50 * i, np.float32) for i in range(13)])
    arr[:, :48, :48] = np.nan  # windows (0,0), (0,32)... at stride 32: 1 all-nodata, 3 partly nodata
    from fixtures_scenes import RES

    path = tmp_path / "nan.tif"
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=13, dtype="float32", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:
        dst.write(arr)
        for i, b in enumerate(RES, start=1):
            dst.set_band_description(i, b)
    out = tmp_path / "m.tif"
    kw = dict(nodata="error", stride=32, progress=False, quicklook=False, cloud_mask="none")  # nodata, not clouds
    with pytest.raises(SkippedWindowsError, match=r"--max-skipped 0\.3.*4 of 9 windows skipped.*--nodata fill"):
        map_scene(model, path, out, CLASSES, max_skipped=0.3, **kw)
    assert not out.exists() and (tmp_path / "m.tif.partial.tif").exists()
    res = map_scene(model, path, out, CLASSES, max_skipped=0.5, **kw)  # same job: resumes at its end
    assert res.summary.encoded == 5 and out.exists()


def test_map_scene_leaves_the_callers_model_as_it_was(tmp_path):
    """Windows larger than twice the model input are resized by the run's own preprocessor: the model's input
    options, device and train/eval mode are the caller's before and after."""
    m = load_model("tiny-test", bands="s2-l1c")
    m.train()
    scene = make_multiband(tmp_path / "s.tif", size=96)
    before = (dict(m.input_options), next(m.parameters()).device)
    res = map_scene(m, scene, tmp_path / "m.tif", CLASSES, tile=80, stride=16, progress=False, quicklook=False)
    assert res.summary.encoded == 4
    assert (dict(m.input_options), next(m.parameters()).device) == before and m.training
    assert not m.preprocessor().allow_resize


def test_radiometry_reaches_the_scene_reader_and_changes_the_map(model, scene, tmp_path):
    from spectraclip.io.radiometry import Radiometry
    from spectraclip.io.scene import SceneReader, open_scene, window_grid

    sc = open_scene(scene)
    with SceneReader(sc, radiometry="reflectance") as reader:
        got = reader.read(window_grid(sc.height, sc.width, 32)[0])
    assert isinstance(got.sample.meta["radiometry"], Radiometry)
    kw = dict(progress=False, quicklook=False, probabilities="float32")
    a = map_scene(model, scene, tmp_path / "a.tif", CLASSES, **kw)
    b = map_scene(model, scene, tmp_path / "b.tif", CLASSES, radiometry="l1c", **kw)  # same units as trained
    c = map_scene(model, scene, tmp_path / "c.tif", CLASSES, radiometry="scale=0.00005,offset=0", **kw)
    np.testing.assert_allclose(_read(b.path), _read(a.path), atol=1e-5)
    assert not np.allclose(_read(c.path)[1:], _read(a.path)[1:], atol=1e-4)
    with rasterio.open(c.path) as ds:
        assert '"radiometry": "scale=0.00005,offset=0"' in ds.tags()["spectraclip_map"]
