"""The index: kind chosen by size and budget, real tables in, fingerprints kept, filters before ranking,
appends, approximate recall for image-like and text-like queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_index import clustered, real_rasters, session_real_index, synthetic_table
from typer.testing import CliRunner

from spectraclip.embeddings import read_embeddings
from spectraclip.errors import FingerprintMismatchError, SpectraclipError
from spectraclip.identity import Fingerprints
from spectraclip.index import store
from spectraclip.index.build import add_to_index, build_index
from spectraclip.index.choose import choose_index, parse_memory
from spectraclip.index.errors import IndexFormatError, QueryError, UnknownItemError
from spectraclip.index.filters import Filters
from spectraclip.index.query import Query, example_query, run_query
from spectraclip.index.store import exact_search, open_index

needs_data = pytest.mark.skipif(not real_rasters(), reason="../shared/data (eurosat-ms-mini, s2-l2a-examples) absent")


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("s2-l2a", allow_resize=True)  # 32-px model, 224-px tiles


@pytest.fixture(scope="module")
def real(tmp_path_factory, model):
    if not real_rasters():
        pytest.skip("../shared/data absent")
    return session_real_index(tmp_path_factory, model)


def test_choice_follows_size_and_budget():
    assert choose_index(10_000, 512).kind == "flat"
    big = choose_index(1_000_000, 512, parse_memory("4G"))
    assert big.kind == "ivfpq" and big.params["pq_m"] == 128 and big.memory_bytes <= 0.25 * 1_000_000 * 512 * 4
    assert big.factory.endswith(",PQ128x4fs") and big.params["pq_bits"] == 4  # 4-bit fast-scan codes
    small = choose_index(1_000_000, 512, parse_memory("40M"))  # 128 x 4 bits + an id is 72 MB: fewer codes
    assert small.params["pq_m"] == 64 and 1_000_000 * (small.params["pq_m"] // 2 + 8) <= parse_memory("40M")
    huge = choose_index(50_000_000, 512, parse_memory("4G"))  # 3.2 GB of codes: 8-bit lists faiss can memory-map
    assert huge.factory == "IVF16384,PQ64" and huge.params["pq_bits"] == 8 and "memory-mapped" in huge.reason
    assert huge.params["train_size"] >= 39 * 16384  # k-means gets its ~39 samples per list at any size
    assert big.params["train_size"] == 64 * 2048
    assert choose_index(60_000, 512, kind="ivfpq").params["train_size"] == 50_000
    assert choose_index(20_000, 512, parse_memory("10M")).kind == "ivfpq"  # raw 41 MB exceeds the budget
    with pytest.raises(IndexFormatError, match="max-memory"):
        choose_index(1_000_000, 512, parse_memory("1M"))
    with pytest.raises(IndexFormatError, match="--kind"):
        choose_index(10, 4, kind="annoy")
    assert parse_memory("2.5G") == int(2.5 * 1024**3)


@needs_data
def test_real_tables_indexed_aligned_and_fingerprinted(real, model):
    tables, idx_dir = real
    index = open_index(idx_dir)
    t = read_embeddings(tables[0])
    assert len(index) == 59 and index.kind == "flat" and isinstance(index.vectors, np.memmap)
    assert index.fingerprints == Fingerprints.of(model)
    row = index.row_of(t.ids[7])
    v = t.vectors[7] / np.linalg.norm(t.vectors[7])
    np.testing.assert_allclose(index.vectors[row], v, atol=1e-6)
    rec = index.records([row])[0]
    assert rec["id"] == t.ids[7] and rec["path"].endswith(".tif") and "POLYGON" in rec["geometry"]
    assert -15 < rec["lon"] < 35 and 35 < rec["lat"] < 65  # EuroSAT patches lie in Europe
    # text: exactly the brute-force ranking of the encoded text against the table vectors
    from spectraclip.zeroshot.text import encode_texts

    hits = run_query(index, Query(text="a river", k=5), model)
    q = encode_texts(model, ["a river"])[0]
    brute = np.argsort(-(np.asarray(index.vectors) @ q))[:5]
    assert [h.row for h in hits] == brute.tolist()


@needs_data
def test_other_model_refused_naming_both(real):
    from spectraclip.models.loading import load_model

    _, idx_dir = real
    other = load_model("tiny-test", bands="eurosat-ms")  # other bands: another preprocessing
    with pytest.raises(FingerprintMismatchError) as err:
        run_query(open_index(idx_dir), Query(text="a river"), other)
    msg = str(err.value)
    assert str(idx_dir) in msg and Fingerprints.of(other).preprocessing in msg
    assert open_index(idx_dir).fingerprints.preprocessing in msg


@needs_data
def test_like_id_and_like_file(real, model):
    from spectraclip.index.query import encode_raster

    _, idx_dir = real
    index = open_index(idx_dir)
    first = index.ids[3]
    hits = run_query(index, Query(like=[first], k=10))
    assert len(hits) == 10 and first not in [h.id for h in hits]  # the example itself is left out
    path = index.records([3])[0]["path"]
    vec = encode_raster(model, path, "eurosat-ms")
    np.testing.assert_allclose(vec / np.linalg.norm(vec), index.vectors[3], atol=1e-5)
    with pytest.raises(QueryError, match="nothing.tif"):
        encode_raster(model, Path(path).with_name("nothing.tif"), "eurosat-ms")


def test_example_query_is_mean_of_positives_minus_weighted_negatives():
    pos = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    neg = np.array([[0, 0, 1]], np.float32)
    q = example_query(pos, neg, 0.5)
    expect = np.array([1, 1, 0]) / np.sqrt(2) - 0.5 * np.array([0, 0, 1])
    np.testing.assert_allclose(q, expect / np.linalg.norm(expect), atol=1e-6)
    with pytest.raises(QueryError):
        example_query(np.zeros((0, 3)), neg)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    t = synthetic_table(d / "a.parquet", 3000, 32)
    build_index([t], d / "flat")
    build_index([t], d / "ivf", kind="ivfpq")
    return d


def test_filters_before_ranking_return_k(synth, monkeypatch):
    flat, ivf = open_index(synth / "flat"), open_index(synth / "ivf")
    assert ivf.kind == "ivfpq" and ivf.faiss_index is not None
    q = flat.vectors[0][None, :]
    f = Filters(bbox=(0, 40, 10, 50), start="2020-03-01", end="2020-12-31", equals={"split": "test"})
    from spectraclip.index.filters import filter_mask

    mask = filter_mask(flat.meta, f)
    assert 20 < mask.sum() < 300
    meta = flat.meta.to_pydict()
    for r in np.flatnonzero(mask):
        assert meta["split"][r] == "test" and meta["minx"][r] <= 10 and meta["maxx"][r] >= 0
        assert "2020-03-01" <= meta["timestamp"][r].isoformat()[:10] <= "2020-12-31"
    _, exact = exact_search(flat.vectors, q, 10, np.flatnonzero(mask))
    for index in (flat, ivf):
        hits = index.search(q, 10, f)[0]
        assert len(hits) == 10 and [h.row for h in hits] == exact[0].tolist()
    # wide filters go through faiss with an IDSelector; still k results, all passing
    monkeypatch.setattr(store, "EXACT_SUBSET_CELLS", 10)
    hits = ivf.search(q, 20, Filters(equals={"labels": "Forest"}))[0]
    assert len(hits) == 20 and all(h.row % 3 == 0 for h in hits)
    hits = ivf.search(q, 5, Filters(bbox=(0, 40, 10, 50), equals={"split": "test"}))[0]
    assert len(hits) == 5 and all(mask[h.row] or meta["split"][h.row] == "test" for h in hits)


def test_bad_queries_named(synth):
    index = open_index(synth / "flat")
    with pytest.raises(UnknownItemError, match="nope") as err:
        run_query(index, Query(like=["nope"]))
    assert isinstance(err.value, LookupError) and isinstance(err.value, SpectraclipError)
    with pytest.raises(QueryError, match="empty"):
        run_query(index, Query(text="  "))
    with pytest.raises(QueryError, match="without a model"):
        run_query(index, Query(text="forest"))
    with pytest.raises(QueryError, match="3 dimensions"):
        run_query(index, Query(vector=[1.0, 2.0, 3.0]))
    with pytest.raises(QueryError, match="colour"):
        run_query(index, Query(like=["s1"], filters=Filters(equals={"colour": "red"})))
    with pytest.raises(QueryError, match="bbox"):
        run_query(index, Query(like=["s1"], filters=Filters(bbox=(10, 50, 0, 40))))
    with pytest.raises(QueryError, match="start"):
        run_query(index, Query(like=["s1"], filters=Filters(start="last tuesday")))
    with pytest.raises(IndexFormatError, match="not an index folder"):
        open_index(synth)


def test_add_appends_skips_duplicates_and_refuses_other_space(synth, tmp_path):
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(synth / "ivf", idx)
    before = open_index(idx)
    new = synthetic_table(tmp_path / "b.parquet", 500, 32, seed=5, prefix="b")
    report = add_to_index(idx, [new, synth / "a.parquet"])
    assert report.added == 500 and len(report.skipped) == 3000 and report.total == 3500
    after = open_index(idx)
    assert after.faiss_index.ntotal == 3500 and after.ids[:3000] == before.ids and after.ids[3000] == "b0"
    hit = after.search(after.vectors[3100][None, :], 1)[0][0]
    assert hit.id == "b100"  # the appended vectors are searchable through the trained IVF
    assert add_to_index(idx, [new]).added == 0  # idempotent re-run
    other = synthetic_table(tmp_path / "c.parquet", 10, 32, prefix="c", fingerprints=Fingerprints("x" * 16, "p" * 16))
    with pytest.raises(IndexFormatError, match="xxxx.*mmmm"):
        add_to_index(idx, [other])
    with pytest.raises(IndexFormatError, match="64-dimensional"):
        add_to_index(idx, [synthetic_table(tmp_path / "d.parquet", 10, 64, prefix="d")])


def test_approximate_recall_image_and_text_like_queries(tmp_path):
    import pyarrow as pa

    from spectraclip.index.build import build_from_arrays
    from spectraclip.index.metadata import concat_metadata

    x = clustered(10_000, 32, clusters=100, seed=1)
    meta = concat_metadata([pa.table({"id": [str(i) for i in range(len(x))]})])
    build_from_arrays(x, meta, tmp_path / "ivf", kind="ivfpq")
    index = open_index(tmp_path / "ivf")
    rng = np.random.default_rng(2)
    image_q = x[rng.integers(0, len(x), 50)] + 0.02 * rng.normal(size=(50, 32)).astype(np.float32)
    # text-like: a constant offset (the modality gap) pushes queries off the image cloud
    gap = rng.normal(size=32).astype(np.float32)
    text_q = image_q / np.linalg.norm(image_q, axis=1, keepdims=True) + 1.5 * gap / np.linalg.norm(gap)
    for q, modality in ((image_q, "image"), (text_q, "text")):
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        _, exact = exact_search(x, q, 10)
        approx = index.search(q, 10, modality=modality)
        recall = np.mean([len(set(e) & {h.row for h in a}) / 10 for e, a in zip(exact, approx, strict=True)])
        assert recall >= 0.9, (modality, recall)


@needs_data
def test_cli_build_add_search(real, tmp_path, model):
    from spectraclip.cli.main import app

    tables, _ = real
    runner = CliRunner()
    out = tmp_path / "cli-idx"
    res = runner.invoke(app, ["index", "build", str(tables[0]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "54 vectors" in res.output and "flat" in res.output
    res = runner.invoke(app, ["index", "add", str(out), str(tables[1])])
    assert res.exit_code == 0 and "appended 5" in res.output, res.output
    res = runner.invoke(app, ["search", str(out), "--like", "Forest/Forest_2995", "-k", "4",
                              "--filter", "bbox=-10,35,30,60", "-o", str(tmp_path / "hits.csv")])
    assert res.exit_code == 0, res.output
    import csv

    rows = list(csv.DictReader((tmp_path / "hits.csv").open()))
    assert len(rows) == 4 and "Forest/Forest_2995" not in [r["id"] for r in rows]
    res = runner.invoke(app, ["search", str(out), "-q", "snow", "-m", "tiny-test", "--model-bands", "s2-l2a",
                              "--like-file", str(sorted((Path(real_rasters()[-1])).parent.glob("*.tif"))[0]),
                              "--bands", "s2-l2a", "--resize", "-k", "3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(out), "--like", "../../etc/passwd"])
    assert res.exit_code == 2 and "not in the index" in res.output
    res = runner.invoke(app, ["search", str(out), "-q", "snow", "-m", "tiny-test", "--model-bands", "eurosat-ms"])
    assert res.exit_code == 2 and "preprocessing" in res.output


def test_hnsw_on_request_searches_and_filters(synth, tmp_path, monkeypatch):
    build_index([synth / "a.parquet"], tmp_path / "hnsw", kind="hnsw")
    index, flat = open_index(tmp_path / "hnsw"), open_index(synth / "flat")
    assert index.kind == "hnsw" and index.info["plan"]["factory"] == "HNSW32,Flat"
    q = flat.vectors[10:30]
    _, exact = exact_search(flat.vectors, q, 10)
    approx = index.search(q, 10)
    recall = np.mean([len(set(e) & {h.row for h in a}) / 10 for e, a in zip(exact, approx, strict=True)])
    assert recall >= 0.95
    monkeypatch.setattr(store, "EXACT_SUBSET_CELLS", 10)  # force the IDSelector path
    hits = index.search(q[:1], 10, Filters(equals={"split": "test"}))[0]
    assert len(hits) == 10 and all(h.row % 4 == 0 for h in hits)


@pytest.mark.slow  # builds and tunes an IVF index (~2 s): `make test` only
def test_ivf_probing_depth_is_tuned_on_the_data_to_the_target_recall(tmp_path):
    """The build searches a sample of its own vectors at growing nprobe and keeps the first depth reaching the
    target recall@10; the search then uses it (info.json), and text queries probe twice as deep."""
    import json

    from spectraclip.index.build import build_index
    from spectraclip.index.tune import TARGET_RECALL

    table = synthetic_table(tmp_path / "t.parquet", 24_000, 32, seed=3)
    build_index([table], tmp_path / "idx", kind="ivfpq")
    params = json.loads((tmp_path / "idx" / "info.json").read_text())["plan"]["params"]
    tuning = params["tuning"]
    tried = tuning["recall_by_nprobe_x_refine"]
    chosen = f"{params['nprobe']}x{params['refine_factor']}"
    assert list(tried)[-1] == chosen and tried[chosen] == tuning["reached"] >= TARGET_RECALL
    assert all(r < TARGET_RECALL for r in list(tried.values())[:-1])  # the first (cheapest) setting reaching it
    assert params["text_nprobe"] == min(params["nlist"], 2 * params["nprobe"])
    idx = store.open_index(tmp_path / "idx")  # the search reads the tuned depth
    assert idx.info["plan"]["params"]["refine_factor"] == params["refine_factor"]


def test_one_search_path_table_flat_index_and_service_agree(tmp_path):
    """A table searched in Python (index.query.search_vectors), its flat index (search_texts, the CLI's call) and the
    service's /search give the same hits: all run index.query.run_query."""
    import torch
    from fastapi.testclient import TestClient

    from spectraclip.identity import Fingerprints as Fp
    from spectraclip.index.query import search_texts
    from spectraclip.index.query import search_vectors as text_search
    from spectraclip.models.loading import load_model
    from spectraclip.serve.app import create_app

    torch.manual_seed(0)
    net = load_model("tiny-test", bands="B02,B03,B04").eval()
    table = synthetic_table(tmp_path / "t.parquet", 300, net.embed_dim, fingerprints=Fp.of(net))
    build_index([table], tmp_path / "idx", kind="flat")
    emb = read_embeddings(table)
    texts = ["a forest", "a river"]
    by_table = text_search(net, emb.vectors, emb.ids, texts, top_k=8)
    by_index = dict(search_texts(open_index(tmp_path / "idx"), texts, net, k=8))
    with TestClient(create_app(tmp_path / "idx", net)) as client:
        by_service = {t: client.post("/search", json={"text": t, "k": 8}).json()["hits"] for t in texts}
    for t in texts:
        assert [h.id for h in by_table[t]] == [h.id for h in by_index[t]] == [h["id"] for h in by_service[t]]
        np.testing.assert_allclose([h.score for h in by_table[t]], [h.score for h in by_index[t]], atol=1e-6)
        np.testing.assert_allclose([h["score"] for h in by_service[t]], [h.score for h in by_index[t]], atol=1e-5)
