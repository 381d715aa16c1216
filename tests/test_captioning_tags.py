"""Overture tags on a generated Overture-schema GeoParquet around the real L2A tiles."""

from __future__ import annotations

import json

import pytest
from fixtures_overture import EXPECTED, L2A_DIR, make_overture, tiles

from spectraclip.captioning.tags import (
    Footprint,
    LocalOvertureSource,
    OvertureMapsSource,
    collect_tags,
    footprint_of,
    footprints_from_table,
    open_source,
    read_tags,
    tags_for_footprint,
    write_tags,
)

pytestmark = pytest.mark.skipif(not L2A_DIR.exists(), reason=f"real L2A tiles not found at {L2A_DIR}")


@pytest.fixture(scope="module")
def overture_dir(tmp_path_factory):
    return make_overture(tmp_path_factory.mktemp("overture"))


@pytest.fixture(scope="module")
def footprints():
    return [footprint_of(p) for p in tiles()]


def test_footprints_come_from_the_raster_crs_and_transform(footprints):
    assert len(footprints) == 5
    fp = footprints[0]
    assert fp.id == tiles()[0].stem and fp.crs.startswith("EPSG:327")
    assert fp.bounds[2] - fp.bounds[0] == pytest.approx(2240.0)


def test_tags_are_clipped_filtered_and_sorted_per_tile(overture_dir, footprints):
    df = collect_tags(footprints, LocalOvertureSource(overture_dir), progress=False)
    assert sorted(df.image_id.unique()) == sorted(fp.id for fp in footprints)
    for k, fp in enumerate(footprints):
        rows = df[df.image_id == fp.id].sort_values("rank")
        got = list(zip(rows.overture_type, rows["class"], strict=True))
        # tiny polygon (1,600 m²), short line (30 m), unnamed point and the outside polygon are gone
        assert got == [(t, c) for t, c, _, _ in EXPECTED]
        for (_, _, area, length), (_, r) in zip(EXPECTED, rows.iterrows(), strict=True):
            assert r.area_m2 == pytest.approx(area, rel=2e-3)  # forest clipped from 1500 to 500 m wide
            assert r.length_m == pytest.approx(length, rel=2e-3)
        assert list(rows["rank"]) == list(range(len(rows)))
        names = dict(zip(rows.overture_type, rows.name, strict=True))
        assert names["water"] == "Lago Verde" and names["place"] == f"Testville {k}"
        assert names["segment"] == "Route 7"
        water = rows[rows.overture_type == "water"].iloc[0]
        assert list(water["flags"]) == ["is_intermittent"]
        props = json.loads(water.tags_json)
        assert props["is_salt"] is False and props["is_intermittent"] is True
        assert props["subtype"] == "lake" and props["sources"][0]["dataset"] == "OpenStreetMap"
        assert water.position == "south-west"
        assert water.cover_fraction == pytest.approx(360_000 / 2240**2, rel=2e-3)


def test_min_area_is_configurable(overture_dir, footprints):
    rows = tags_for_footprint(footprints[0], LocalOvertureSource(overture_dir), min_area_m2=5000)
    classes = [r["class"] for r in rows]
    assert "farmland" not in classes and "house" in classes  # 3,600 < 5,000 <= 6,400


def test_single_file_source_with_type_column(tmp_path, footprints):
    path = make_overture(tmp_path, single_file=True)
    rows = tags_for_footprint(footprints[1], LocalOvertureSource(path))
    assert [(r["overture_type"], r["class"]) for r in rows] == [(t, c) for t, c, _, _ in EXPECTED]


def test_reprojection_from_a_lonlat_footprint(tmp_path, overture_dir, footprints):
    fp = footprints[2]
    west, south, east, north = fp.bounds_wgs84()
    table = tmp_path / "boxes.csv"
    table.write_text(f"id,minx,miny,maxx,maxy\nll,{west},{south},{east},{north}\n")
    (geo,) = footprints_from_table(table)
    assert geo.crs == "EPSG:4326"
    rows = tags_for_footprint(geo, LocalOvertureSource(overture_dir))
    lake = next(r for r in rows if r["class"] == "lake")
    assert lake["area_m2"] == pytest.approx(360_000, rel=0.01)  # measured in metres (local UTM)
    assert next(r for r in rows if r["class"] == "primary")["length_m"] == pytest.approx(1400, rel=0.01)


def test_tags_table_round_trip_keeps_images_without_tags(tmp_path, overture_dir, footprints):
    far = Footprint("nowhere", "EPSG:4326", (10.0, 10.0, 10.01, 10.01))
    df = collect_tags([footprints[0], far], LocalOvertureSource(overture_dir), progress=False)
    out = write_tags(df, tmp_path / "tags.parquet", source="test")
    tags = read_tags(out)
    assert tags["nowhere"] == []
    first = tags[footprints[0].id]
    assert [r["rank"] for r in first] == list(range(6))
    assert first[1]["tags"]["names"]["primary"] == "Lago Verde" and first[1]["flags"] == ["is_intermittent"]


def test_source_specs():
    remote = open_source("overture:2025-01-22.0")
    assert isinstance(remote, OvertureMapsSource) and remote.release == "2025-01-22.0"
    assert open_source("overture").release is None
    with pytest.raises(Exception, match="not found"):
        open_source("/no/such/overture")


def test_failed_lookup_is_reported_not_recorded_as_no_tags(tmp_path, footprints):
    class Offline:
        description = "offline"

        def features(self, overture_type, bbox):
            raise OSError("no network")

    errors = []
    df = collect_tags(footprints[:2], Offline(), progress=False, on_error=lambda fp, e: errors.append(fp.id))
    assert errors == [fp.id for fp in footprints[:2]] and df.attrs["image_ids"] == []
    assert read_tags(write_tags(df, tmp_path / "t.parquet")) == {}
