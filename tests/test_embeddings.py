"""The embeddings table: schema, round trip, resumable part writing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spectraclip.embeddings import (
    EmbeddingsTableError,
    PartWriter,
    is_embeddings_table,
    read_embeddings,
    write_embeddings,
)


def test_round_trip_keeps_vectors_columns_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(5, 7)).astype(np.float32)
    path = write_embeddings(tmp_path / "e.parquet", [f"a{i}" for i in range(5)], vec,
                            columns={"path": [f"/x/{i}.tif" for i in range(5)], "lon": [1.0, 2, 3, 4, 5]},
                            metadata={"bands": "B04,B03,B02", "model": {"arch": "tiny"}})
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("vector").type)
    assert schema.field("vector").type.value_type == pa.float32()
    emb = read_embeddings(path)
    assert emb.ids == [f"a{i}" for i in range(5)]
    np.testing.assert_array_equal(emb.vectors, vec)
    assert emb.columns["path"][3] == "/x/3.tif"
    assert emb.metadata["bands"] == "B04,B03,B02"
    assert emb.metadata["model"] == {"arch": "tiny"}
    assert emb.dim == 7 and is_embeddings_table(path)


def test_mismatched_lengths_and_bad_files_are_named(tmp_path):
    with pytest.raises(EmbeddingsTableError, match="3 ids"):
        write_embeddings(tmp_path / "e.parquet", ["a", "b", "c"], np.zeros((2, 4)))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(EmbeddingsTableError, match="bad.parquet"):
        read_embeddings(bad)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    assert not is_embeddings_table(other)
    with pytest.raises(EmbeddingsTableError, match="needs `id` and `vector`"):
        read_embeddings(other)


def test_part_writer_resumes_and_deduplicates(tmp_path):
    out = tmp_path / "emb.parquet"
    w = PartWriter(out, metadata={"bands": "rgb"})
    w.write(["a", "b"], np.ones((2, 3), np.float32), {"path": ["pa", "pb"]})
    # a crash here leaves the finished part; debris from an unfinished write is dropped on restart
    (w.parts_dir / "part-00009.parquet").write_bytes(b"half a file")
    w2 = PartWriter(out, metadata={"bands": "rgb"})
    assert w2.done_ids == {"a", "b"}
    w2.write(["c"], np.full((1, 3), 2, np.float32), {"path": ["pc"]})
    w2.write(["a"], np.full((1, 3), 9, np.float32), {"path": ["dup"]})  # duplicate id: first wins
    table = w2.finish()
    assert table.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(table.vectors[0], [1, 1, 1])
    assert table.columns["path"] == ["pa", "pb", "pc"]
    assert not w2.parts_dir.exists()
    assert read_embeddings(out).metadata["bands"] == "rgb"


def test_part_writer_refuses_to_resume_another_embedding_space(tmp_path):
    out = tmp_path / "emb.parquet"
    w = PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 8}, "sources": ["a"]})
    w.write(["a"], np.ones((1, 3), np.float32))
    with pytest.raises(EmbeddingsTableError, match=r"different bands \('rgb', now 's2-l1c'\).*emb.parquet.parts"):
        PartWriter(out, metadata={"bands": "s2-l1c", "model_config": {"width": 8}})
    with pytest.raises(EmbeddingsTableError, match="different model_config"):
        PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 16}})
    # the run description (sources, failures) may change on resume; new keys are fine too
    again = PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 8}, "sources": ["a", "b"],
                                      "failed": [["x", "bad"]], "note": "new"})
    assert again.done_ids == {"a"}


# ------------------------------------------------------------------ GeoParquet, Major TOM columns, fingerprints
UTM32N = "EPSG:32632"
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _meta(col: int, row: int, size: int = 64, res: float = 10.0, crs: str | None = UTM32N, **extra) -> dict:
    """A georeference dict as `inference.georef_meta` makes it: a chip at pixel (col, row) of a UTM grid."""
    left, top = 500000 + col * res, 5000000 - row * res
    meta = {"path": None, "height": size, "width": size, "crs": crs,
            "transform": [res, 0, left, 0, -res, top], "bounds": [left, top - size * res, left + size * res, top],
            "lon": None, "lat": None}
    meta.update(extra)
    return meta


def test_major_tom_columns_from_georeference():
    from shapely import from_wkb

    from spectraclip.geo import major_tom_columns

    metas = [_meta(0, 0, date="2021-06-03"), _meta(0, 0, window=[128, 64, 64, 64]),
             {"height": 8, "width": 8, "crs": None, "bounds": None}]
    cols = major_tom_columns(metas)
    assert cols["utm_crs"] == [UTM32N, UTM32N, None]
    assert cols["pixel_bbox"] == [[0, 0, 64, 64], [128, 64, 192, 128], [0, 0, 8, 8]]
    assert cols["timestamp"][0] == datetime(2021, 6, 3, tzinfo=UTC) and cols["timestamp"][1] is None
    poly = from_wkb(cols["geometry"][0])
    # 500000 E on the central meridian of zone 32 (9 deg E); 5000000 N is about 45.15 deg N
    assert poly.geom_type == "Polygon" and poly.exterior.is_ccw
    minx, miny, maxx, maxy = poly.bounds
    assert minx == pytest.approx(9.0, abs=1e-9) and 45.1 < miny < maxy < 45.2
    assert (maxx - minx) * 111_320 * np.cos(np.radians(45.15)) == pytest.approx(640, rel=0.01)  # 64 px x 10 m
    assert cols["centre_lon"][0] == pytest.approx(poly.centroid.x) and cols["centre_lat"][0] == pytest.approx(
        poly.centroid.y)
    assert cols["geometry"][2] is None and cols["centre_lat"][2] is None


def test_utm_crs_only_for_utm_zones():
    from spectraclip.geo import utm_crs

    assert utm_crs("EPSG:32722") == "EPSG:32722" and utm_crs("EPSG:32601") == "EPSG:32601"
    assert utm_crs("EPSG:4326") is None and utm_crs("EPSG:3857") is None and utm_crs(None) is None


def test_geoparquet_is_opened_by_geopandas_with_null_geometries(tmp_path):
    import geopandas as gpd

    from spectraclip.geo import major_tom_columns

    metas = [_meta(0, 0), _meta(1000, 500), {"height": 8, "width": 8}]
    path = write_embeddings(tmp_path / "g.parquet", ["a", "b", "c"], np.eye(3, 4, dtype=np.float32),
                            columns=major_tom_columns(metas))
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"] and "crs" not in col  # CRS84
    assert col["orientation"] == "counterclockwise"
    assert all(g is None or g.exterior.is_ccw for g in gpd.read_parquet(path).geometry)
    frame = gpd.read_parquet(path)
    assert frame.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
    assert frame.geometry.iloc[2] is None and frame.geometry.iloc[1].geom_type == "Polygon"
    assert col["bbox"] == pytest.approx(list(frame.total_bounds))
    assert frame.geometry.iloc[1].centroid.x > frame.geometry.iloc[0].centroid.x  # 10 km further east
    assert list(frame["pixel_bbox"].iloc[0]) == [0, 0, 64, 64]
    # a table where no item has a georeference is still valid GeoParquet
    bare = write_embeddings(tmp_path / "n.parquet", ["c"], np.ones((1, 4), np.float32),
                            columns=major_tom_columns([{"height": 8, "width": 8}]))
    assert gpd.read_parquet(bare).geometry.isna().all()
    assert pq.read_schema(bare).field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_fingerprints_in_tables_and_parts(tmp_path):
    from spectraclip.identity import Fingerprints

    fp = Fingerprints("m" * 16, "p" * 16)
    path = write_embeddings(tmp_path / "e.parquet", ["a"], np.ones((1, 3)), fingerprints=fp)
    assert read_embeddings(path).fingerprints == fp
    old = write_embeddings(tmp_path / "old.parquet", ["a"], np.ones((1, 3)))
    assert read_embeddings(old).fingerprints is None
    from spectraclip.geo import major_tom_columns

    out = tmp_path / "parts.parquet"
    w = PartWriter(out, metadata={"bands": "rgb"}, fingerprints=fp)
    w.write(["a"], np.ones((1, 3), np.float32), major_tom_columns([_meta(0, 0)]))
    # resuming with another model's fingerprint is refused: one table holds one embedding space
    with pytest.raises(EmbeddingsTableError, match="different model_fingerprint"):
        PartWriter(out, metadata={"bands": "rgb"}, fingerprints=Fingerprints("x" * 16, "p" * 16))
    # nor can parts of a run that recorded no fingerprint be vouched for by one that does
    legacy = PartWriter(tmp_path / "legacy.parquet", metadata={"bands": "rgb"})
    legacy.write(["a"], np.ones((1, 3), np.float32))
    with pytest.raises(EmbeddingsTableError, match="recorded no model_fingerprint.*legacy.parquet.parts"):
        PartWriter(tmp_path / "legacy.parquet", metadata={"bands": "rgb"}, fingerprints=fp)
    w2 = PartWriter(out, metadata={"bands": "rgb"}, fingerprints=fp)
    w2.write(["b"], np.ones((1, 3), np.float32), major_tom_columns([_meta(5000, 0)]))
    table = w2.finish()
    assert table.fingerprints == fp
    bbox = json.loads(pq.read_schema(out).metadata[b"geo"])["columns"]["geometry"]["bbox"]
    import geopandas as gpd

    assert bbox == pytest.approx(list(gpd.read_parquet(out).total_bounds))  # over both parts, not the first


def test_embed_to_table_records_identity_and_major_tom_columns(tmp_path):
    import geopandas as gpd
    from fixtures_datasets import make_eurosat

    from spectraclip.identity import Fingerprints, preprocessing_spec
    from spectraclip.inference import embed_to_table
    from spectraclip.models.loading import load_model

    root = make_eurosat(tmp_path / "es", per_class=1, classes=("Forest", "River"))
    model = load_model("tiny-test", bands="eurosat-ms")
    table, failed, _ = embed_to_table(model, sorted(root.rglob("*.tif")), tmp_path / "e.parquet",
                                      bands="eurosat-ms", progress=False)
    assert not failed and table.fingerprints == Fingerprints.of(model)
    assert table.preprocessing == preprocessing_spec(model)
    assert table.columns["utm_crs"] == ["EPSG:32632"] * 2 and table.columns["pixel_bbox"][0] == [0, 0, 16, 16]
    assert table.columns["centre_lat"][0] == pytest.approx(table.columns["lat"][0])
    assert len(gpd.read_parquet(tmp_path / "e.parquet")) == 2


@pytest.mark.skipif(not (REAL_DATA / "s2-l2a-examples").is_dir(), reason="../shared/data not available")
def test_real_major_tom_tiles_land_in_their_grid_rows(tmp_path):
    """The L2A examples come from Major TOM, whose file names give the grid cell: row 282D is ~282 x 10 km
    south of the equator, column 485L west of the meridian; their footprints must agree."""
    import geopandas as gpd

    from spectraclip.inference import encode_images
    from spectraclip.models.loading import load_model

    files = sorted((REAL_DATA / "s2-l2a-examples").glob("*.tif"))
    model = load_model("tiny-test", bands="s2-l2a").set_input_options(allow_resize=True)  # 32-px test model
    enc = encode_images(model, files, bands="s2-l2a", progress=False)
    path = write_embeddings(tmp_path / "real.parquet", enc.ids, enc.vectors, enc.columns())
    frame = gpd.read_parquet(path)
    assert len(frame) == len(files) == 5
    for _, row in frame.iterrows():
        grid_row, grid_col = row["id"].split("_")[:2]
        lat_sign = 1 if grid_row.endswith("U") else -1
        assert np.sign(row["centre_lat"]) == lat_sign and np.sign(row["centre_lon"]) == (
            1 if grid_col.endswith("R") else -1)
        assert abs(row["centre_lat"]) == pytest.approx(int(grid_row[:-1]) * 10 / 111.32, abs=0.15)
        assert row["utm_crs"].startswith("EPSG:327" if lat_sign < 0 else "EPSG:326")
        assert row.geometry.contains(gpd.points_from_xy([row["centre_lon"]], [row["centre_lat"]])[0])
        assert list(row["pixel_bbox"]) == [0, 0, 224, 224]
        assert row.geometry.area * 111.32**2 * np.cos(np.radians(row["centre_lat"])) == pytest.approx(2.24**2, rel=0.02)


def test_footprint_centre_bounds_and_time_are_derived_once():
    """geo derives bounds, centre and time; the encoder's columns and the index metadata use the same values."""
    from datetime import UTC, date, datetime

    import rasterio.transform

    from spectraclip import geo
    from spectraclip.bands import BandSet
    from spectraclip.embeddings import EmbeddingsTable
    from spectraclip.index.metadata import metadata_from_table
    from spectraclip.inference import georef_meta
    from spectraclip.io.sample import Sample

    tr = tuple(rasterio.transform.from_origin(500000, 5000000, 10, 10))[:6]
    bounds = geo.native_bounds(tr, 32, 32)
    assert bounds == [500000.0, 4999680.0, 500320.0, 5000000.0]
    lon, lat = geo.footprint_centre("EPSG:32633", bounds)
    assert lon == pytest.approx(15.00204, abs=1e-4) and lat == pytest.approx(45.1529, abs=1e-3)
    poly = geo.footprint_wgs84("EPSG:32633", bounds)
    assert geo.footprint_centre(footprint=poly) == pytest.approx((lon, lat), abs=1e-5)
    assert geo.wgs84_bbox(footprint=poly) == pytest.approx(geo.wgs84_bbox("EPSG:32633", bounds), abs=1e-6)
    s = Sample(np.zeros((3, 32, 32), np.float32), BandSet.parse("B02,B03,B04"), "x", crs="EPSG:32633", transform=tr,
               meta={"sensing_time": "2020-06-12T10:30:31"})
    meta = georef_meta(s)
    assert meta["bounds"] == bounds and (meta["lon"], meta["lat"]) == (lon, lat)
    when = datetime(2020, 6, 12, 10, 30, 31, tzinfo=UTC)
    assert geo.item_timestamp(meta) == when  # every time key the encoder keeps is one geo reads
    assert geo.parse_time("2020-06-12T10:30:31Z") == geo.parse_time(when.timestamp()) == when
    assert geo.parse_time(date(2020, 6, 12)) == datetime(2020, 6, 12, tzinfo=UTC) and geo.parse_time("x") is None
    # an older table with only native bounds: the index derives the same centre
    table = EmbeddingsTable(ids=["x"], vectors=np.ones((1, 4), np.float32),
                            columns={"bounds": [bounds], "crs": ["EPSG:32633"], "date": ["2020-06-12T10:30:31Z"]},
                            metadata={})
    row = metadata_from_table(table, "t").to_pylist()[0]
    assert (row["lon"], row["lat"]) == pytest.approx((lon, lat)) and row["timestamp"] == when


def test_one_merge_for_a_run_s_parts_and_for_embed_merge(tmp_path):
    """PartWriter.finish and embed-merge both write through embeddings.merge_tables: same rows, columns, bbox."""
    from spectraclip.distributed.merge import merge_parts
    from spectraclip.embeddings import PartWriter, merge_tables
    from spectraclip.geo import major_tom_columns

    metas = [_meta(0, 0), _meta(64, 0), _meta(0, 64, extra_col="x")]
    w = PartWriter(tmp_path / "run.parquet", metadata={"dim": 4})
    for i, m in enumerate(metas):
        cols = major_tom_columns([m])
        if "extra_col" in m:
            cols["extra_col"] = ["x"]
        w.write([f"i{i}"], np.full((1, 4), i, np.float32), cols)
    parts = sorted(w.parts_dir.glob("part-*.parquet"))
    copies = []
    for p in parts:
        copies.append(tmp_path / "copies" / p.name)
        copies[-1].parent.mkdir(exist_ok=True)
        copies[-1].write_bytes(p.read_bytes())
    run = w.finish(order=["i2", "i0", "i1"])
    merge_parts(copies, tmp_path / "merged.parquet", force=True)
    a, b = pq.read_table(tmp_path / "run.parquet"), pq.read_table(tmp_path / "merged.parquet")
    assert run.ids == ["i2", "i0", "i1"] and b.column("id").to_pylist() == ["i0", "i1", "i2"]
    assert a.schema.names == b.schema.names and a.column("extra_col").to_pylist() == ["x", None, None]
    geo_a, geo_b = (json.loads(t.schema.metadata[b"geo"]) for t in (a, b))
    assert geo_a == geo_b and geo_a["columns"]["geometry"]["bbox"][0] < geo_a["columns"]["geometry"]["bbox"][2]
    assert merge_tables(copies + copies[:1], tmp_path / "dup.parquet") == 3  # an id twice is kept once
