"""The Python face (`import spectraclip as sc`): lazy import, inputs, results, the CLI's defaults and tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spectraclip as sc
from spectraclip.data.eurosat_mini import eurosat_mini_files
from spectraclip.io.sample import RasterError

REPO = Path(__file__).resolve().parents[1]
BANDS = "eurosat-ms"


@pytest.fixture(scope="module")
def model():
    return sc.load_model("tiny-test", bands=BANDS, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chips")
    for f in eurosat_mini_files("test")[:: 9][:6]:
        (out / f.parent.name).mkdir(exist_ok=True)
        shutil.copy(f, out / f.parent.name / f.name)
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def test_import_is_lazy_and_does_not_import_torch():
    code = ("import sys, spectraclip as sc; names = sc.classify, sc.Sample, sc.load_model; "
            "print('torch' in sys.modules, sc.__version__)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"
    assert set(sc.__all__) >= {"load_model", "classify", "embed", "search", "map_scene", "heatmap", "change",
                               "evaluate", "train", "list_models", "Sample"}
    with pytest.raises(AttributeError):
        sc.nothing_here  # noqa: B018


def test_array_without_band_names_says_how_to_name_them(model):
    arr = np.zeros((13, 64, 64), np.float32)
    with pytest.raises(RasterError, match="bands=\\['B04', 'B03', 'B02'\\]"):
        sc.classify(model, arr, ["forest", "river"])
    with pytest.raises(RasterError, match="13 channels but 3 band names"):
        sc.Sample.from_array(arr, bands=["B04", "B03", "B02"])


def test_classify_arrays_tensors_samples_and_paths(model, folder):
    import torch

    arr = np.random.default_rng(0).uniform(0, 3000, (13, 64, 64)).astype(np.float32)
    by_array = sc.classify(model, arr, "forest,river", bands=BANDS, progress=False)
    by_tensor = sc.classify(model, torch.from_numpy(arr), "forest,river", bands=BANDS, progress=False)
    sample = sc.Sample.from_array(arr, bands=BANDS, crs="EPSG:32631", transform=(10, 0, 0, 0, -10, 0), id="mine")
    by_sample = sc.classify(model, sample, ["forest", "river"], progress=False)
    np.testing.assert_allclose(by_array.probabilities, by_tensor.probabilities)
    np.testing.assert_allclose(by_array.probabilities, by_sample.probabilities, atol=1e-6)
    assert by_sample.ids == ["mine"]
    res = sc.classify(model, str(folder / "*" / "*.tif"), ["forest", "river", "sea or lake"], bands=BANDS,
                      progress=False)
    df = res.to_pandas()
    assert len(df) == 6 and list(df.columns[:4]) == ["id", "path", "top_class", "top_probability"]
    assert {"p_forest", "p_river", "p_sea or lake", "templates", "logit_scale"} <= set(df.columns)
    np.testing.assert_allclose(df[["p_forest", "p_river", "p_sea or lake"]].sum(1), 1.0, rtol=1e-5)
    assert df["templates"].iloc[0] == res.templates and df["logit_scale"].iloc[0] == pytest.approx(res.logit_scale)
    assert sc.classify(model, folder, ["forest", "river", "sea or lake"], bands=BANDS,
                       progress=False).ids == res.ids


def test_embed_from_python_equals_the_cli_table(model, folder, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.embeddings import read_embeddings

    cli_out, py_out = tmp_path / "cli.parquet", tmp_path / "py.parquet"
    run = CliRunner().invoke(app, ["embed", str(folder), "--model", "tiny-test", "--model-bands", BANDS,
                                   "--bands", BANDS, "-o", str(cli_out)])
    assert run.exit_code == 0, run.output
    res = sc.embed(sc.load_model("tiny-test", bands=BANDS), folder, py_out, bands=BANDS, progress=False)
    a, b = read_embeddings(cli_out), read_embeddings(py_out)
    assert a.ids == b.ids == res.table.ids and len(a) == 6
    assert a.vectors.tobytes() == b.vectors.tobytes()  # bit for bit
    assert a.metadata.keys() == b.metadata.keys()
    assert {k: v for k, v in a.metadata.items()} == {k: v for k, v in b.metadata.items()}
    assert a.columns.keys() == b.columns.keys()
    hits = sc.search(py_out, ["a river", "a forest"], model=model, k=3)
    assert len(hits) == 6 and hits.to_pandas()["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    run = CliRunner().invoke(app, ["search", str(cli_out), "--model", "tiny-test", "--model-bands", BANDS,
                                   "-q", "a river", "-k", "3", "-o", str(tmp_path / "hits.csv")])
    assert run.exit_code == 0, run.output
    import pandas as pd

    cli_hits = pd.read_csv(tmp_path / "hits.csv")
    assert cli_hits["id"].tolist() == [h["id"] for h in hits.hits("a river")]


def test_face_defaults_are_the_cli_defaults():
    import inspect

    from spectraclip.cli.inference import classify, embed

    for face, cli in ((sc.classify, classify), (sc.embed, embed)):
        fp, cp = inspect.signature(face).parameters, inspect.signature(cli).parameters
        for name, cli_name in (("device", "device"), ("precision", "precision"), ("batch_size", "batch_size"),
                               ("nodata", "nodata"), ("workers", "workers")):
            assert fp[name].default == cp[cli_name].default, (face.__name__, name)


def _defaults(fn) -> dict:
    import inspect

    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _face_defaults(face, library) -> dict:
    """What a face call leaves to its defaults: the face's own parameters, then what it sets for `**options`
    (`api._scene_kwargs`), then the library function's defaults."""
    from spectraclip import api

    out = _defaults(library)
    out.update({"num_workers": api.WORKERS, "nodata": api.NODATA})
    out.update(_defaults(face))
    return out


def test_scene_evaluate_and_train_faces_have_the_cli_defaults():
    from spectraclip.apps.heatmap import heatmap_scene
    from spectraclip.apps.maps import map_scene
    from spectraclip.change.scene import change_scene
    from spectraclip.cli.apps import heatmap_command, map_command
    from spectraclip.cli.change import change_command
    from spectraclip.cli.evaluate import evaluate_cmd
    from spectraclip.cli.train import train_cmd

    scene = ("tile", "stride", "bands", "missing_bands", "radiometry", "nodata", "max_skipped", "batch_size",
             "device", "precision")
    cases = [(sc.heatmap, heatmap_scene, heatmap_command, (*scene, "cls_lambda", "attention", "scl")),
             (sc.change, change_scene, change_command, (*scene, "weight", "threshold", "templates")),
             (sc.map_scene, map_scene, map_command, (*scene, "templates", "probe", "dense", "probabilities",
                                                     "vector", "weight", "cls_lambda", "scl"))]
    for face, library, cli, names in cases:
        fd, cd = _face_defaults(face, library), _defaults(cli)
        for name in names:
            assert fd[name] == cd[name], (face.__name__, name, fd[name], cd[name])
        assert fd["num_workers"] == cd["workers"], face.__name__
    fd, cd = _defaults(sc.evaluate), _defaults(evaluate_cmd)
    for name, cli_name in (("split", "split"), ("batch_size", "batch_size"), ("workers", "workers"),
                           ("device", "device"), ("precision", "precision"), ("plots", "plots"), ("force", "force"),
                           ("embeddings", "embeddings"), ("templates", "templates"), ("tasks", "task"),
                           ("root", "root")):
        assert fd[name] == cd[cli_name], ("evaluate", name)
    assert str(fd["output"]) == str(cd["output_dir"])
    fd, cd = _defaults(sc.train), _defaults(train_cmd)
    assert (fd["overrides"], fd["resume"]) == (cd["overrides"], cd["resume"])


def test_face_names_survive_importing_their_subpackages():
    import importlib

    for name in ("change", "evaluate", "train"):
        importlib.import_module(f"spectraclip.{name}")
        assert callable(getattr(sc, name)) and getattr(sc, name).__module__ == "spectraclip.api", name


def test_plots_return_figures(model, folder, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    sample = sc.Sample.from_array(np.ones((3, 8, 8)) * [[[1]], [[2]], [[3]]], bands="B04,B03,B02")
    assert sample.rgb_bands() == (["B04", "B03", "B02"], "natural colour")
    assert sc.Sample.from_array(np.ones((3, 8, 8)), bands="B08,B04,B03").rgb_bands()[1] == "false colour"
    fig = sample.plot()
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)
    res = sc.classify(model, folder, ["forest", "river", "sea or lake"], bands=BANDS,
                      progress=False)
    assert len(res.plot().axes[0].patches) == 3  # how many items each class won
    assert len(res.plot(0, top=2).axes[0].patches) == 2


def test_mypy_is_clean_on_the_face():
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    out = subprocess.run([mypy, "src/spectraclip/api.py", "src/spectraclip/__init__.py"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow  # a fresh interpreter importing the whole face (~4 s): `make test` only
def test_face_names_shared_with_subpackages_are_both_in_a_fresh_process():
    """`sc.train` / `sc.change` / `sc.evaluate` stay callable after their subpackages are imported, and
    `import spectraclip.train.config as c` (attribute access through the package) still works."""
    import subprocess
    import sys

    code = ("import spectraclip as sc\nimport spectraclip.train.config as c\nimport spectraclip.change.scene as s\n"
            "import spectraclip.evaluate.runner as r\n"
            "assert callable(sc.train) and callable(sc.change) and callable(sc.evaluate)\n"
            "assert c.__name__ == 'spectraclip.train.config' and sc.change.scene is s and sc.evaluate.runner is r\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_stac_items_are_inputs_as_files_dicts_and_pystac_items(tmp_path, monkeypatch):
    """The issue's input kinds include STAC items: a `.json` file, its dict and a `pystac.Item` are read whole
    (assets matched to bands by `eo:bands`), and classified like any raster. The temporary file an in-memory item
    is read through does not outlive the read."""
    import json
    import tempfile

    import pystac
    from fixtures_scenes import make_scene_folder, make_stac_item

    from spectraclip.api import as_inputs

    folder = make_scene_folder(tmp_path, size10=48)
    item_path = make_stac_item(folder, tmp_path / "item.json")
    from_file = as_inputs(item_path)[0]
    assert isinstance(from_file, sc.Sample) and from_file.pixels.shape[1:] == (48, 48)
    data = json.loads(item_path.read_text())
    for asset in data["assets"].values():  # a dict or pystac.Item without a file: absolute hrefs
        asset["href"] = str((tmp_path / asset["href"]).resolve())
    data["properties"]["datetime"] = "2020-06-01T00:00:00Z"  # pystac requires a time
    from_dict = as_inputs(data)[0]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    from_pystac = as_inputs([pystac.Item.from_dict(data)])[0]
    assert not list(scratch.glob("spectraclip-stac-*"))
    for s in (from_dict, from_pystac):
        assert list(s.bands.names) == list(from_file.bands.names)
        np.testing.assert_array_equal(s.pixels, from_file.pixels)
    model = sc.load_model("tiny-test", bands="s2-l1c", device="cpu", resize=True)
    res = sc.classify(model, [item_path, data], "water,forest", precision="fp32", progress=False)
    assert len(res.to_pandas()) == 2


def test_products_and_tables_come_back_as_xarray_and_geodataframes(tmp_path):
    from fixtures_scenes import make_multiband

    scene = make_multiband(tmp_path / "scene.tif", size=64)
    model = sc.load_model("tiny-test", bands="s2-l1c", device="cpu")
    res = sc.map_scene(model, scene, tmp_path / "map.tif", "water,forest", precision="fp32", progress=False,
                       quicklook=False, cloud_mask="none")
    heat = sc.heatmap(model, scene, tmp_path / "heat.tif", ["a lake", "a forest"], precision="fp32", progress=False,
                      quicklook=False, cloud_mask="none")
    assert heat.plot("a forest").axes[0].get_title() == "\u201ca forest\u201d"
    assert res.plot().axes and heat.to_xarray().sizes["band"] == 2
    da = res.to_xarray()
    assert da.dims == ("band", "y", "x") and list(da.band.values) == ["class", "p_water", "p_forest"]
    assert da.shape[1:] == (64, 64) and "EPSG" in da.attrs["crs"]
    chips = sc.load_model("tiny-test", bands="s2-l1c", device="cpu", resize=True)  # the scene squeezed into one input
    gdf = sc.embed(chips, scene, tmp_path / "e.parquet", precision="fp32", progress=False).to_geopandas()
    assert len(gdf) == 1 and gdf.crs is not None and gdf.geometry.iloc[0].is_valid
