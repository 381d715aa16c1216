"""The time series: planted trends, anomalies and clouds recovered from a synthetic stack; a resumed run equal to
an uninterrupted one; dates from names, STAC ItemCollections and errors naming the file; the CLI."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

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


def test_a_date_covering_part_of_the_grid_is_missing_outside_its_footprint(model, stack, tmp_path):
    """The third date covers only the right half of the earliest date's grid: the stack keeps the earliest grid,
    and that date's windows in the left half are missing (status `outside`, NaN), the others have values."""
    from rasterio.windows import Window

    folder, plant = stack
    part = tmp_path / "part"
    subs = sorted(folder.iterdir())[:3]
    for d in subs[:2]:
        shutil.copytree(d, part / d.name)
    (part / subs[2].name).mkdir(parents=True)
    for f in subs[2].glob("*.tif"):
        with rasterio.open(f) as src:
            win = Window(64, 0, src.width - 64, src.height)
            prof = src.profile | {"width": win.width, "height": win.height,
                                  "transform": src.window_transform(win)}
            with rasterio.open(part / subs[2].name / f.name, "w", **prof) as dst:
                dst.write(src.read(window=win))
    res = timeseries_stack(model, [part], tmp_path / "out", queries=["water"], options=OPTS, plots=False)
    assert any("outside" in n for n in res.notes) and res.outside == 8
    t = pd.read_parquet(res.table)
    last = t[t.date == plant.dates[2]]
    out = last[last.status == "outside"]
    assert len(out) == 8 and (out.col < 64).all() and out["sim:water"].isna().all()
    assert (last[last.col >= 64].status != "outside").all()
    assert last[last.status == "ok"]["sim:water"].notna().all()
    with rasterio.open(res.rasters["sim:water"]["values"]) as ds:
        band = ds.read(3)
    assert np.isnan(band[:, :48]).all() and np.isfinite(band[:, 80:]).any()
    assert res.cloud_masks == ["scl"] * 3


class _FakeStacApi:
    """A tiny STAC API on 127.0.0.1 (http.server in a thread): `/` (landing page, item-search conformance),
    `/search` (GET or POST: the items whose datetime is in the period asked) and `/files/...` (the items' assets,
    with byte ranges, as GDAL's /vsicurl/ reads them). Every request is counted; nothing leaves the machine."""

    def __init__(self, items: list[dict], files: Path) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        api = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _json(self, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _search(self, params: dict) -> None:
                period = params.get("datetime") or "../.."
                a, _, b = str(period).partition("/")
                found = [f for f in items if (a in ("", "..") or f["properties"]["datetime"][:10] >= a[:10])
                         and (b in ("", "..") or f["properties"]["datetime"][:10] <= b[:10])]
                self._json({"type": "FeatureCollection", "features": found, "links": []})

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                api.requests.append(self.path)
                u = urlparse(self.path)
                if u.path == "/":
                    root = f"http://127.0.0.1:{api.port}"
                    self._json({"type": "Catalog", "id": "fake", "description": "a fake STAC API",
                                "stac_version": "1.0.0",
                                "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                                               "https://api.stacspec.org/v1.0.0/item-search"],
                                "links": [{"rel": "self", "href": root + "/"},
                                          {"rel": "root", "href": root + "/"},
                                          {"rel": "search", "href": root + "/search", "method": "GET",
                                           "type": "application/geo+json"},
                                          {"rel": "search", "href": root + "/search", "method": "POST",
                                           "type": "application/geo+json"}]})
                elif u.path == "/search":
                    self._search({k: v[0] for k, v in parse_qs(u.query).items()})
                elif u.path.startswith("/files/"):
                    self._file(files / u.path[len("/files/"):], head=False)
                else:
                    self.send_error(404)

            def do_HEAD(self) -> None:  # noqa: N802
                api.requests.append("HEAD " + self.path)
                self._file(files / urlparse(self.path).path[len("/files/"):], head=True)

            def do_POST(self) -> None:  # noqa: N802
                api.requests.append("POST " + self.path)
                n = int(self.headers.get("Content-Length") or 0)
                self._search(json.loads(self.rfile.read(n) or b"{}"))

            def _file(self, path: Path, head: bool) -> None:
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                rng = self.headers.get("Range")
                if rng:
                    a, _, b = rng.removeprefix("bytes=").partition("-")
                    start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    data = data[start:end + 1]
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_stac_api_search_builds_the_stack(model, stack, tmp_path, monkeypatch):
    """`--stac-api URL --collection C --bbox --datetime`: pystac-client searches a local fake STAC API and the
    stack is the one its ItemCollection gives (assets read over HTTP with byte ranges); the period selects dates."""
    from spectraclip.timeseries.stack import StacSearch, parse_bbox

    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    folder, plant = stack
    subs = sorted(folder.iterdir())[:4]
    feats = []
    api = _FakeStacApi(feats, folder)
    try:
        for d, sub in zip(plant.dates[:4], subs, strict=True):
            assets = {f.stem.rsplit("_", 1)[-1]: {"href": f"http://127.0.0.1:{api.port}/files/{sub.name}/{f.name}",
                                                  "type": "image/tiff"} for f in sorted(sub.glob("*.tif"))}
            feats.append({"type": "Feature", "stac_version": "1.0.0", "id": sub.name, "collection": "fake-s2",
                          "properties": {"datetime": f"{d.isoformat()}T10:00:00Z"},
                          "geometry": {"type": "Point", "coordinates": [15.0, 45.1]}, "bbox": [15.0, 45.1, 15.0, 45.1],
                          "assets": assets, "links": []})
        search = StacSearch(f"http://127.0.0.1:{api.port}/", "fake-s2", parse_bbox("14.9,45.0,15.1,45.2"),
                            f"{plant.dates[0].isoformat()}/{plant.dates[2].isoformat()}")
        st = load_stack([], list(model.bands.names), tmp_path / "w", search=search)
        assert [d.date for d in st.dates] == plant.dates[:3]
        assert st.dates[0].scene.scl is not None and [d.cloud_mask for d in st.dates] == ["scl"] * 3
        assert any("search" in r for r in api.requests) and any(r.startswith("/files/") for r in api.requests)
        assert len(api.requests) < 2000  # bounded: ranges of small files, no crawling
        res = timeseries_stack(model, [], tmp_path / "out", queries=["water"], options=OPTS, plots=False,
                               search=search)
        t = pd.read_parquet(res.table)
        assert len(t) == 16 * 3 and t[t.status == "ok"]["sim:water"].notna().all()
    finally:
        api.close()
    with pytest.raises(StackError, match="bbox"):
        parse_bbox("15,45,14,46")
