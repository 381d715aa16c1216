"""The band catalog: spellings, presets, band sets, selection by name, normalisation statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectraclip.bands import (
    CATALOG,
    MSCLIP_STATS,
    PRESETS,
    BandError,
    BandSet,
    BandStats,
    MissingBandError,
    UnknownBandError,
    canonical_band_name,
    select_bands,
)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("B2", "B02"), ("B02", "B02"), ("b02", "B02"), ("b8a", "B8A"), ("B8a", "B8A"), ("B8A", "B8A"),
     ("B08A", "B8A"), ("B8", "B08"), ("B08", "B08"), ("B1", "B01"), ("B10", "B10"), (" B12 ", "B12"),
     ("red", "B04"), ("vv", "VV"), ("VH", "VH"), ("coh_vv", "COH_VV")],
)
def test_spellings(spelling, name):
    assert canonical_band_name(spelling) == name


@pytest.mark.parametrize("bad", ["B13", "B0", "B8B", "X", ""])
def test_unknown_band_names_it(bad):
    with pytest.raises(UnknownBandError, match=repr(bad)):
        canonical_band_name(bad)


def test_catalog_wavelengths_and_resolutions():
    assert CATALOG["B8A"].resolution_m == 20 and CATALOG["B02"].resolution_m == 10
    assert CATALOG["B01"].resolution_m == 60 and CATALOG["VV"].sensor == "sentinel-1"
    s2 = [CATALOG[b].wavelength_nm for b in PRESETS["s2-l1c"]]
    assert s2 == sorted(s2)  # s2-l1c is in wavelength order


def test_presets():
    assert len(PRESETS["s2-l1c"]) == 13 and len(PRESETS["s2-l2a"]) == 12
    assert "B10" not in PRESETS["s2-l2a"] and set(PRESETS["s2-l2a"]) < set(PRESETS["s2-l1c"])
    euro = PRESETS["eurosat-ms"]
    assert len(euro) == 13 and euro[-1] == "B8A" and set(euro) == set(PRESETS["s2-l1c"])
    assert euro[:12] == tuple(b for b in PRESETS["s2-l1c"] if b != "B8A")
    assert PRESETS["rgb"] == ("B04", "B03", "B02")
    assert PRESETS["msclip"] == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    for name, names in PRESETS.items():
        assert str(BandSet.parse(name)) == name and BandSet.parse(name).names == names


def test_bandset_parse_forms():
    assert BandSet.parse("B4,B3,B2") == BandSet.parse("rgb") == BandSet.parse(" RGB ")
    assert BandSet.parse(["b04", "B3", "B02"]).names == ("B04", "B03", "B02")
    assert BandSet.parse("B04 B8a").names == ("B04", "B8A")
    assert str(BandSet.parse("B08,B04")) == "B08,B04"
    bs = BandSet.parse("s2-10m")
    assert BandSet.parse(bs) is bs and len(bs) == 4 and "B2" in bs and "B05" not in bs and "zz" not in bs
    with pytest.raises(BandError, match="B02"):
        BandSet.parse("B02,B2")
    with pytest.raises(BandError, match="s2-l3"):
        BandSet.parse("s2-l3")
    with pytest.raises(UnknownBandError, match="B99"):
        BandSet.parse("B04,B99")


def test_select_bands_reorders_by_name():
    have = BandSet.parse("eurosat-ms")
    arr = np.arange(13, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    out = select_bands(arr, have, "msclip")
    assert out.shape == (10, 2, 3)
    expected = [have.names.index(b) for b in PRESETS["msclip"]]
    np.testing.assert_array_equal(out[:, 0, 0], expected)
    assert out[7, 0, 0] == 12  # B8A comes from the last channel of a EuroSAT-MS file
    batch = torch.arange(13.0).view(1, 13, 1, 1).expand(2, 13, 4, 4)
    assert select_bands(batch, have, "rgb")[1, :, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert select_bands(arr, have, have) is arr


def test_missing_band_error_names_band():
    arr = np.zeros((12, 2, 2), np.float32)
    with pytest.raises(MissingBandError, match="B10") as e:
        select_bands(arr, "s2-l2a", "s2-l1c", where="tile.tif")
    assert e.value.missing == ("B10",) and "tile.tif" in str(e.value)
    with pytest.raises(BandError, match="12 channels"):
        select_bands(arr, "s2-l1c", "rgb")
    assert BandSet.parse("s2-l2a").missing(["B10", "B2"]) == ["B10"]


def test_band_stats():
    mean, std = MSCLIP_STATS.for_bands("rgb")
    assert mean.tolist() == pytest.approx([1338.041, 1183.128, 925.161])
    assert std.dtype == np.float32 and std[0] == pytest.approx(1399.638)
    with pytest.raises(MissingBandError, match="B01"):
        MSCLIP_STATS.for_bands("s2-l2a")
    with pytest.raises(BandError, match="2 means"):
        BandStats.from_lists("rgb", [1, 2], [1, 2, 3])
    assert BandStats.from_lists("B2,B3", [1, 2], [3, 4]).to_dict()["mean"] == {"B02": 1.0, "B03": 2.0}
