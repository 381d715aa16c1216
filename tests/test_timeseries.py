"""The time series: planted trends, anomalies and clouds recovered from a synthetic stack; a resumed run equal to
an uninterrupted one; dates from names, STAC ItemCollections and errors naming the file; the CLI."""

from __future__ import annotations

import json
import shutil
from datetime import date

import numpy as np
import pandas as pd
import pytest
import rasterio
from fixtures_timeseries import make_stack

from spectraclip.apps.runner import SceneOptions
from spectraclip.apps.scene_job import FAULT_STOP_ENV, JobInterrupted
from spectraclip.models.loading import load_model
from spectraclip.timeseries.job import TimeseriesError, parse_place, parse_reference, timeseries_stack
from spectraclip.timeseries.stack import StackError, load_stack
from spectraclip.timeseries.trends import change_points, trend
from spectraclip.zeroshot.classes import parse_classes

OPTS = SceneOptions(tile=32, stride=32, progress=False, device="cpu", batch_size=16, checkpoint_rows=32)


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-test", bands="s2-l1c")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return make_stack(tmp_path_factory.mktemp("ts"))


@pytest.fixture(scope="module")
def run(model, stack, tmp_path_factory):
    folder, _ = stack
    out = tmp_path_factory.mktemp("ts_out")
    return timeseries_stack(model, [folder], out, queries=["green fields", "water"],
                            classes=parse_classes(["field", "water", "city"]), metric="embedding", options=OPTS)


def test_outputs_and_long_table(run, stack):
    _, plant = stack
    t = pd.read_parquet(run.table)
    assert len(t) == 16 * len(plant.dates)
    for col in ("id", "window", "date", "status", "valid_fraction", "sim:green fields", "sim:water", "p_field",
                "embedding_distance", "geometry", "centre_lat", "centre_lon", "utm_crs", "pixel_bbox", "timestamp"):
        assert col in t.columns, col
    ok = t[t.status == "ok"]
    assert np.allclose(ok[["p_field", "p_water", "p_city"]].sum(1), 1.0, atol=1e-4)
    import pyarrow.parquet as pq

    assert b"geo" in pq.read_schema(run.table).metadata
    with rasterio.open(run.rasters["sim:water"]["values"]) as ds:
        assert ds.count == len(plant.dates) and ds.descriptions[0] == plant.dates[0].isoformat()
    with rasterio.open(run.rasters["embedding_distance"]["trend"]) as ds:
        assert ds.descriptions == ("slope_per_year", "p_value", "tau")
    assert set(run.plots) == {"trajectories", "trend", "clouds"}
    assert not (run.folder / "timeseries.parts").exists()


def test_recovers_planted_clouds_anomalies_and_trends(run, stack):
    """The planted-signal table of docs/timeseries.md, seed 0 (benchmarks/timeseries_recovery.py: 3 seeds)."""
    _, plant = stack
    t = pd.read_parquet(run.table)
    iso = [d.isoformat() for d in plant.dates]
    cloud = {(int(r.window), iso.index(r.date.isoformat())) for r in t.itertuples() if r.status == "cloud"}
    assert cloud == plant.clouds  # every planted cloud window is missing at its date, and no other
    assert t[t.status != "ok"][["sim:water", "p_field", "embedding_distance"]].isna().all().all()
    assert t[t.status == "ok"]["sim:water"].notna().all()
    w = pd.read_parquet(run.windows_table).sort_values("window")
    found = {(int(r["window"]), iso.index(a)) for _, r in w.iterrows() for a in r["embedding_distance:anomalies"]}
    assert len(found & plant.anomalies) >= 2  # recall >= 2/3
    assert len(found & plant.anomalies) >= 0.7 * len(found)  # precision
    from scipy.stats import spearmanr

    assert spearmanr(plant.trend, w["embedding_distance:slope"]).statistic > 0.3


def test_resumed_run_equals_uninterrupted(model, stack, tmp_path, monkeypatch):
    folder, plant = stack
    short = tmp_path / "short"
    short.mkdir()
    for d in sorted(folder.iterdir())[:4]:
        shutil.copytree(d, short / d.name)
    kw = dict(queries=["water"], metric="embedding", options=OPTS, plots=False)
    ref = timeseries_stack(model, [short], tmp_path / "a", **kw)
    monkeypatch.setenv(FAULT_STOP_ENV, "64")
    with pytest.raises(JobInterrupted):
        timeseries_stack(model, [short], tmp_path / "b", **kw)
    assert (tmp_path / "b" / "timeseries.parts").is_dir()
    monkeypatch.delenv(FAULT_STOP_ENV)
    res = timeseries_stack(model, [short], tmp_path / "b", **kw)
    assert res.summaries[0].resumed_at_row == 64
    pd.testing.assert_frame_equal(pd.read_parquet(ref.table).drop(columns=[]), pd.read_parquet(res.table))
    pd.testing.assert_frame_equal(pd.read_parquet(ref.windows_table), pd.read_parquet(res.windows_table))
    for name, files in ref.rasters.items():
        for kind, p in files.items():
            with rasterio.open(p) as a, rasterio.open(res.rasters[name][kind]) as b:
                np.testing.assert_array_equal(a.read(), b.read())


def test_dates_from_stac_item_collection(model, stack, tmp_path):
    folder, plant = stack
    feats = []
    for d, sub in zip(plant.dates[:3], sorted(folder.iterdir())[:3], strict=True):
        assets = {f.stem.rsplit("_", 1)[-1]: {"href": str(f)} for f in sorted(sub.glob("*.tif"))}
        feats.append({"type": "Feature", "id": sub.name, "properties": {"datetime": f"{d.isoformat()}T10:00:00Z"},
                      "geometry": None, "assets": assets, "links": []})
    coll = tmp_path / "items.json"
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": feats[::-1]}))
    st = load_stack([coll], list(model.bands.names), tmp_path / "w")
    assert [d.date for d in st.dates] == plant.dates[:3]
    assert st.dates[0].scene.scl is not None  # the STAC SCL asset is the cloud layer


def test_a_scene_without_a_date_is_an_error_naming_it(model, stack, tmp_path):
    folder, _ = stack
    subs = sorted(folder.iterdir())
    undated = tmp_path / "stack" / "somewhere"
    undated.mkdir(parents=True)
    for f in subs[0].glob("*.tif"):
        shutil.copy(f, undated / f.name.split("_", 1)[1].split("_", 1)[1])  # B02.tif, ...: no date left
    shutil.copytree(subs[1], tmp_path / "stack" / subs[1].name)
    with pytest.raises(StackError, match="somewhere.*no acquisition date"):
        load_stack([tmp_path / "stack"], list(model.bands.names), tmp_path / "w")
    with pytest.raises(StackError, match="at least two"):
        load_stack([subs[0]], list(model.bands.names), tmp_path / "w2")


def test_cloud_mask_none_keeps_cloudy_windows(model, stack, tmp_path):
    folder, plant = stack
    st = load_stack([folder], list(model.bands.names), tmp_path / "w", cloud_mask="none")
    assert all(d.scene.scl is None for d in st.dates)
    with pytest.raises(Exception, match="--cloud-mask"):
        SceneOptions(cloud_mask="sometimes")


def test_trend_primitives():
    t = np.arange(8, dtype=float)
    y = 2.0 * t + np.array([0, 0.1, -0.1, 0, 0.05, -0.05, 0, 0.1])
    tr = trend(t, y)
    assert abs(tr.slope - 2.0) < 0.1 and tr.p_value < 0.01 and tr.n == 8
    y[3] = np.nan
    assert trend(t, y).n == 7
    assert np.isnan(trend(t[:2], y[:2]).slope)
    step = np.r_[np.zeros(6), np.ones(6) * 5] + 0.01 * np.sin(np.arange(12))
    assert change_points(step) == [6]
    assert parse_reference("2020-01-01/2020-03-31") == (date(2020, 1, 1), date(2020, 3, 31))
    assert parse_place("2.35,48.85") == (2.35, 48.85)
    with pytest.raises(TimeseriesError):
        parse_place("200,0")


def test_cli(stack, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    folder, _ = stack
    short = tmp_path / "short"
    short.mkdir()
    for d in sorted(folder.iterdir())[:3]:
        shutil.copytree(d, short / d.name)
    r = CliRunner().invoke(app, ["timeseries", str(short), "-o", str(tmp_path / "out"), "-m", "tiny-test",
                                 "--model-bands", "s2-l1c", "--device", "cpu", "-q", "water", "--tile", "32",
                                 "--stride", "32", "--at", "15.0004,45.14", "--cloud-mask", "scl",
                                 "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "sim_water.trend.tif").is_file() and "3 dates" in r.output
    r = CliRunner().invoke(app, ["timeseries", str(short), "-o", str(tmp_path / "o2"), "-m", "tiny-test",
                                 "--cloud-mask", "maybe"])
    assert r.exit_code == 2 and "--cloud-mask" in r.output
