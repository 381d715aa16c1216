"""Reading rasters into Samples: every layout of ../shared/data, synthetic GeoTIFFs, arrays and bad input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fixtures_rasters import (
    CRS,
    DATA,
    make_band_folder,
    random_array,
    transform_for,
    truncate_copy,
    write_raw_geotiff,
)

from spectraclip.bands import PRESETS, BandSet
from spectraclip.io import (
    BandOrderError,
    CorruptRasterError,
    InvalidPixelsError,
    NoRastersError,
    RasterError,
    find_items,
    iter_samples,
    read_sample,
    write_geotiff,
)
from spectraclip.io.bandfolder import band_name_from_filename

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared sample data not found at {DATA}")


def _raw(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band).astype(np.float32)


# ---------------------------------------------------------------- real data: every layout


@needs_data
def test_eurosat_ms_file_with_preset():
    path = next((DATA / "eurosat-ms-mini" / "train" / "Forest").glob("*.tif"))
    s = read_sample(path, "eurosat-ms")
    assert s.shape == (13, 64, 64) and s.pixels.dtype == np.float32
    assert s.bands.names[-1] == "B8A" and s.bands.names == PRESETS["eurosat-ms"]
    assert s.crs and s.crs.startswith("EPSG:326") and len(s.transform) == 6
    assert s.id == path.stem and s.path == str(path)
    assert 0 <= s.pixels.min() and s.pixels.max() < 30000 and 50 < s.pixels.mean() < 5000
    np.testing.assert_array_equal(s.pixels[12], _raw(path, 13))  # B8A is the 13th band in the file


@needs_data
def test_eurosat_without_bands_says_which_presets_fit():
    path = next((DATA / "eurosat-ms-mini" / "test" / "River").glob("*.tif"))
    with pytest.raises(BandOrderError) as e:
        read_sample(path)
    msg = str(e.value)
    assert path.name in msg and "13" in msg and "s2-l1c" in msg and "eurosat-ms" in msg


@needs_data
def test_eurosat_wrong_band_count_names_counts():
    path = next((DATA / "eurosat-ms-mini" / "test" / "River").glob("*.tif"))
    with pytest.raises(BandOrderError, match=r"13 band.*12") as e:
        read_sample(path, "s2-l2a")
    assert path.name in str(e.value)


@needs_data
def test_l2a_tiles():
    tiles = sorted((DATA / "s2-l2a-examples").glob("*.tif"))
    assert len(tiles) == 5
    for path in tiles:
        s = read_sample(path, "s2-l2a")
        assert s.shape == (12, 224, 224) and s.pixels.dtype == np.float32
        assert "B10" not in s.bands and s.bands.names[8] == "B8A"
        assert s.crs.startswith("EPSG:32") and s.transform[0] == pytest.approx(10.0)
        assert s.pixels.min() >= -1000 and s.pixels.max() <= 30000 and s.pixels.mean() > 0
        assert s.meta["dtype"] == "int16" and s.meta["nodata_fraction"] == 0.0


@needs_data
def test_bigearthnet_s2_band_folders_resampled_to_finest_grid():
    folders = sorted((DATA / "bigearthnet-mini" / "BigEarthNet-S2-Example").iterdir())
    assert len(folders) == 6
    for folder in folders:
        s = read_sample(folder)
        assert s.shape == (12, 120, 120) and s.pixels.dtype == np.float32
        assert s.bands == BandSet.parse("s2-l2a") and s.id == folder.name
        assert s.meta["grid_band"] == "B02" and {"B01", "B05", "B8A"} <= set(s.meta["resampled"])
        b02, b01 = (folder / f"{folder.name}_B02.tif"), (folder / f"{folder.name}_B01.tif")
        np.testing.assert_array_equal(s.pixels[s.bands.names.index("B02")], _raw(b02))
        assert s.pixels[0].mean() == pytest.approx(_raw(b01).mean(), rel=0.05)  # B01 60 m -> 10 m
        with rasterio.open(b02) as ds:
            assert s.transform == pytest.approx(tuple(ds.transform)[:6]) and s.crs == ds.crs.to_string()
        assert 0 <= s.pixels.min() and s.pixels.max() < 30000


@needs_data
def test_bigearthnet_folder_band_selection_by_name():
    folder = sorted((DATA / "bigearthnet-mini" / "BigEarthNet-S2-Example").iterdir())[0]
    full, rgb = read_sample(folder), read_sample(folder, "rgb")
    assert rgb.bands.names == ("B04", "B03", "B02") and rgb.shape == (3, 120, 120)
    np.testing.assert_array_equal(rgb.pixels, full.select("rgb").pixels)
    with pytest.raises(BandOrderError, match="B10") as e:
        read_sample(folder, "s2-l1c")
    assert folder.name in str(e.value)


@needs_data
def test_bigearthnet_s1_band_folders():
    folders = sorted((DATA / "bigearthnet-mini" / "BigEarthNet-S1-Example").iterdir())
    assert len(folders) == 6
    for folder in folders:
        s = read_sample(folder)
        assert s.bands.names == ("VV", "VH") and s.shape == (2, 120, 120) and s.pixels.dtype == np.float32
        assert -60 < s.pixels.min() and s.pixels.max() < 30 and s.crs.startswith("EPSG:32")


@needs_data
@pytest.mark.parametrize(("product", "count"), [("s1", 2), ("s2c", 13), ("s2a", 12)])
def test_ssl4eo_product_folders(product, count):
    folders = sorted((DATA / "ssl4eo-s12-mini" / product).glob("*/*"))
    assert len(folders) == 2
    for folder in folders:
        s = read_sample(folder)
        assert s.shape == (count, 264, 264) and s.pixels.dtype == np.float32 and s.crs == "EPSG:4326"
        assert s.id == folder.name
        if product == "s1":
            assert s.bands.names == ("VV", "VH") and s.pixels.max() < 30
        else:
            assert ("B10" in s.bands) == (product == "s2c") and s.meta["grid_band"] == "B02"
            assert s.shape[1:] == (264, 264) and 0 <= s.pixels.min() and s.pixels.max() < 30000


# (folder of ../shared/data, raster files, band folders) that `find_items` finds there; counted per folder so
# that folders added to the shared data later do not change any count
SHARED_ITEMS = [
    ("eurosat-ms-mini", 270, 0),
    ("s2-l2a-examples", 5, 0),
    ("bigearthnet-mini", 0, 12),  # 6 S2 + 6 S1 patch folders
    ("ssl4eo-s12-mini", 0, 6),  # s1, s2a, s2c x 2 seasons
    ("oscd-mini/images", 0, 14),  # 7 cities x 2 dates
    ("oscd-mini/labels", 7, 0),
    ("sen1floods11-chip", 3, 0),  # S2, S1, labels
]


@needs_data
@pytest.mark.parametrize(("folder", "files", "folders"), SHARED_ITEMS)
def test_find_items_over_shared_data(folder, files, folders):
    root = DATA / folder
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    items = find_items(root)
    assert items == sorted(items, key=str)
    assert sum(p.is_file() for p in items) == files and sum(p.is_dir() for p in items) == folders
    assert all(p.suffix.lower() in (".tif", ".tiff") for p in items if p.is_file())  # no .json / .txt
    assert find_items([root, root]) == items  # each item once
    assert set(items) <= set(find_items(DATA))  # the whole tree finds them too, whatever else it holds


@needs_data
def test_find_items_on_text_only_folder_says_nothing_found():
    captions = DATA / "rs-captions"
    if not captions.is_dir():
        pytest.skip(f"{captions} not present")
    with pytest.raises(NoRastersError, match="rs-captions"):
        find_items(captions)


@needs_data
def test_oscd_band_folder():
    folder = DATA / "oscd-mini" / "images" / "bercy" / "imgs_1"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    s = read_sample(folder)
    assert s.bands == BandSet.parse("s2-l1c") and len(s.bands) == 13 and "B10" in s.bands
    b02 = next(folder.glob("*_B02.tif"))
    with rasterio.open(b02) as ds:
        grid = (ds.height, ds.width)
    assert s.shape == (13, *grid) and grid == (395, 360) and s.meta["grid_band"] == "B02"
    assert {"B01", "B05", "B8A", "B10"} <= set(s.meta["resampled"]) and "B04" not in s.meta["resampled"]
    np.testing.assert_array_equal(s.pixels[s.bands.names.index("B02")], _raw(b02))
    assert s.crs == "EPSG:4326" and s.meta["dtype"] == "uint16" and s.id == "imgs_1"
    assert 0 < s.pixels.mean() < 5000 and s.pixels.max() < 30000
    other = read_sample(folder.parent / "imgs_2", "rgb")
    assert other.bands.names == ("B04", "B03", "B02") and other.shape[1:] == s.shape[1:]  # same grid, two dates


@needs_data
def test_sen1floods11_chip():
    chip = DATA / "sen1floods11-chip"
    if not chip.is_dir():
        pytest.skip(f"{chip} not present")
    path = chip / "S2" / "Spain_7370579_S2Hand.tif"
    s2 = read_sample(path)
    with rasterio.open(path) as ds:
        described = tuple(BandSet.parse(",".join(ds.descriptions)).names)
    assert s2.bands.names == described and s2.bands == BandSet.parse("s2-l1c")  # B1...B12 with B8A, by name
    assert s2.shape == (13, 512, 512) and s2.meta["dtype"] == "int16" and s2.crs == "EPSG:4326"
    assert s2.invalid is None and 0 < s2.pixels.mean() < 5000
    np.testing.assert_array_equal(s2.pixels[s2.bands.names.index("B8A")], _raw(path, described.index("B8A") + 1))
    s1 = read_sample(chip / "S1" / "Spain_7370579_S1Hand.tif", nodata="ignore")
    assert s1.bands.names == ("VV", "VH") and s1.shape == (2, 512, 512) and s1.crs == s2.crs
    assert s1.transform == pytest.approx(s2.transform)  # same grid
    valid = s1.pixels[~np.isnan(s1.pixels)]
    assert -60 < valid.min() and valid.max() < 30


# ---------------------------------------------------------------- synthetic GeoTIFFs


@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32"])
def test_geotiff_interleaving_and_dtypes(tmp_path, interleave, dtype):
    arr = random_array(4, 20, 30, dtype, seed=1)
    path = write_raw_geotiff(tmp_path / f"x_{dtype}.tif", arr, interleave=interleave, compress="deflate")
    s = read_sample(path, "s2-10m")
    assert s.pixels.dtype == np.float32 and s.shape == (4, 20, 30)
    np.testing.assert_array_equal(s.pixels, arr.astype(np.float32))
    assert s.meta["interleave"] == interleave and s.meta["dtype"] == dtype
    assert s.crs == CRS and s.transform == tuple(transform_for(10))[:6]


def test_band_descriptions_give_band_order(tmp_path):
    arr = random_array(3, 8, 8)
    path = write_raw_geotiff(tmp_path / "d.tif", arr, descriptions=["B8a", "B2", "red"])
    s = read_sample(path)
    assert s.bands.names == ("B8A", "B02", "B04")
    sub = read_sample(path, "B04,B8A")  # selection by name from a described file
    np.testing.assert_array_equal(sub.pixels, arr[[2, 0]].astype(np.float32))
    with pytest.raises(BandOrderError, match="B05"):
        read_sample(path, "B04,B05")


def test_unrecognised_descriptions_need_bands(tmp_path):
    path = write_raw_geotiff(tmp_path / "u.tif", random_array(3, 8, 8), descriptions=["a", "b", "c"])
    with pytest.raises(BandOrderError, match="u.tif"):
        read_sample(path)
    assert read_sample(path, "rgb").bands.names == ("B04", "B03", "B02")


def test_single_band_file_named_by_band(tmp_path):
    path = write_raw_geotiff(tmp_path / "T33UUP_B8A.tif", random_array(1, 6, 6))
    assert read_sample(path).bands.names == ("B8A",)


def test_write_geotiff_round_trip(tmp_path):
    arr = random_array(5, 40, 50, "uint16", seed=3)
    names = ["B08", "B04", "B03", "B02", "B11"]
    out = write_geotiff(tmp_path / "sub" / "w.tif", arr, crs=CRS, transform=tuple(transform_for(20))[:6],
                        band_names=names)
    s = read_sample(out)
    assert s.bands.names == tuple(names) and s.crs == CRS and s.transform[0] == 20.0
    np.testing.assert_array_equal(s.pixels, arr.astype(np.float32))
    with rasterio.open(out) as ds:
        assert ds.compression.name.lower() == "deflate" and ds.dtypes[0] == "uint16"
    assert [p.name for p in out.parent.iterdir()] == ["w.tif"]  # no temporary file left behind


def test_write_geotiff_large_is_tiled_and_float64_becomes_float32(tmp_path):
    arr = np.random.default_rng(0).random((2, 600, 520))
    out = write_geotiff(tmp_path / "big.tif", arr, crs=CRS, transform=transform_for(10), band_names=["VV", "VH"],
                        nodata=-9999.0)
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.dtypes[0] == "float32" and ds.nodata == -9999.0
    plain = read_sample(write_geotiff(tmp_path / "plain.tif", arr[:1] > 0.5, band_names=["B04"]))
    assert plain.crs is None and plain.transform is None and plain.meta["dtype"] == "uint8"
    with pytest.raises(ValueError, match="3 band names"):
        write_geotiff(tmp_path / "bad.tif", arr, band_names=["VV", "VH", "B02"])


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize("layout", ["chw", "hwc"])
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_arrays_chw_and_hwc(tmp_path, layout, suffix):
    chw = random_array(4, 10, 12, "int16", seed=2)
    arr = chw if layout == "chw" else np.moveaxis(chw, 0, -1)
    path = tmp_path / f"a{suffix}"
    np.save(path, arr) if suffix == ".npy" else np.savez(path, pixels=arr)
    s = read_sample(path, "s2-10m")
    assert s.shape == (4, 10, 12) and s.pixels.dtype == np.float32 and s.id == "a"
    np.testing.assert_array_equal(s.pixels, chw.astype(np.float32))


def test_arrays_need_band_order_and_reject_ambiguity(tmp_path):
    np.save(tmp_path / "a.npy", random_array(4, 8, 4))
    with pytest.raises(BandOrderError, match="a.npy.*--bands"):
        read_sample(tmp_path / "a.npy")
    with pytest.raises(BandOrderError, match="ambiguous"):
        read_sample(tmp_path / "a.npy", "s2-10m")
    with pytest.raises(BandOrderError, match="expected count 3"):
        read_sample(tmp_path / "a.npy", "rgb")
    np.savez(tmp_path / "b.npz", image=random_array(3, 5, 5), bands=np.array(["B4", "B3", "B2"]))
    assert read_sample(tmp_path / "b.npz").bands.names == ("B04", "B03", "B02")
    assert read_sample(tmp_path / "b.npz", "B02").shape == (1, 5, 5)


# ---------------------------------------------------------------- band folders (synthetic)


@pytest.mark.parametrize("layout", ["bigearthnet", "ssl4eo"])
def test_synthetic_band_folder(tmp_path, layout):
    folder = make_band_folder(tmp_path, "P_1_2", layout=layout, size10=24)
    s = read_sample(folder)
    assert s.bands.names == ("B01", "B02", "B03", "B04", "B05", "B8A") and s.shape == (6, 24, 24)
    assert s.meta["grid_band"] == "B02" and s.transform == tuple(transform_for(10))[:6]
    assert s.meta["resampled"] == ["B01", "B05", "B8A"] and s.id == "P_1_2"


@pytest.mark.parametrize(
    ("name", "band"),
    [("B1.tif", "B01"), ("B8A.tif", "B8A"), ("x_87_48_B8A.tif", "B8A"), ("p_b02.tif", "B02"),
     ("S1A_IW_GRDH_87_48_VV.tif", "VV"), ("s_COH_VH.tif", "COH_VH"), ("Forest_12.tif", None),
     ("red.tif", None), ("B14.tif", None)],
)
def test_band_name_from_filename(name, band):
    assert band_name_from_filename(name) == band


def test_band_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoRastersError, match="empty.*empty folder"):
        read_sample(empty)
    only_json = tmp_path / "meta"
    only_json.mkdir()
    (only_json / "labels.json").write_text("{}")
    with pytest.raises(NoRastersError, match="meta.*no band files"):
        read_sample(only_json)
    dup = make_band_folder(tmp_path, "dup", bands=("B02", "B03"))
    write_raw_geotiff(dup / "other_B02.tif", random_array(1, 24, 24))
    with pytest.raises(BandOrderError, match="B02"):
        read_sample(dup)
    multi = make_band_folder(tmp_path, "multi", bands=("B02", "B03"))
    write_raw_geotiff(multi / "multi_B04.tif", random_array(2, 24, 24))
    with pytest.raises(BandOrderError, match="multi_B04.tif.*2 bands"):
        read_sample(multi)
    bad = make_band_folder(tmp_path, "trunc", bands=("B02", "B03", "B04"), size10=64)
    write_raw_geotiff(bad / "trunc_B04.tif", random_array(1, 64, 64), compress="deflate")
    truncate_copy(bad / "trunc_B04.tif", bad / "trunc_B04.tif", 0.4)
    with pytest.raises(CorruptRasterError, match="trunc_B04.tif"):
        read_sample(bad)


# ---------------------------------------------------------------- bad input


def test_corrupt_truncated_and_empty_files(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00 definitely not a tiff" * 20)
    with pytest.raises(CorruptRasterError, match="junk.tif"):
        read_sample(junk, "rgb")
    good = write_raw_geotiff(tmp_path / "good.tif", random_array(3, 200, 200), compress="deflate")
    for keep in (0.5, 0.9):
        cut = truncate_copy(good, tmp_path / f"cut{int(keep * 10)}.tif", keep)
        with pytest.raises(CorruptRasterError, match=cut.name):
            read_sample(cut, "rgb")
    zero = tmp_path / "zero.tif"
    zero.write_bytes(b"")
    with pytest.raises(CorruptRasterError, match="zero.tif.*empty"):
        read_sample(zero, "rgb")
    npy = tmp_path / "broken.npy"
    np.save(npy, random_array(3, 20, 20))
    truncate_copy(npy, npy, 0.5)
    with pytest.raises(CorruptRasterError, match="broken.npy"):
        read_sample(npy, "rgb")
    with pytest.raises(NoRastersError, match="missing.tif"):
        read_sample(tmp_path / "missing.tif")


def test_unreadable_file(tmp_path, monkeypatch):
    path = write_raw_geotiff(tmp_path / "locked.tif", random_array(3, 4, 4))
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: emulate the permission check
        monkeypatch.setattr("spectraclip.io.readers.os.access", lambda p, mode: False)
    with pytest.raises(CorruptRasterError, match="locked.tif.*not readable"):
        read_sample(path, "rgb")


def test_nan_pixels_policies(tmp_path):
    arr = random_array(3, 10, 10, "float32")
    arr[1, 2, 3] = arr[1, 4, 4] = np.nan
    path = write_raw_geotiff(tmp_path / "nan.tif", arr)
    with pytest.raises(InvalidPixelsError, match=r"nan.tif.*B03=2") as e:
        read_sample(path, "rgb")
    assert e.value.counts == {"B03": 2}
    filled = read_sample(path, "rgb", nodata="fill")
    valid = arr[1][~np.isnan(arr[1])]
    assert filled.pixels[1, 2, 3] == pytest.approx(valid.mean(), rel=1e-5)
    assert not np.isnan(filled.pixels).any() and filled.meta["nodata_fraction"] == pytest.approx(2 / 300)
    kept = read_sample(path, "rgb", nodata="ignore")
    assert np.isnan(kept.pixels).sum() == 2
    with pytest.raises(ValueError, match="--nodata 'zero'"):
        read_sample(path, "rgb", nodata="zero")


def test_declared_nodata_value(tmp_path):
    arr = random_array(2, 6, 6, "uint16") + 1
    arr[0, 0, :3] = 0
    arr[1] = 0
    path = write_raw_geotiff(tmp_path / "nd.tif", arr, nodata=0, descriptions=["VV", "VH"])
    with pytest.raises(InvalidPixelsError, match="nd.tif") as e:
        read_sample(path, "VV,VH")
    assert e.value.counts == {"VV": 3, "VH": 36}
    with pytest.raises(InvalidPixelsError, match="VH has no valid pixel"):
        read_sample(path, "VV,VH", nodata="fill")
    s = read_sample(path, "VV", nodata="fill")  # only the band read counts
    assert s.pixels[0, 0, 0] == pytest.approx(arr[0][arr[0] > 0].mean(), rel=1e-5)


def test_errors_are_raster_errors():
    for cls in (BandOrderError, CorruptRasterError, InvalidPixelsError, NoRastersError):
        assert issubclass(cls, RasterError)


# ---------------------------------------------------------------- finding and iterating


def test_find_items_mixed(tmp_path):
    (tmp_path / "tiles" / "nested").mkdir(parents=True)
    a = write_raw_geotiff(tmp_path / "tiles" / "a.tif", random_array(3, 4, 4))
    np.save(tmp_path / "tiles" / "nested" / "c.npy", random_array(3, 4, 4))
    (tmp_path / "tiles" / "notes.txt").write_text("x")
    folder = make_band_folder(tmp_path / "tiles", "patch")
    items = find_items([tmp_path / "tiles", a, folder])
    assert items == [a, tmp_path / "tiles" / "nested" / "c.npy", folder]
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(NoRastersError, match="nothing"):
        find_items(empty)
    with pytest.raises(NoRastersError, match="nope"):
        find_items([a, tmp_path / "nope"])


def test_iter_samples_skips_and_reports_bad_items(tmp_path, caplog):
    for i in range(3):
        write_raw_geotiff(tmp_path / f"good{i}.tif", random_array(3, 8, 8, seed=i), descriptions=["B4", "B3", "B2"])
    (tmp_path / "bad.tif").write_bytes(b"garbage")
    nan = random_array(3, 8, 8, "float32")
    nan[0, 0, 0] = np.nan
    write_raw_geotiff(tmp_path / "nan.tif", nan, descriptions=["B4", "B3", "B2"])
    errors = []
    samples = list(iter_samples(tmp_path, on_error=lambda p, e: errors.append((p.name, e))))
    assert [s.id for s in samples] == ["good0", "good1", "good2"]
    assert [n for n, _ in errors] == ["bad.tif", "nan.tif"]
    assert isinstance(errors[0][1], CorruptRasterError) and isinstance(errors[1][1], InvalidPixelsError)
    with caplog.at_level(logging.WARNING):
        assert len(list(iter_samples(tmp_path))) == 3
    assert "bad.tif" in caplog.text and "nan.tif" in caplog.text
    assert len(list(iter_samples(tmp_path, nodata="fill", on_error=lambda p, e: None))) == 4
