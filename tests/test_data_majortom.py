"""Major TOM: Core shard rows as items, `embed` into the published embedding layout (read back by a reader written
only from the published format), and published embedding files read with the model named."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixtures_archives import MT_CELLS, major_tom_pixels, make_major_tom_core

from spectraclip.data.majortom import (
    EMBEDDING_COLUMNS,
    MajorTomError,
    core_items,
    parse_grid_cell,
    read_published_embeddings,
)


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    return make_major_tom_core(tmp_path_factory.mktemp("mt"))


@pytest.fixture(scope="module")
def model():
    from spectraclip.models.loading import load_model

    return load_model("tiny-test")


def test_grid_cells():
    assert parse_grid_cell("433U_1040R") == (433, 1040) and parse_grid_cell("12D_7L") == (-12, -7)
    with pytest.raises(MajorTomError):
        parse_grid_cell("nope")


def test_core_rows_decode_to_samples(core):
    shard, meta = core
    items = core_items([str(shard)], meta)
    assert [it.meta["grid_cell"] for it in items] == [c for c, *_ in MT_CELLS]
    s = items[2].read()
    assert s.pixels.shape == (12, 16, 16) and s.crs == "EPSG:32633" and s.transform[0] == 10.0
    px = major_tom_pixels()[2]
    assert np.array_equal(s.select(s.bands.__class__(("B04",))).pixels[0], px["B04"])
    b11 = s.pixels[list(s.bands.names).index("B11")]
    assert np.array_equal(b11[::2, ::2], px["B11"])  # 20 m band upsampled by nearest neighbour
    # without metadata.parquet the grid row/column come from the cell name
    assert core_items(str(shard))[2].meta["grid_row_u"] == -12


def _published_reader(path):
    """What a user of the published Major TOM embeddings does (only their documented columns)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    df = pd.read_parquet(path, columns=list(EMBEDDING_COLUMNS))
    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries.from_wkb(df["geometry"]), crs="EPSG:4326")
    emb = np.stack(gdf["embedding"].to_numpy())
    foot = [shapely.from_wkt(w) for w in gdf["utm_footprint"]]
    return gdf, emb, foot


def test_embed_writes_the_published_layout_and_matches_geotiffs(core, model, tmp_path):
    from spectraclip.distributed.majortom import embed_major_tom
    from spectraclip.embeddings import read_embeddings
    from spectraclip.inference import embed_to_table

    shard, meta = core
    out = tmp_path / "mt.parquet"
    embed_major_tom(model, [str(shard)], out, metadata=meta, batch_size=2, progress=False, num_workers=1)
    gdf, emb, foot = _published_reader(out)
    assert len(gdf) == 3 and emb.shape == (3, model.embed_dim)
    assert list(gdf["grid_cell"]) == [c for c, *_ in MT_CELLS] and gdf["grid_row_u"].dtype == np.int16
    assert gdf["utm_crs"].iloc[0] == "EPSG:32633" and foot[0].area == pytest.approx(160.0 * 160.0)
    assert gdf["unique_id"].str.len().eq(64).all() and gdf.geometry.is_valid.all()
    assert (gdf["centre_lat"].between(43, 44)).all() and str(gdf["timestamp"].iloc[0]).startswith("2020-07-01")
    ours = read_embeddings(out)  # and our own reader: fingerprints kept
    assert ours.fingerprints is not None and np.allclose(ours.vectors, emb)
    # the same pixels as GeoTIFFs through the plain path: the same embeddings
    tifs = _write_tifs(core_items([str(shard)], meta), tmp_path / "tif")
    t2, _, _ = embed_to_table(model, tifs, tmp_path / "tif.parquet", batch_size=2, progress=False)
    assert np.allclose(t2.vectors, emb, atol=1e-5)



def _write_tifs(items, folder, size: int = 16):
    import rasterio

    folder.mkdir()
    paths = []
    for it in items:
        s = it.read()
        p = folder / f"{it.id}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=size, height=size, count=len(s.bands), dtype="float32",
                           crs=s.crs, transform=rasterio.Affine(*s.transform)) as dst:
            dst.write(s.pixels)
            dst.descriptions = tuple(s.bands.names)
        paths.append(str(p))
    return paths


def test_published_embeddings_need_the_model_named(core, model, tmp_path):
    from spectraclip.distributed.majortom import embed_major_tom

    shard, meta = core
    out = tmp_path / "mt.parquet"
    embed_major_tom(model, [str(shard)], out, metadata=meta, batch_size=3, progress=False)
    published = tmp_path / "published.parquet"
    pq.write_table(pq.read_table(out, columns=list(EMBEDDING_COLUMNS)), published)  # no fingerprints, no `vector`
    with pytest.raises(MajorTomError, match="model named explicitly"):
        read_published_embeddings(published, "")
    ids, vecs, info = read_published_embeddings(published, "SSL4EO-S2L2A")
    assert len(ids) == 3 and np.allclose(np.linalg.norm(vecs, axis=1), 1) and info["model_declared"] == "SSL4EO-S2L2A"


def _cli(*args):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_cli_embed_streams_core_shards_resumes_and_shards(core, tmp_path, monkeypatch):
    """`embed SHARD` (detected) = `embed --layout majortom`: the published columns and our fingerprints; a run
    killed after its first part resumes; `--shard I/2` parts merge into the single-process table (fp32: the CPU's
    `auto` precision may quantise per batch, and the shards batch the rows differently)."""
    from spectraclip import embeddings
    from spectraclip.embeddings import read_embeddings

    shard, meta = core
    clean = tmp_path / "clean.parquet"
    r = _cli("embed", shard, "-m", "tiny-test", "--major-tom-metadata", meta, "--workers", "0", "--batch-size", "2",
             "--device", "cpu", "--precision", "fp32", "-o", clean)
    assert r.exit_code == 0, r.output
    gdf, emb, _ = _published_reader(clean)
    ours = read_embeddings(clean)
    assert len(gdf) == 3 and ours.fingerprints is not None and ours.metadata["layout"] == "majortom"
    assert set(EMBEDDING_COLUMNS) <= set(pq.read_schema(clean).names) and np.allclose(ours.vectors, emb)

    real_write, calls = embeddings.PartWriter.write, {"n": 0}

    def crash_after_one_part(self, *a, **k):
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the job dies after its first part of 2 rows
        calls["n"] += 1
        return real_write(self, *a, **k)

    out = tmp_path / "emb.parquet"
    args = ("embed", shard, "-m", "tiny-test", "--layout", "majortom", "--major-tom-metadata", meta, "--workers",
            "0", "--batch-size", "2", "--device", "cpu", "--precision", "fp32", "-o", out)
    monkeypatch.setattr(embeddings.PartWriter, "write", crash_after_one_part)
    assert _cli(*args).exit_code != 0
    monkeypatch.setattr(embeddings.PartWriter, "write", real_write)
    assert not out.exists() and len(list((tmp_path / "emb.parquet.parts").glob("part-*.parquet"))) == 1
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    assert "(2 kept from an earlier run)" in r.output
    t = read_embeddings(out)
    assert t.ids == ours.ids and np.allclose(t.vectors, ours.vectors, atol=1e-6)
    assert pq.read_table(out).column("unique_id").to_pylist() == pq.read_table(clean).column("unique_id").to_pylist()

    parts = []
    for i in (1, 2):
        part = tmp_path / "parts" / f"p{i}.parquet"
        r = _cli(*args[:-1], part, "--shard", f"{i}/2")
        assert r.exit_code == 0, r.output
        parts.append(part)
    r = _cli("embed-merge", *parts, "-o", tmp_path / "merged.parquet")
    assert r.exit_code == 0, r.output
    m = read_embeddings(tmp_path / "merged.parquet")
    assert sorted(m.ids) == sorted(ours.ids) and set(EMBEDDING_COLUMNS) <= set(pq.read_schema(parts[0]).names)
    order = [m.ids.index(i) for i in ours.ids]
    assert np.allclose(m.vectors[order], ours.vectors, atol=1e-6)
    assert sorted(m.columns["unique_id"]) == sorted(pq.read_table(clean).column("unique_id").to_pylist())


def test_index_build_and_search_read_published_files_only_with_the_model_named(core, model, tmp_path):
    """A file in the published layout (only EMBEDDING_COLUMNS, no fingerprint): refused by `index build` and
    `search` without --published, read with `--model NAME --published` (the index records the model as declared)."""
    import json

    from spectraclip.distributed.majortom import embed_major_tom

    shard, meta = core
    ours = tmp_path / "mt.parquet"
    embed_major_tom(model, [str(shard)], ours, metadata=meta, batch_size=3, progress=False)
    pub = tmp_path / "Core-S2L2A-tiny.parquet"
    pq.write_table(pq.read_table(ours, columns=list(EMBEDDING_COLUMNS)), pub)
    idx = tmp_path / "idx"
    r = _cli("index", "build", pub, "-o", idx)
    assert r.exit_code == 2 and "published Major TOM" in r.output and "--published" in r.output, r.output
    r = _cli("index", "build", pub, "-o", idx, "--model", "tiny-test")
    assert r.exit_code == 2 and "go with --published" in r.output
    r = _cli("index", "build", pub, "-o", idx, "--model", "tiny-test", "--published")
    assert r.exit_code == 0, r.output
    info = json.loads((idx / "info.json").read_text())
    assert info["n"] == 3 and info["space"]["model_declared"] == "tiny-test" and info["fingerprints"]
    r = _cli("search", idx, "-m", "tiny-test", "-q", "a river", "-k", "2", "-o", tmp_path / "hits.csv")
    assert r.exit_code == 0, r.output
    import pandas as pd

    hits = pd.read_csv(tmp_path / "hits.csv")
    uids = set(pq.read_table(pub).column("unique_id").to_pylist())
    assert len(hits) == 2 and set(hits["id"]) <= uids and hits["timestamp"].notna().all()
    r = _cli("search", pub, "-m", "tiny-test", "-q", "a river")
    assert r.exit_code == 2 and "--published" in r.output
    r = _cli("search", pub, "-m", "tiny-test", "-q", "a river", "--published", "-k", "3", "-o", tmp_path / "h2.csv")
    assert r.exit_code == 0, r.output
    direct = pd.read_csv(tmp_path / "h2.csv")
    assert list(direct["id"][:2]) == list(hits["id"])  # the same ranking as the index's
