"""Scene reading: sources (band folders incl. SAFE, multi-band GeoTIFF, STAC), the window grid, windowed reads
with resampling and margins, nodata/cloud skips and bad input naming the file, band or window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from fixtures_rasters import truncate_copy
from fixtures_scenes import RES, make_multiband, make_scene_folder, make_stac_item, pattern, write_band

from spectraclip.io.readers import read_sample
from spectraclip.io.scene import SceneError, SceneReader, open_scene, window_grid

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_scene_folder(tmp_path_factory.mktemp("scenes"), "oscd")


def test_band_folder_opens_on_the_finest_grid(folder):
    sc = open_scene(folder)
    assert sc.bands.names == tuple(RES)  # catalog order, all 13
    assert (sc.height, sc.width) == (300, 300)
    assert RES[sc.grid_band] == 10 and sc.crs == "EPSG:32633"
    assert sc.transform[0] == 10.0


def test_windowed_read_matches_a_whole_read(folder):
    """Coarse bands resampled per window (with a margin) give the whole-scene resampled values inside."""
    sc = open_scene(folder)
    whole = read_sample(folder)
    with SceneReader(sc, margin=8) as reader:
        for w in window_grid(sc.height, sc.width, 64, 32)[5:8]:
            got = reader.read(w)
            ref = whole.pixels[:, w.row:w.row + 64, w.col:w.col + 64]
            np.testing.assert_allclose(got.sample.pixels, ref, atol=1.0)
            assert got.sample.meta["window"]["row"] == w.row
            assert got.sample.transform[2] == sc.transform[2] + 10 * w.col
            assert got.sample.transform[5] == sc.transform[5] - 10 * w.row


def test_safe_layout_with_resolution_folders(tmp_path):
    safe = make_scene_folder(tmp_path, "S2B_MSIL2A", bands=("B02", "B03", "B04", "B05", "B8A", "B01"), layout="safe")
    # an L2A SAFE also holds 20 m and 60 m versions of the 10 m bands: the finest one must win
    r20 = next(safe.glob("GRANULE/*/IMG_DATA/R20m"))
    write_band(r20 / "T33UXP_20240101_B02_20m.tif", pattern("B02", 150, 150, 20), 20)
    write_band(r20 / "T33UXP_20240101_SCL_20m.tif", np.full((150, 150), 4, np.uint8), 20)
    sc = open_scene(safe)
    assert set(sc.bands.names) == {"B01", "B02", "B03", "B04", "B05", "B8A"}
    assert sc.sources["B02"].path.endswith("_B02_10m.tif")
    assert sc.scl is not None and sc.scl.path.endswith("_SCL_20m.tif")
    assert (sc.height, sc.width) == (300, 300)


def test_cloudy_windows_are_skipped_with_an_scl(tmp_path):
    folder = make_scene_folder(tmp_path, "cl", bands=("B02", "B03", "B04"), size10=128)
    scl = np.full((64, 64), 4, np.uint8)
    scl[:32, :32] = 9  # high-probability cloud over the top-left 320 m
    write_band(tmp_path / "SCL.tif", scl, 20)
    sc = open_scene(folder, scl=tmp_path / "SCL.tif")
    windows = window_grid(128, 128, 64, 64)
    with SceneReader(sc) as r:
        got = [r.read(w) for w in windows]
    assert [g.skipped for g in got] == ["cloud", None, None, None]


def test_multiband_geotiff_and_band_selection(tmp_path):
    path = make_multiband(tmp_path / "s.tif", ("B04", "B03", "B02", "B08"), size=128)
    sc = open_scene(path, "B02,B08")
    assert sc.bands.names == ("B02", "B08")
    with SceneReader(sc) as r:
        got = r.read(window_grid(128, 128, 32)[0])
    np.testing.assert_array_equal(got.sample.pixels[1], pattern("B08", 128, 128, 10)[:32, :32])


def test_stac_item_assets_by_eo_bands(tmp_path, folder):
    item = make_stac_item(folder, folder / "item.json")
    sc = open_scene(item)
    assert sc.bands.names == tuple(RES) and sc.kind == "stac"
    with SceneReader(sc) as r:
        assert r.read(window_grid(300, 300, 64)[0]).sample is not None


def test_stac_asset_that_does_not_resolve_names_band_and_href(tmp_path, folder):
    item = make_stac_item(folder, tmp_path / "item.json", missing="B05")
    with pytest.raises(SceneError, match=r"band B05.*does-not-exist.tif"):
        open_scene(item)


def test_window_grid_covers_the_scene_flush_with_the_edges():
    ws = window_grid(100, 130, 32)  # stride defaults to half a tile
    cover = np.zeros((100, 130), int)
    for w in ws:
        cover[w.row:w.row + w.height, w.col:w.col + w.width] += 1
    assert cover.min() >= 1
    assert max(w.row for w in ws) == 100 - 32 and max(w.col for w in ws) == 130 - 32
    assert sorted({w.row for w in ws})[:3] == [0, 16, 32]
    assert [w.index for w in ws] == list(range(len(ws)))


def test_scene_smaller_than_one_tile_is_an_error():
    with pytest.raises(SceneError, match=r"20x50 pixels, smaller than one 32-pixel window.*--tile"):
        window_grid(20, 50, 32)


def test_band_with_another_crs_names_the_file(tmp_path):
    folder = make_scene_folder(tmp_path, "crs", bands=("B02", "B03", "B04"), size10=64)
    bad = folder / "S2A_MSIL1C_T33UXP_B03.tif"
    write_band(bad, pattern("B03", 64, 64, 10), 10, crs="EPSG:32632")
    with pytest.raises(SceneError, match=r"B03\.tif: band B03 is in EPSG:32632"):
        open_scene(folder)


def test_band_on_another_grid_names_the_file(tmp_path):
    folder = make_scene_folder(tmp_path, "grid", bands=("B02", "B03", "B05"), size10=64)
    write_band(folder / "S2A_MSIL1C_T33UXP_B05.tif", pattern("B05", 32, 32, 20), 20, origin=(500640.0, 5000000.0))
    with pytest.raises(SceneError, match=r"B05\.tif: band B05 covers"):
        open_scene(folder)


def test_missing_band_is_named(folder):
    sc = open_scene(folder)
    with pytest.raises(SceneError, match="no band VV"):
        sc.select("B02,VV")
    with pytest.raises(SceneError, match="no file for band"):
        open_scene(folder, "B02,VV")


def test_nodata_windows_are_skipped_and_nan_windows_follow_the_policy(tmp_path):
    arr = np.stack([pattern(b, 96, 96, 10) for b in ("B02", "B03", "B04")]).astype("float32")
    arr[:, :32, :32] = np.nan  # one whole window of NaN
    arr[0, 40, 40] = np.nan  # one NaN pixel inside another window
    path = tmp_path / "nan.tif"
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=3, dtype="float32", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:
        dst.write(arr)
        for i, b in enumerate(("B02", "B03", "B04"), start=1):
            dst.set_band_description(i, b)
    sc = open_scene(path)
    ws = window_grid(96, 96, 32, 32)
    with SceneReader(sc, nodata="error") as r:
        got = {w.index: r.read(w) for w in ws}
    assert got[0].skipped == "nodata"
    assert got[4].skipped == "error" and "window 4" in got[4].message and "B02=1" in got[4].message
    assert all(got[i].sample is not None for i in (1, 2, 3, 5, 6, 7, 8))
    with SceneReader(sc, nodata="fill") as r:
        filled = r.read(ws[4])
    assert np.isfinite(filled.sample.pixels).all() and not filled.valid[40 - 32, 40 - 32]


def test_truncated_cog_block_skips_that_window_only(tmp_path):
    from rasterio.shutil import copy as rio_copy

    src = make_multiband(tmp_path / "full.tif", ("B02", "B03", "B04"), size=256)
    cog = tmp_path / "scene_cog.tif"
    rio_copy(src, cog, driver="COG", compress="deflate", blocksize=64, overviews="none")
    cut = truncate_copy(cog, tmp_path / "cut.tif", keep=0.8)  # the header is first in a COG: the tail blocks go
    sc = open_scene(cut)
    with SceneReader(sc) as r:
        got = [r.read(w) for w in window_grid(256, 256, 64, 64)]
    errors = [g for g in got if g.skipped == "error"]
    assert errors and len(errors) < len(got)
    assert "cut.tif" in errors[0].message and "window" in errors[0].message and "B02" in errors[0].message


@pytest.mark.skipif(not (DATA / "oscd-mini").exists(), reason="shared data not present")
def test_oscd_city_band_folder_on_its_10m_grid():
    folder = DATA / "oscd-mini" / "images" / "bercy" / "imgs_1"
    sc = open_scene(folder)
    assert (sc.height, sc.width) == (395, 360) and sc.crs == "EPSG:4326" and len(sc.bands) == 13
    with rasterio.open(sc.sources["B02"].path) as ds:
        assert sc.transform == tuple(ds.transform)[:6]
