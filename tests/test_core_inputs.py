"""The one input path is right and self-checking: radiometry offsets, programming errors, band order."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from spectraclip.bands import BandSet
from spectraclip.inference import encode_images
from spectraclip.io.writers import write_geotiff
from spectraclip.models.loading import load_model

UTM = "EPSG:32631"
T10 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def _l2a_dn(seed: int = 0) -> np.ndarray:
    """12-band L2A-like reflectance x 10000 (no offset), 32 x 32."""
    rng = np.random.default_rng(seed)
    return rng.integers(200, 4000, size=(12, 32, 32)).astype(np.uint16)


def test_an_offset_file_and_the_same_data_without_offset_give_the_same_embedding(tmp_path):
    """A baseline-04.00 product stores DN + 1000 and says so (BOA_ADD_OFFSET = -1000); the model converts to
    the units its statistics are in, so the embedding equals that of the same scene stored without offset."""
    bands = list(BandSet.parse("s2-l2a").names)
    dn = _l2a_dn()
    plain, shifted = tmp_path / "plain.tif", tmp_path / "baseline04.tif"
    write_geotiff(plain, dn, crs=UTM, transform=T10, band_names=bands)
    write_geotiff(shifted, dn + 1000, crs=UTM, transform=T10, band_names=bands)
    with rasterio.open(shifted, "r+") as ds:
        ds.update_tags(BOA_ADD_OFFSET="-1000", BOA_QUANTIFICATION_VALUE="10000", PROCESSING_BASELINE="05.10")
    torch.manual_seed(0)
    model = load_model("tiny-test", bands="s2-l2a")
    a = encode_images(model, [plain], progress=False)
    b = encode_images(model, [shifted], progress=False)
    assert a.ids and b.ids and not a.failed and not b.failed
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    # read without its tags the offset file is another input, and gives another embedding
    c = encode_images(model, [shifted], progress=False, radiometry="dn")
    assert float(np.abs(c.vectors - a.vectors).max()) > 1e-3
    # a user who knows better says so: the offset declared on the command line fixes an untagged file
    untagged = tmp_path / "untagged.tif"
    write_geotiff(untagged, dn + 1000, crs=UTM, transform=T10, band_names=bands)
    d = encode_images(model, [untagged], progress=False, radiometry="baseline-04")
    np.testing.assert_allclose(d.vectors, a.vectors, atol=1e-6)


def test_a_programming_error_stops_the_run_and_an_input_error_is_skipped(tmp_path, monkeypatch):
    from spectraclip.models.inputs import Preprocessor

    bands = list(BandSet.parse("s2-l2a").names)
    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    write_geotiff(good, _l2a_dn(), crs=UTM, transform=T10, band_names=bands)
    bad.write_bytes(b"not a tiff at all")
    model = load_model("tiny-test", bands="s2-l2a")
    enc = encode_images(model, [good, bad], progress=False)
    assert enc.ids == ["good"] and len(enc.failed) == 1 and "bad.tif" in enc.failed[0][0]

    def broken(self, sample):  # a bug, not bad input: it must not be reported as a bad raster
        raise TypeError("unsupported operand")

    monkeypatch.setattr(Preprocessor, "__call__", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        encode_images(model, [good], progress=False)


def test_band_order_of_a_plain_state_dict_is_never_guessed_from_its_channel_count(tmp_path):
    from spectraclip.errors import CheckpointError

    ten = load_model("openclip:ViT-S-32", bands="msclip")  # a 10-channel patch embedding
    path = tmp_path / "plain.pt"
    torch.save(ten.clip.state_dict(), path)
    with pytest.raises(CheckpointError, match="nothing names its bands"):
        load_model("ViT-S-32", checkpoint=path)
    # saved as a bundle, which describes its own bands, the same weights load with their band order
    from spectraclip.models.checkpoints import save_bundle

    back = load_model(checkpoint=save_bundle(ten, tmp_path / "bundle"))
    assert back.bands == BandSet.parse("msclip")
