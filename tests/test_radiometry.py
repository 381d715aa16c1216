"""Radiometry: --radiometry values, what GeoTIFF tags and band-folder metadata say, and conversion (an offset
file and the same data without offset agree in DN); nodata stays nodata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_rasters import DATA, make_band_folder, random_array, write_raw_geotiff

from spectraclip.errors import SpectraclipError
from spectraclip.io import read_sample
from spectraclip.io.radiometry import (
    REFLECTANCE,
    Radiometry,
    RadiometryError,
    convert,
    from_tags,
    parse_radiometry,
)

DN = parse_radiometry("dn")
OFFSET = parse_radiometry("l2a-offset")


@pytest.mark.parametrize(
    ("spec", "scale", "offset", "level"),
    [
        ("dn", 1e-4, 0.0, None),
        ("L2A", 1e-4, 0.0, "L2A"),
        ("l1c", 1e-4, 0.0, "L1C"),
        ("l2a-offset", 1e-4, -0.1, "L2A"),
        ("baseline-04", 1e-4, -0.1, None),
        ("offset_1000", 1e-4, -0.1, None),
        ("reflectance", 1.0, 0.0, None),
        ("scale=0.0001,offset=-0.1,level=l2a", 1e-4, -0.1, "L2A"),
        ("offset=-3", 1.0, -3.0, None),
    ],
)
def test_parse_radiometry(spec, scale, offset, level):
    r = parse_radiometry(spec)
    assert (r.scale, r.offset, r.level) == (scale, offset, level)
    assert "--radiometry" in r.source


@pytest.mark.parametrize("spec", ["", "toa", "scale=", "scale=abc", "gain=2", "scale=0"])
def test_bad_radiometry_names_option_and_choices(spec):
    with pytest.raises(RadiometryError) as e:
        parse_radiometry(spec)
    assert isinstance(e.value, SpectraclipError) and isinstance(e.value, ValueError)
    assert "--radiometry" in str(e.value)
    if spec != "scale=0":
        assert "l2a-offset" in str(e.value) and "reflectance" in str(e.value)
    with pytest.raises(RadiometryError):
        read_sample("does-not-matter.tif", radiometry=spec)  # the option is checked before any file


def _dn(seed: int = 0) -> np.ndarray:
    return random_array(3, 8, 8, "uint16", seed=seed) // 2 + 1  # 1 ... 6000: valid DN, never nodata 0


def test_boa_add_offset_tags(tmp_path):
    dn = _dn()
    tagged = write_raw_geotiff(tmp_path / "boa.tif", dn + 1000, descriptions=["B04", "B03", "B02"],
                               tags={"BOA_ADD_OFFSET": -1000, "BOA_QUANTIFICATION_VALUE": 10000,
                                     "PROCESSING_LEVEL": "Level-2A"})
    r = read_sample(tagged).meta["radiometry"]
    assert r.same_units(OFFSET) and r.level == "L2A" and "boa.tif" in r.source and "BOA_ADD_OFFSET" in r.source
    band_level = write_raw_geotiff(tmp_path / "radio.tif", dn + 1000, descriptions=["B04", "B03", "B02"],
                                   band_tags={"RADIO_ADD_OFFSET": -1000})
    assert read_sample(band_level).meta["radiometry"].same_units(OFFSET)
    new = write_raw_geotiff(tmp_path / "n0400.tif", dn + 1000, descriptions=["B04", "B03", "B02"],
                            tags={"PROCESSING_BASELINE": "04.00"})
    assert read_sample(new).meta["radiometry"].same_units(OFFSET)
    old = write_raw_geotiff(tmp_path / "n0214.tif", dn, descriptions=["B04", "B03", "B02"],
                            tags={"PRODUCT_ID": "S2B_MSIL1C_20200604T054639_N0209_R048_T43RCP_20200604T083537"})
    r_old = read_sample(old).meta["radiometry"]
    assert r_old.same_units(DN) and r_old.level == "L1C"
    plain = write_raw_geotiff(tmp_path / "plain.tif", dn, descriptions=["B04", "B03", "B02"])
    assert read_sample(plain).meta["radiometry"] is None  # nothing said: unknown, not guessed


def test_rasterio_scales_and_offsets(tmp_path):
    refl = write_raw_geotiff(tmp_path / "scaled.tif", _dn(), descriptions=["B04", "B03", "B02"],
                             scales=[1e-4] * 3, offsets=[-0.1] * 3)
    r = read_sample(refl).meta["radiometry"]
    assert r.same_units(OFFSET) and "scale/offset" in r.source
    mixed = write_raw_geotiff(tmp_path / "mixed.tif", _dn(), descriptions=["B04", "B03", "B02"],
                              scales=[1e-4, 1e-4, 2e-4], offsets=[-0.1, 0.0, 0.0])
    s = read_sample(mixed)
    assert s.meta["radiometry"].per_band and s.meta["radiometry"].bands == ("B04", "B03", "B02")
    picked = read_sample(mixed, "B02,B04")  # reading a subset keeps each band's own values
    assert picked.meta["radiometry"].scale == (2e-4, 1e-4) and picked.meta["radiometry"].offset == (0.0, -0.1)
    sel = s.select("B03,B02").meta["radiometry"]
    assert sel.bands == ("B03", "B02") and sel.scale == (1e-4, 2e-4) and sel.offset == 0.0
    dn_offsets = from_tags({"QUANTIFICATION_VALUE": "10000"}, scales=[1.0], offsets=[-1000.0], bands=["B04"])
    assert dn_offsets.same_units(OFFSET)  # GDAL offsets in DN with a quantification value


def test_explicit_radiometry_overrides_tags(tmp_path):
    path = write_raw_geotiff(tmp_path / "boa.tif", _dn() + 1000, descriptions=["B04", "B03", "B02"],
                             tags={"BOA_ADD_OFFSET": -1000})
    assert read_sample(path, radiometry="dn").meta["radiometry"].same_units(DN)
    mine = Radiometry(2.0, 1.0, "L1C", "mine")
    assert read_sample(path, radiometry=mine).meta["radiometry"] is mine
    np.save(tmp_path / "a.npy", _dn())
    assert read_sample(tmp_path / "a.npy", "rgb").meta["radiometry"] is None
    assert read_sample(tmp_path / "a.npy", "rgb", radiometry="l2a-offset").meta["radiometry"].same_units(OFFSET)


def test_offset_file_and_plain_file_agree_in_dn(tmp_path):
    dn = _dn(seed=3)
    plain = read_sample(write_raw_geotiff(tmp_path / "plain.tif", dn, descriptions=["B04", "B03", "B02"]),
                        radiometry="dn")
    shifted = read_sample(write_raw_geotiff(tmp_path / "shifted.tif", dn + 1000, descriptions=["B04", "B03", "B02"],
                                            tags={"BOA_ADD_OFFSET": -1000, "BOA_QUANTIFICATION_VALUE": 10000}))
    assert not np.array_equal(plain.pixels, shifted.pixels)  # raw units differ by 1000
    a = convert(plain.pixels, plain.meta["radiometry"], DN)
    b = convert(shifted.pixels, shifted.meta["radiometry"], DN)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, dn.astype(np.float32))
    np.testing.assert_allclose(convert(shifted.pixels, shifted.meta["radiometry"], REFLECTANCE), dn * 1e-4, rtol=1e-6)
    back = convert(a, DN, OFFSET)  # and the other way round
    np.testing.assert_array_equal(back, shifted.pixels)


def test_convert_identity_and_per_band():
    px = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert convert(px, DN, parse_radiometry("l1c")) is px  # same units: no copy
    per_band = Radiometry((1e-4, 1e-4), (-0.1, 0.0), bands=("B04", "B03"))
    out = convert(px, per_band, DN, bands=["B04", "B03"])
    np.testing.assert_array_equal(out[0], px[0] - 1000)
    np.testing.assert_array_equal(out[1], px[1])
    np.testing.assert_array_equal(convert(px[::-1], per_band, DN, bands=["B03", "B04"])[1], px[0] - 1000)
    batch = np.stack([px, px])  # [N, C, H, W]
    np.testing.assert_array_equal(convert(batch, per_band, DN, bands=["B04", "B03"])[1], out)
    with pytest.raises(RadiometryError, match="B02"):
        convert(px, per_band, DN, bands=["B04", "B02"])
    with pytest.raises(RadiometryError, match="shape"):
        convert(px[:1], per_band, DN)
    assert Radiometry.from_dict(per_band.to_dict()) == per_band
    assert Radiometry((2.0, 2.0), (0.0, 0.0)) == Radiometry(2.0, 0.0)  # equal per-band values are one value


def test_nodata_stays_nodata_through_conversion(tmp_path):
    dn = _dn()
    raw = dn + 1000
    raw[:, 0, :] = 0  # declared nodata border
    path = write_raw_geotiff(tmp_path / "nd.tif", raw, nodata=0, descriptions=["B04", "B03", "B02"],
                             tags={"BOA_ADD_OFFSET": -1000})
    s = read_sample(path, nodata="ignore")
    assert s.invalid is not None and s.invalid[:, 0, :].all() and not s.invalid[:, 1:, :].any()
    out = convert(s.pixels, s.meta["radiometry"], DN, invalid=s.invalid)
    assert (out[:, 0, :] == 0).all()  # still the declared nodata value, not -1000 "DN"
    np.testing.assert_array_equal(out[:, 1:], dn[:, 1:].astype(np.float32))
    floats = raw.astype(np.float32)
    floats[:, 0, :] = np.nan
    out = convert(floats, OFFSET, DN)
    assert np.isnan(out[:, 0, :]).all() and np.isfinite(out[:, 1:]).all()


def test_band_folder_metadata_json(tmp_path):
    folder = make_band_folder(tmp_path, "patch", ("B02", "B03", "B04"), layout="ssl4eo")
    assert read_sample(folder).meta["radiometry"] is None
    (folder / "metadata.json").write_text(json.dumps(
        {"PROCESSING_BASELINE": "04.00", "PRODUCT_ID": "S2A_MSIL2A_20220301T101031_N0400_R022_T32TQM_2022"}))
    r = read_sample(folder).meta["radiometry"]
    assert r.same_units(OFFSET) and r.level == "L2A" and "metadata.json" in r.source
    assert read_sample(folder, radiometry="dn").meta["radiometry"].same_units(DN)


def test_band_folder_file_tags(tmp_path):
    folder = tmp_path / "tagged"
    folder.mkdir()
    for i, band in enumerate(("B02", "B03")):
        write_raw_geotiff(folder / f"x_{band}.tif", _dn(seed=i)[:1], tags={"BOA_ADD_OFFSET": -1000 * i})
    r = read_sample(folder).meta["radiometry"]
    assert r.bands == ("B02", "B03") and r.scale == 1e-4 and r.offset == (0.0, -0.1)


@pytest.mark.skipif(not (DATA / "ssl4eo-s12-mini").is_dir(), reason=f"shared sample data not found at {DATA}")
@pytest.mark.parametrize(("product", "level"), [("s2a", "L2A"), ("s2c", "L1C"), ("s1", None)])
def test_ssl4eo_metadata_gives_radiometry(product, level):
    folder = sorted((DATA / "ssl4eo-s12-mini" / product).glob("*/*"))[0]
    r = read_sample(folder).meta["radiometry"]
    if product == "s1":
        assert r is None  # radar dB: nothing to say, nothing guessed
    else:  # baselines 02.14 / 02.09: DN x 1e-4, no offset
        assert r.same_units(DN) and r.level == level and "metadata.json" in r.source


def test_write_sample_keeps_radiometry(tmp_path):
    from spectraclip.io import write_sample

    path = write_raw_geotiff(tmp_path / "boa.tif", _dn() + 1000, descriptions=["B04", "B03", "B02"],
                             band_tags={"BOA_ADD_OFFSET": -1000})
    s = read_sample(path)
    back = read_sample(write_sample(tmp_path / "copy.tif", s))
    assert back.meta["radiometry"].same_units(OFFSET)
    np.testing.assert_array_equal(back.pixels, s.pixels)  # raw values written as they are
    mixed = Radiometry((1e-4, 2e-4, 1e-4), 0.0, bands=("B04", "B03", "B02"))
    s.meta["radiometry"] = mixed
    sel = s.select("B03,B02")
    again = read_sample(write_sample(tmp_path / "sel.tif", sel)).meta["radiometry"]
    assert again.scale == (2e-4, 1e-4) and again.bands == ("B03", "B02")


def test_unusable_radiometry_tags_are_errors_naming_the_file(tmp_path):
    from spectraclip.io import CorruptRasterError

    path = write_raw_geotiff(tmp_path / "zero.tif", _dn(), descriptions=["B04", "B03", "B02"], scales=[0.0] * 3)
    with pytest.raises(CorruptRasterError, match="zero.tif.*radiometry"):
        read_sample(path)
    assert read_sample(path, radiometry="dn").meta["radiometry"].same_units(DN)  # an explicit one is enough
    q0 = from_tags({"QUANTIFICATION_VALUE": "0", "RADIO_ADD_OFFSET": "-1000"}, bands=["B04"])
    assert q0.same_units(OFFSET)  # a zero quantification value is no value: Sentinel-2's 10000
