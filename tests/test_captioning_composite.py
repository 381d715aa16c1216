"""Natural-colour composites: bands by name, documented stretches, 224×224 uint8, PNG data URL."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spectraclip.bands import BandSet
from spectraclip.captioning.composite import data_url, natural_colour
from spectraclip.io.render import stretch_rgb
from spectraclip.io.sample import Sample

L2A = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2-l2a-examples"


def test_fixed_stretch_values():
    rgb = np.array([0.0, 1500.0, 3000.0, 6000.0], dtype=np.float32).reshape(1, 1, 4).repeat(3, axis=0)
    out = stretch_rgb(rgb, "fixed")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    assert list(out[0, :, 0]) == [0, round(255 * 0.5 ** (1 / 1.4)), 255, 255]


def test_percentile_stretch_maps_p2_p98_to_black_and_white():
    band = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(1, 100, 100)
    out = stretch_rgb(np.concatenate([band, band * 2, band + 500]), "percentile")
    for c in range(3):
        assert (out[..., c] == 0).mean() == pytest.approx(0.02, abs=0.002)
        assert (out[..., c] == 255).mean() == pytest.approx(0.02, abs=0.002)
    with pytest.raises(ValueError, match="stretch"):
        stretch_rgb(band.repeat(3, 0), "bogus")  # type: ignore[arg-type]


def test_joint_percentile_stretch_keeps_colour_and_does_not_amplify_noise():
    rng = np.random.default_rng(0)
    water = 300 + rng.normal(0, 20, (3, 64, 64)).astype(np.float32)  # dark, nearly uniform scene
    water[0] += 100  # a little redder than green and blue
    per_channel = stretch_rgb(water, "percentile")
    calm = stretch_rgb(water, "percentile", joint=True, min_range=1500)
    assert per_channel.std() > 50  # noise stretched to full contrast
    assert calm.std() < 15 and calm.max() < 128  # stays a dark, calm patch
    assert calm[..., 0].mean() > calm[..., 1].mean() + 10  # one range for all bands: red stays redder
    assert per_channel[..., 0].mean() == pytest.approx(per_channel[..., 1].mean(), abs=6)  # per channel: lost
    # a contrasted scene is unaffected by the minimum range
    band = np.linspace(0, 3000, 10_000, dtype=np.float32).reshape(1, 100, 100).repeat(3, 0)
    assert (stretch_rgb(band, "percentile", joint=True, min_range=1500) == stretch_rgb(band, "percentile")).all()


def test_composite_picks_bands_by_name_and_resizes():
    px = np.zeros((4, 64, 64), np.float32)
    bands = BandSet.parse("B08,B02,B04,B03")
    px[bands.names.index("B04")] = 3000  # only red is bright
    img = natural_colour(Sample(px, bands, "x"))
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert (img[..., 0] == 255).all() and (img[..., 1:] == 0).all()
    decoded = Image.open(io.BytesIO(base64.b64decode(data_url(img).split(",", 1)[1])))
    assert decoded.size == (224, 224)


@pytest.mark.skipif(not L2A.exists(), reason=f"real L2A tiles not found at {L2A}")
def test_real_tiles_snow_is_brighter_than_dark_scenes():
    from spectraclip.io.readers import read_sample

    snow = natural_colour(read_sample(L2A / "609U_541L_3_0.tif", "s2-l2a"))
    other = natural_colour(read_sample(L2A / "637U_59R_1_3.tif", "s2-l2a"))
    assert snow.mean() > 200 > other.mean()
