"""The workspace: layers as tiles (checked against the COG's pixels), what is at a place, the labels database
(durable across SIGKILL, 20 concurrent clients), learn/rank/export, and bad requests getting a 4xx.

The labels tests run on both backends: SQLite (the file beside the index) and a real PostgreSQL server started by
the test session (`postgres` fixture, tests/fixtures_postgres.py; those cases skip with the reason where no server
can be started)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rio_tiler")
pytest.importorskip("sqlalchemy")
import fixtures_workspace as fw  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp("ws")
    idx = fw.synthetic_index(d)
    layers = [fw.class_map(d / "map.tif"), fw.heat_map(d / "heat.tif"), fw.change_map(d / "chg.tif"),
              fw.scene(d / "scene.tif")]
    return d, idx, layers


@pytest.fixture(params=["sqlite", "postgresql"])
def labels_db(request, tmp_path) -> str:
    """A fresh, empty labels database of each backend: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return str(tmp_path / "labels.sqlite")
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture(scope="module")
def client(ws):
    from fastapi.testclient import TestClient

    from spectraclip.serve.app import create_app

    d, idx, layers = ws
    return TestClient(create_app(idx, layers=layers, labels=d / "labels.sqlite", warm=False))


def test_layers_and_point(client):
    info = client.get("/layers").json()
    kinds = {lay["name"]: lay["kind"] for lay in info["layers"]}
    assert kinds == {"map": "classes", "heat": "similarity", "chg": "change", "scene": "scene"}
    assert [c["colour"] for c in info["layers"][0]["classes"]] == ["#006400", "#0000ff", "#b4dc50"]
    pt = client.get("/point", params={"lon": 5.25, "lat": 49.75}).json()
    assert pt["layers"]["map"]["class"] == "River" and pt["layers"]["map"]["top"][0] == {"class": "River", "p": 0.7843}
    assert pt["item"] is not None
    assert client.get("/point", params={"lon": 5.15, "lat": 49.85}).json()["layers"]["chg"]["change"] is True


def test_tile_matches_the_cog_pixels(client, ws):
    """Every opaque pixel of a rendered class-map tile has the colour of the COG's class at that place."""
    import morecantile
    import rasterio
    from PIL import Image

    tms = morecantile.tms.get("WebMercatorQuad")
    t = tms.tile(5.25, 49.75, 12)
    r = client.get(f"/tiles/map/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    b = tms.xy_bounds(t)
    checked = agree = 0
    with rasterio.open(ws[2][0]) as ds:
        for py in range(8, 256, 16):
            for px in range(8, 256, 16):
                x = b.left + (px + 0.5) / 256 * (b.right - b.left)
                y = b.top - (py + 0.5) / 256 * (b.top - b.bottom)
                lon, lat = tms.lnglat(x, y)
                row, col = ds.index(lon, lat)
                if not (0 <= row < ds.height and 0 <= col < ds.width) or im[py, px, 3] == 0:
                    continue
                cls = int(ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])
                checked += 1
                agree += tuple(im[py, px, :3]) == fw.COLOURS[cls][:3]
    assert checked > 100 and agree / checked > 0.97


@pytest.mark.parametrize("path,status", [
    ("/tiles/map/12/0/0.png", 404), ("/tiles/map/30/0/0.png", 404), ("/tiles/nope/3/4/2.png", 404),
    ("/tiles/..%2F..%2Fetc%2Fpasswd/3/4/2.png", 404), ("/tiles/../../etc/passwd/3/4/2.png", 404),
    ("/tiles/map/-1/0/0.png", 404), ("/tiles/map/a/0/0.png", 422), ("/tiles/heat/12/2107/1393.png?band=9", 404),
    ("/tiles/map/3/8/0.png", 404), ("/tiles/map/12/2107/4096.png", 404), ("/tiles/map/12/-1/1393.png", 404),
    ("/tiles/map/12/2107/1393.5.png", 422), ("/tiles/heat/12/2107/1393.png?band=0", 422),
    ("/point?lon=500&lat=0", 422), ("/footprints?bbox=1,2,3", 400), ("/export/labels.exe", 404),
])
def test_bad_requests_get_4xx(client, path, status):
    assert client.get(path).status_code == status
    assert client.get("/healthz").status_code == 200


def test_bad_labels_get_4xx(client):
    bad = [({"item_id": "nope", "label": "positive", "target": "x"}, 404),
           ({"item_id": "../../etc/passwd", "label": "positive", "target": "x"}, 404),
           ({"item_id": "w1", "label": "maybe", "target": "x"}, 400),
           ({"item_id": "w1", "label": ""}, 422), ({"item_id": "w1", "label": "y" * 300}, 422),
           ({"item_id": "w1", "label": "A", "extra": 1}, 422), ({"label": "A"}, 400),
           ({"lon": -100.0, "lat": 0.0, "label": "A"}, 404)]
    for body, status in bad:
        assert client.post("/labels", json=body).status_code == status, body
    assert client.post("/labels", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
                       ).status_code == 413
    assert client.post("/learn", json={"target": "never-labelled"}).status_code == 400
    assert client.get("/healthz").status_code == 200


def test_label_learn_rank_export(labels_db, ws, tmp_path):
    import geopandas as gpd
    import pyarrow.parquet as pq
    from fastapi.testclient import TestClient

    from spectraclip.apps.probe_head import load_probe
    from spectraclip.serve.app import create_app

    client = TestClient(create_app(ws[1], labels=labels_db, warm=False))

    meta = pq.read_table(ws[1] / "metadata.parquet").to_pylist()
    truth = {m["id"]: m["labels"] for m in meta}
    for m in meta[:40]:
        r = client.post("/labels", json={"item_id": m["id"], "label": "positive" if m["labels"] == "c1" else "negative",
                                         "target": "c1", "who": "test", "query": "c1 query"})
        assert r.status_code == 201
    res = client.post("/learn", json={"target": "c1", "k": 20}).json()
    assert res["cv_accuracy"] is not None and res["cv_accuracy"] > 0.8
    assert np.mean([truth[h["id"]] == "c1" for h in res["top"]]) >= 0.8
    assert len(res["uncertain"]) == 20 and not {h["id"] for h in res["top"]} & {m["id"] for m in meta[:40]}
    boxed = client.post("/learn", json={"target": "c1", "bbox": [5.0, 49.5, 5.2, 49.7]}).json()
    assert boxed["scored"] < res["scored"]
    gj = client.get("/export/labels.geojson", params={"target": "c1"}).json()
    kinds = [f["properties"]["kind"] for f in gj["features"]]
    assert kinds.count("candidate") == len(boxed["top"]) and all(f["geometry"] for f in gj["features"])
    (tmp_path / "l.parquet").write_bytes(client.get("/export/labels.parquet", params={"target": "c1"}).content)
    frame = gpd.read_parquet(tmp_path / "l.parquet")
    assert frame.crs.to_epsg() == 4326 and {"item_id", "label", "who", "created", "query", "p_positive"} <= set(frame)
    (tmp_path / "p.json").write_bytes(client.get("/export/probe.json", params={"target": "c1"}).content)
    probe = load_probe(tmp_path / "p.json")
    assert probe.classes == ["not c1", "c1"] and probe.coef.shape == (2, 32)


def test_library_and_cli_loop(labels_db, ws, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.index.store import open_index
    from spectraclip.serve.labels import LabelStore
    from spectraclip.serve.workspace import learn

    idx = ws[1]
    db = f"sqlite:///{labels_db}" if "://" not in labels_db else labels_db
    store = LabelStore(db)
    for i in range(12):
        store.add(f"w{i}", "Forest" if i % 2 else "Water", who="lib")
    store.add("w0", "Forest", who="lib")  # relabelled: the latest label wins
    assert store.latest("")[("w0", "")].label == "Forest" and len(store.all("")) == 13
    res = learn(open_index(idx), store, k=5)
    assert res.probe.classes == ["Forest", "Water"] and len(res.ranking.top_rows) == 5
    out = CliRunner().invoke(app, ["labels", "add", str(idx), "w5", "positive", "--target", "t", "--labels-db", db])
    assert out.exit_code == 0 and "label #14" in out.output, out.output
    listed = CliRunner().invoke(app, ["labels", "list", str(idx), "--target", "t", "--labels-db", db])
    assert listed.exit_code == 0 and listed.output.split("\t")[:4] == ["14", "w5", "positive", "t"]
    out = CliRunner().invoke(app, ["labels", "learn", str(idx), "--labels-db", db, "-k", "3", "-o",
                                   str(tmp_path / "x.geojson"), "--probe", str(tmp_path / "p.json")])
    assert out.exit_code == 0, out.output
    assert "cross-validated accuracy" in out.output and (tmp_path / "x.geojson").is_file()
    bad = CliRunner().invoke(app, ["serve", str(idx), "--layer", str(tmp_path / "x.geojson")])
    assert bad.exit_code == 2 and "not a readable raster" in bad.output


def test_tiles_have_an_etag_and_revalidate_with_304(client, ws):
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(5.25, 49.75, 12)
    url = f"/tiles/heat/{t.z}/{t.x}/{t.y}.png"
    r = client.get(url)
    etag = r.headers["etag"]
    assert r.status_code == 200 and etag.startswith('"') and "max-age" in r.headers["cache-control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(f"/tiles/heat/{t.z}/{t.x + 1}/{t.y}.png").headers["etag"] != etag
    assert client.get(f"/tiles/heat/{t.z}/{t.x}/{t.y}.png?band=1").headers["etag"] != etag
    heat = ws[2][1]
    st = heat.stat()
    os.utime(heat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rewritten product: a new version
    try:
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 200
    finally:
        os.utime(heat, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_zoomed_out_tiles_of_a_product_cog_are_drawn_from_its_overviews(tmp_path):
    """A class-map COG with overviews (as `map` writes it): a z10 tile reads an overview and shows only the
    classes' colours; a layer without overviews (2048 px) is warned about at start, naming the file and gdaladdo."""
    import morecantile
    from PIL import Image
    from rasterio.shutil import copy as rio_copy
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.serve.layers import open_layer, render_tile

    plain = fw.class_map(tmp_path / "plain.tif", size=2048, res=0.00025)
    cog = tmp_path / "cog.tif"
    rio_copy(plain, cog, driver="COG", overview_resampling="nearest", blocksize=256)
    lay = open_layer(cog, "cog")
    assert lay.warning == ""
    t = morecantile.tms.get("WebMercatorQuad").tile(5.25, 49.75, 10)
    im = np.asarray(Image.open(io.BytesIO(render_tile(lay, t.z, t.x, t.y))).convert("RGBA"))
    opaque = im[im[..., 3] > 0][:, :3]
    assert len(opaque) > 1000
    assert {tuple(c) for c in np.unique(opaque, axis=0)} <= {fw.COLOURS[c][:3] for c in (0, 1, 2)}
    warning = open_layer(plain, "plain").warning
    assert "plain.tif" in warning and "without overviews" in warning and "gdaladdo -r nearest" in warning
    import uvicorn

    idx = fw.synthetic_index(tmp_path / "ws")
    run = uvicorn.run
    uvicorn.run = lambda *a, **k: None  # the command checks and builds the app, then would serve
    try:
        out = CliRunner().invoke(app, ["serve", str(idx), "--layer", str(plain), "--layer", str(cog),
                                       "--labels-db", str(tmp_path / "l.sqlite")])
    finally:
        uvicorn.run = run
    assert out.exit_code == 0, out.output
    assert "without overviews" in out.output and "plain.tif" in out.output and "cog.tif:" not in out.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(idx: Path, db: Path | str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "spectraclip.cli.main", "serve", str(idx), "--port", str(port),
                             "--labels-db", str(db)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


# two server starts (~5-8 s each on a busy 2-core machine) per backend: PostgreSQL's case runs in `make test` only
@pytest.mark.parametrize("labels_db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)],
                         indirect=True)
def test_sigkill_keeps_acknowledged_labels_and_20_clients_lose_none(labels_db, ws, request):
    import httpx

    from spectraclip.serve.labels import LabelStore

    idx, db, port = ws[1], labels_db, _free_port()
    proc = _start(idx, db, port)
    acked: list[int] = []
    try:
        def client(c: int) -> list[int]:
            got = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
                for j in range(10):
                    r = h.post("/labels", json={"item_id": f"w{(c * 10 + j) % 400}", "label": "positive",
                                                "target": "t", "who": f"client{c}"})
                    assert r.status_code == 201
                    got.append(r.json()["id"])
            return got

        with ThreadPoolExecutor(20) as pool:
            for ids in pool.map(client, range(20)):
                acked += ids
        assert len(acked) == 200 and len(set(acked)) == 200
        # labels in flight while the server is killed: the acknowledged ones must survive
        with ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(client, c) for c in range(20, 24)]
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            for f in futs:
                try:
                    acked += f.result()
                except Exception:  # noqa: BLE001 - the killed server's refused/broken requests
                    pass
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    if "://" in db:  # PostgreSQL: its server crashes too (no shutdown checkpoint); restarting replays the WAL
        server = request.getfixturevalue("postgres")
        server.crash()
        server.start()
    proc = _start(idx, db, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            stored = {lab["id"] for lab in h.get("/labels").json()["labels"]}
    finally:
        proc.kill()
        proc.wait(10)
    assert set(acked) <= stored
    assert LabelStore(db).count() == len(stored)
    assert json.loads(json.dumps(sorted(stored)))  # plain ids


def test_timeseries_layer_click_gives_the_trajectory(tmp_path, ws):
    """A `spectraclip timeseries` values COG (one band per date, NaN = missing) served as a layer: a click returns
    the per-date values equal to the COG's pixels, missing dates as null; tiles render."""
    import json

    import numpy as np
    import rasterio
    from fastapi.testclient import TestClient
    from rasterio.transform import from_origin

    from spectraclip.serve.app import create_app

    dates = ["2020-01-05", "2020-02-04", "2020-03-05", "2020-04-04"]
    data = np.random.default_rng(0).random((4, 64, 64)).astype("float32")
    data[2, :32] = np.nan  # a cloudy date in the northern half
    path = tmp_path / "sim_flooded.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=4, dtype="float32", crs="EPSG:4326",
                       transform=from_origin(5.0, 50.0, 0.01, 0.01), nodata=float("nan")) as ds:
        ds.write(data)
        ds.descriptions = tuple(dates)
        ds.update_tags(spectraclip_timeseries=json.dumps({"series": "sim_flooded"}))
    idx = ws[1]
    c = TestClient(create_app(idx, layers=[path], labels=False, warm=False))
    info = {lay["name"]: lay for lay in c.get("/layers").json()["layers"]}
    assert info["sim_flooded"]["kind"] == "timeseries"
    for lon, lat, row, col in ((5.105, 49.895, 10, 10), (5.405, 49.505, 49, 40)):
        got = c.get("/point", params={"lon": lon, "lat": lat}).json()["layers"]["sim_flooded"]["trajectory"]
        assert [g["date"] for g in got] == dates
        for g, v in zip(got, data[:, row, col], strict=True):
            assert (g["value"] is None) if np.isnan(v) else abs(g["value"] - float(v)) < 1e-3
    assert got[2]["value"] is not None
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(5.3, 49.7, 8)
    assert c.get(f"/tiles/sim_flooded/{t.z}/{t.x}/{t.y}.png").status_code == 200


def test_cli_learn_anchors_on_the_target_text_with_the_index_model(tiny_model, tmp_path_factory, tmp_path):
    """`labels learn --target T -m MODEL` encodes T with the index's model as the probe's anchor, as `serve` does;
    without a model it says it learns from the labels alone; a model of another space is refused."""
    from fixtures_index import real_rasters, session_real_index
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.index.store import open_index
    from spectraclip.serve.labels import LabelStore, default_url
    from spectraclip.serve.workspace import learn
    from spectraclip.zeroshot.text import encode_texts

    if not real_rasters():
        pytest.skip("../shared/data absent")
    model = tiny_model("s2-l2a", allow_resize=True)
    _, idx = session_real_index(tmp_path_factory, model)
    index = open_index(idx)
    db = f"sqlite:///{tmp_path / 'l.sqlite'}"
    store = LabelStore(db)
    for i, item in enumerate(index.ids[:6]):
        store.add(item, "positive" if i < 2 else "negative", target="snow")
    assert default_url(idx) != db
    base = ["labels", "learn", str(idx), "--labels-db", db, "--target", "snow", "-k", "3"]
    alone = CliRunner().invoke(app, base)
    assert alone.exit_code == 0 and "without its text as the anchor" in alone.output, alone.output
    anchored = CliRunner().invoke(app, [*base, "-m", "tiny-test", "--model-bands", "s2-l2a"])
    assert anchored.exit_code == 0 and "anchor" not in anchored.output, anchored.output
    prior = np.asarray(encode_texts(model, ["snow"]), np.float32)[0]
    want = learn(index, store, target="snow", k=3, prior=prior).to_dict()
    assert [line.split("\t")[0].strip() for line in anchored.output.splitlines() if "\t" in line][:3] == \
        [h["id"] for h in want["top"]]
    other = CliRunner().invoke(app, [*base, "-m", "tiny-test", "--model-bands", "eurosat-ms"])
    assert other.exit_code == 2, other.output
