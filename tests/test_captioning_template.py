"""Template backend: deterministic captions from tags and spectral fractions computed by band name."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from spectraclip.bands import BandSet
from spectraclip.captioning.backends import CaptionInput, make_backend
from spectraclip.captioning.backends.template import spectral_fractions, template_caption
from spectraclip.io.sample import Sample

TAGS = [{"overture_type": "water", "class": "lake", "name": "Lago Verde", "flags": ["is_intermittent"],
         "geometry_kind": "polygon"},
        {"overture_type": "place", "class": "village", "name": "Testville", "geometry_kind": "point"}]


def _scene(order: str) -> Sample:
    """Left half water (green > NIR), right half dense vegetation; top-right quarter snow."""
    bands = BandSet.parse(order)
    px = np.zeros((len(bands), 40, 40), np.float32)
    v = {"B02": 500, "B03": 600, "B04": 300, "B08": 200, "B11": 100}
    for b, val in v.items():
        px[bands.names.index(b), :, :20] = val
    veg = {"B02": 300, "B03": 500, "B04": 300, "B08": 4000, "B11": 1500}
    for b, val in veg.items():
        px[bands.names.index(b), :, 20:] = val
    snow = {"B02": 8000, "B03": 8000, "B04": 8000, "B08": 7000, "B11": 500}
    for b, val in snow.items():
        px[bands.names.index(b), :10, 20:] = val
    return Sample(px, bands, "scene")


def test_fractions_are_computed_by_band_name():
    a = spectral_fractions(_scene("B02,B03,B04,B08,B11"))
    b = spectral_fractions(_scene("B11,B08,B04,B02,B03"))
    assert a == b
    assert a["water"] == pytest.approx(0.5) and a["snow"] == pytest.approx(0.125)
    assert a["dense_vegetation"] == pytest.approx(0.375) and a["built_bare"] == 0.0


def test_missing_bands_give_none_not_wrong_numbers():
    s = _scene("B02,B03,B04,B08,B11").select("B04,B03,B02")
    fr = spectral_fractions(s)
    assert fr["water"] is None and fr["snow"] is None and fr["dense_vegetation"] is None
    caption, qa, _ = template_caption(CaptionInput("rgb-only", s, []))
    assert "no dominant surface type" in caption and len(qa) == 3


def test_template_backend_is_deterministic_and_uses_only_given_names():
    backend = make_backend("template")
    item = CaptionInput("tile-1", _scene("B02,B03,B04,B08,B11"), TAGS)
    first = asyncio.run(backend.caption(item))
    second = asyncio.run(backend.caption(CaptionInput("tile-1", _scene("B11,B08,B04,B02,B03"), list(TAGS))))
    assert first.status == "ok" and first.captions == second.captions and first.qa == second.qa
    cap = first.captions[0]
    assert "open water (50%)" in cap and '"Lago Verde"' in cap and '"Testville"' in cap
    assert "intermittent lake" in cap and len(first.qa) == 3
