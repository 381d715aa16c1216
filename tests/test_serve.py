"""The HTTP service on a real index: every endpoint, thumbnails from the item rasters, the offline page,
and a clear 4xx for every kind of bad request (the app keeps serving after each)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fixtures_index import real_rasters, session_real_index

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

if not real_rasters():
    pytest.skip("../shared/data absent", allow_module_level=True)


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("s2-l2a", allow_resize=True)  # 32-px model, 224-px tiles


@pytest.fixture(scope="module")
def client(tmp_path_factory, model):
    from spectraclip.serve.app import create_app

    _, idx = session_real_index(tmp_path_factory, model)
    with TestClient(create_app(idx, model)) as c:
        yield c


def test_text_like_and_vector_search(client, model):
    r = client.post("/search", json={"text": "a snowy mountain", "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["hits"]) == 7 and body["modality"] == "text" and body["index_kind"] == "flat"
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    first = body["hits"][0]["id"]
    r2 = client.post("/search", json={"text": "a snowy mountain", "like": [first], "k": 7}).json()
    assert first not in [h["id"] for h in r2["hits"]]
    assert [h["id"] for h in r2["hits"]] != [h["id"] for h in body["hits"][1:]]  # the example moved the query
    r3 = client.post("/search", json={"like": [first], "unlike": [r2["hits"][0]["id"]], "k": 3})
    assert r3.status_code == 200 and len(r3.json()["hits"]) == 3
    index = client.app.state.index
    vec = np.asarray(index.vectors[5]).tolist()
    r4 = client.post("/search", json={"vector": vec, "k": 1}).json()
    assert r4["hits"][0]["id"] == index.ids[5] and r4["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_filters_and_items(client):
    r = client.post("/search", json={"text": "forest", "k": 50, "filters": {"bbox": [-10, 35, 30, 60]}}).json()
    assert r["candidates"] is not None and len(r["hits"]) == min(50, r["candidates"])
    assert all(h["geometry"] is None for h in r["hits"])  # WKT only on request
    g = client.post("/search", json={"text": "forest", "k": 2, "geometry": True}).json()["hits"]
    assert g[0]["geometry"].startswith("POLYGON")
    for h in r["hits"]:
        w, s, e, n = h["bbox"]
        assert w <= 30 and e >= -10 and s <= 60 and n >= 35
    r = client.post("/search", json={"text": "x", "filters": {"equals": {"source_table": "nope"}}}).json()
    assert r["hits"] == [] and r["candidates"] == 0
    item = client.get("/items/Forest/Forest_2995")
    assert item.status_code == 200 and item.json()["metadata"]["path"].endswith("Forest_2995.tif")
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["items"] == 59 and h["text_queries"] and h["model_fingerprint"]


def test_thumbnails_from_the_item_raster(client):
    from PIL import Image

    nat = client.get("/items/River/River_112/thumbnail.png?style=natural")
    fc = client.get("/items/River/River_112/thumbnail.png", params={"style": "false-colour"})
    assert nat.status_code == fc.status_code == 200 and nat.headers["content-type"] == "image/png"
    a, b = (np.asarray(Image.open(io.BytesIO(x.content))) for x in (nat, fc))
    assert a.shape == b.shape == (128, 128, 3) and a.std() > 5 and not np.array_equal(a, b)
    l2a = client.get("/items/282D_485L_3_3/thumbnail.png")  # the L2A band order (B8A before B09) by name
    assert l2a.status_code == 200
    assert len(client.app.state.thumbnails) == 3
    assert client.get("/items/River/River_112/thumbnail.png").content == nat.content  # cached


BAD = [
    ("post", "/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("post", "/search", {"json": {}}, 400, "empty query"),
    ("post", "/search", {"json": {"text": "   "}}, 400, "empty"),
    ("post", "/search", {"json": {"text": "x" * 501}}, 422, "500 characters"),
    ("post", "/search", {"json": {"text": "forest", "k": 100000}}, 422, "less than or equal to 500"),
    ("post", "/search", {"json": {"text": "forest", "k": 0}}, 422, "greater than or equal to 1"),
    ("post", "/search", {"json": {"like": ["no-such-item"]}}, 404, "no-such-item"),
    ("post", "/search", {"json": {"like": ["../../etc/passwd"]}}, 404, "not in the index"),
    ("post", "/search", {"json": {"vector": [1.0, 2.0]}}, 400, "2 dimensions"),
    ("post", "/search", {"json": {"vector": [0.0] * 32}}, 400, "zero"),
    ("post", "/search", {"json": {"text": "a", "filters": {"bbox": [10, 50, 0]}}}, 422, "4 items"),
    ("post", "/search", {"json": {"text": "a", "filters": {"bbox": [0, 60, 10, 50]}}}, 400, "south <= north"),
    ("post", "/search", {"json": {"text": "a", "filters": {"start": "yesterday"}}}, 400, "start"),
    ("post", "/search", {"json": {"text": "a", "filters": {"equals": {"colour": "red"}}}}, 400, "colour"),
    ("post", "/search", {"json": {"text": "a", "kk": 3}}, 422, "Extra inputs"),
    ("post", "/search", {"content": b"x" * 1_000_001, "headers": {"content-type": "application/json"}}, 413, "body"),
    ("get", "/items/no-such-item", {}, 404, "no-such-item"),
    ("get", "/items/..%2F..%2Fetc%2Fpasswd/thumbnail.png", {}, 404, "not in the index"),
    ("get", "/items/River/River_112/thumbnail.png?style=infrared", {}, 422, "natural|false-colour"),
    ("get", "/static/../info.json", {}, 404, ""),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "words"), BAD, ids=[f"{b[1]}-{b[3]}-{i}" for i, b in
                                                                                     enumerate(BAD)])
def test_bad_requests_get_a_clear_4xx(client, method, url, kwargs, status, words):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.text
    assert client.get("/healthz").status_code == 200


def test_page_and_api_page_are_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "search-form" in page.text
    for asset in ("/static/app.js", "/static/style.css", "/docs"):
        r = client.get(asset)
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text and "cdn" not in r.text.lower()
    assert "http" not in page.text.replace('http-equiv', '')
    spec = client.get("/openapi.json").json()
    assert {"/search", "/items/{item_id}", "/healthz"} <= set(spec["paths"])
    assert "SearchRequest" in spec["components"]["schemas"]


def test_text_refused_without_model_and_other_model_refused(tmp_path_factory, model):
    from spectraclip.errors import FingerprintMismatchError
    from spectraclip.models.loading import load_model
    from spectraclip.serve.app import create_app

    _, idx = session_real_index(tmp_path_factory, model)
    with TestClient(create_app(idx)) as c:
        r = c.post("/search", json={"text": "forest"})
        assert r.status_code == 400 and "without a model" in r.text
        assert c.post("/search", json={"like": ["Forest/Forest_2995"]}).status_code == 200
    with pytest.raises(FingerprintMismatchError, match="preprocessing"):
        create_app(idx, load_model("tiny-test", bands="eurosat-ms"))
