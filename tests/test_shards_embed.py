"""`embed --shard I/N`, `embed-merge` and `embed --windows` (Major TOM rows), without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.distributed.errors import ShardError
from spectraclip.distributed.merge import merge_parts
from spectraclip.distributed.shards import ShardSpec, parse_shard, shard_ids
from spectraclip.embeddings import read_embeddings
from spectraclip.errors import FingerprintMismatchError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
EUROSAT = DATA / "eurosat-ms-mini" / "test"
CHIPS = [str(EUROSAT / "Forest"), str(EUROSAT / "River")]  # 11 real patches, two folders
S2 = DATA / "s2-l2a-examples"
needs_data = pytest.mark.skipif(not EUROSAT.is_dir() or not S2.is_dir(), reason="needs ../shared/data")
EMBED = ["-m", "tiny-test", "--bands", "eurosat-ms", "--workers", "0", "--device", "cpu", "--precision", "fp32",
         "--batch-size", "8"]


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def _fails(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    return " ".join(res.output.split())


def test_parse_shard_and_slices_partition_the_sorted_ids():
    assert parse_shard("2/5") == ShardSpec(2, 5)
    for bad in ("0/4", "5/4", "1-4", "x"):
        with pytest.raises(ShardError, match="--shard"):
            parse_shard(bad)
    ids = [f"item{i:03d}" for i in range(23)][::-1]  # listing order does not matter
    slices = [shard_ids(ids, ShardSpec(i, 4)) for i in range(1, 5)]
    assert sum(slices, []) == sorted(ids)  # every id once, contiguous blocks in order
    assert {len(s) for s in slices} <= {5, 6}  # balanced to one item
    few = [shard_ids(ids[:2], ShardSpec(i, 4)) for i in range(1, 5)]  # more shards than items: some empty
    assert sum(few, []) == sorted(ids[:2]) and few.count([]) == 2


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The single-process table of the EuroSAT test split and its two shards, from the CLI."""
    out = tmp_path_factory.mktemp("shards")
    _run(["embed", *CHIPS, "-o", str(out / "full.parquet"), *EMBED])
    for i in (1, 2):
        log = _run(["embed", *CHIPS, "-o", str(out / f"part-{i}.parquet"), "--shard", f"{i}/2", *EMBED])
        assert f"shard {i}/2: {5 + i % 2} of 11 items" in log
    return out


@needs_data
def test_shards_merge_to_the_single_process_table(sharded, tmp_path):
    log = _run(["embed-merge", str(sharded / "part-1.parquet"), str(sharded / "part-2.parquet"),
                "-o", str(tmp_path / "merged.parquet")])
    assert "11 embeddings from 2 part(s) (2 shards)" in log
    full, merged = read_embeddings(sharded / "full.parquet"), read_embeddings(tmp_path / "merged.parquet")
    assert merged.ids == sorted(full.ids)  # shard order is the sorted id order
    row = {id_: i for i, id_ in enumerate(full.ids)}
    # other batches than the single run's: equal up to float32 rounding of batched matmuls
    np.testing.assert_allclose(merged.vectors, full.vectors[[row[i] for i in merged.ids]], rtol=0, atol=1e-6)
    assert merged.fingerprints == full.fingerprints
    assert "shard" not in merged.metadata and merged.metadata["shards"] == 2
    assert sorted(merged.columns) == sorted(full.columns)
    # index build reads the merged table directly
    pytest.importorskip("faiss")
    from spectraclip.index.build import build_index

    report = build_index([tmp_path / "merged.parquet"], tmp_path / "index")
    assert report.total == 11


@needs_data
def test_merge_refuses_missing_shards_duplicates_and_mixed_models(sharded, tmp_path):
    p1, p2 = sharded / "part-1.parquet", sharded / "part-2.parquet"
    msg = _fails(["embed-merge", str(p1), "-o", str(tmp_path / "m.parquet")])
    assert "1 of 2 shards missing: 2/2" in msg
    report = merge_parts([p1], tmp_path / "m.parquet", allow_missing=True)
    assert report.rows == 6 and report.missing_shards == [2]
    with pytest.raises(ShardError, match=r"6 item\(s\) appear in more than one part"):
        merge_parts([p1, p1, p2], tmp_path / "m.parquet")
    with pytest.raises(ShardError, match="not shards"):
        merge_parts([p1, p2, sharded / "full.parquet"], tmp_path / "m.parquet")
    # a shard embedded by another model: both fingerprints named, nothing written
    _run(["embed", *CHIPS, "-o", str(tmp_path / "other-2.parquet"), "--shard", "2/2", *EMBED,
          "-m", "tiny-minilm"])
    other = read_embeddings(tmp_path / "other-2.parquet").fingerprints
    mine = read_embeddings(p1).fingerprints
    with pytest.raises(FingerprintMismatchError) as err:
        merge_parts([p1, tmp_path / "other-2.parquet"], tmp_path / "mixed.parquet")
    assert other.model in str(err.value) and mine.model in str(err.value)
    assert not (tmp_path / "mixed.parquet").exists()


@needs_data
def test_window_rows_follow_the_major_tom_layout(tmp_path):
    import geopandas as gpd

    scene = S2 / "282D_485L_3_3.tif"  # 224 x 224, UTM: 49 windows of 32 px
    common = ["-m", "tiny-test", "--model-bands", "s2-l2a", "--bands", "s2-l2a", "--workers", "0", "--device",
              "cpu", "--precision", "fp32", "--windows", "--tile", "32"]
    _run(["embed", str(scene), "-o", str(tmp_path / "w.parquet"), *common])
    for i in (1, 2):
        _run(["embed", str(scene), "-o", str(tmp_path / f"w{i}.parquet"), "--shard", f"{i}/2", *common])
    _run(["embed-merge", str(tmp_path / "w1.parquet"), str(tmp_path / "w2.parquet"), "-o", str(tmp_path / "m.parquet")])
    gdf = gpd.read_parquet(tmp_path / "m.parquet")
    assert gdf.crs.to_epsg() == 4326 or gdf.crs.to_string() == "OGC:CRS84"
    assert len(gdf) == 49 and gdf["id"].is_unique
    assert set(gdf["product_id"]) == {"282D_485L_3_3"}
    assert gdf["utm_crs"].str.startswith("EPSG:32").all()
    row = gdf.set_index("id").loc["282D_485L_3_3:8"]  # grid row 1, col 1
    assert list(row["pixel_bbox"]) == [32, 32, 64, 64]
    assert row["geometry"].contains(gpd.points_from_xy([row["centre_lon"]], [row["centre_lat"]])[0])
    assert gdf.geometry.is_valid.all() and not gdf.geometry.is_empty.any()
    whole = read_embeddings(tmp_path / "w.parquet")
    assert sorted(whole.ids) == sorted(gdf["id"])


def test_window_timestamp_from_a_product_name(tmp_path):
    from fixtures_scenes import make_multiband

    from spectraclip.io.window_items import window_items

    path = make_multiband(tmp_path / "S2A_MSIL2A_20200612T103031_N0214_R108_T32TMT.tif", size=64)
    items = window_items([path], 32)
    assert [it.id for it in items] == [f"{path.stem}:{i}" for i in range(4)]
    assert items[0].timestamp == "2020-06-12T10:30:31Z"
    sample = items[3].read_sample("fill")
    assert sample.meta["product_id"] == path.stem and sample.meta["window"]["col"] == 32


def _part(path: Path, ids: list[str], shard: str, digest: str, columns: dict | None = None) -> Path:
    from spectraclip.embeddings import write_embeddings
    from spectraclip.identity import Fingerprints

    i, n = (int(x) for x in shard.split("/"))
    meta = {"dim": 4, "shard": shard, "shard_index": i, "shard_count": n, "shard_items": len(ids),
            "items_total": 4, "items_digest": digest}
    vectors = np.eye(4, dtype=np.float32)[: len(ids)]
    return write_embeddings(path, ids, vectors, columns, meta, fingerprints=Fingerprints("m0", "p0"))


def test_merge_refuses_other_listings_and_fills_columns_a_part_lacks(tmp_path):
    a = _part(tmp_path / "a.parquet", ["x1", "x2"], "1/2", "d1", {"labels": [["Forest"], ["River"]]})
    b = _part(tmp_path / "b.parquet", ["x3", "x4"], "2/2", "d2")
    with pytest.raises(ShardError, match="listed different items"):
        merge_parts([a, b], tmp_path / "m.parquet")
    b = _part(tmp_path / "b.parquet", ["x3", "x4"], "2/2", "d1")
    report = merge_parts([b, a], tmp_path / "m.parquet")  # given out of order: written in shard order
    merged = read_embeddings(tmp_path / "m.parquet")
    assert report.rows == 4 and merged.ids == ["x1", "x2", "x3", "x4"]
    assert merged.columns["labels"] == [["Forest"], ["River"], None, None]
    np.testing.assert_array_equal(merged.vectors[2], [1, 0, 0, 0])
