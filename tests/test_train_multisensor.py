"""Recipe-driven multi-sensor training in the shared trainer: runs (with captions, validation and a
missing modality), resumes exactly from a checkpoint, freezes, and rejects what it does not support."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fixtures_multisensor import multisensor_recipe, write_multisensor_set

from spectraclip.train.config import RecipeError, recipe_from_dict
from spectraclip.train.loop import train


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _state(bundle):
    from safetensors.torch import load_file

    return load_file(str(bundle / "model.safetensors"))


def test_multisensor_recipe_trains_and_resumes_exactly(tmp_path):
    from spectraclip.models.loading import load_model
    from spectraclip.models.spectral_clip import SpectralCLIP
    from spectraclip.train.logs import read_metrics

    manifest = write_multisensor_set(tmp_path / "d", n=8, val=4, s1_only=1, s2_only=1)
    a = train(recipe_from_dict(multisensor_recipe(manifest, tmp_path / "a")))
    assert a.steps == 4 and a.bundle is not None
    cfg = json.loads((a.bundle / "spectraclip.json").read_text())
    groups = {g["name"]: g for g in cfg["inputs"]}
    assert cfg["format_version"] == 2 and groups["s1"]["bands"] == ["VV", "VH"]
    assert groups["s2"]["mean"] == [1800.0] * 3  # from the recipe's normalization: block
    assert cfg["provenance"]["training"]["steps"] == 4
    recs = read_metrics(a.metrics)
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert any("s2-s1" in r for r in train_recs) and any("image-text" in r for r in train_recs)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train_recs)
    val = [r for r in recs if r["kind"] == "val"][-1]
    assert val["val_items"] == 4 and "s2-s1_r1" in val
    model = load_model(checkpoint=a.bundle)
    assert isinstance(model, SpectralCLIP) and model.groups == ["s2", "s1"] and model.config.multi
    fresh = load_model("tiny-test")  # the trunk started from tiny-test and was trained
    assert not torch.equal(model.clip.visual.proj, fresh.clip.visual.proj)

    # resume: a run restarted from a's step-2 checkpoint ends with exactly a's weights
    ck = tmp_path / "b" / "checkpoints"
    ck.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "step-00000002.pt", ck)
    b = train(recipe_from_dict(multisensor_recipe(manifest, tmp_path / "b")), resume=True)
    assert b.steps == 4
    assert [r["step"] for r in read_metrics(b.metrics) if r["kind"] == "train"] == [3, 4]  # only steps 3-4 ran
    sa, sb = _state(a.bundle), _state(b.bundle)
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_multisensor_freeze_policies_and_unsupported_keys(tmp_path):
    from spectraclip.models.freeze import apply_freeze
    from spectraclip.train.multisensor import build_multisensor_model, read_items

    manifest = write_multisensor_set(tmp_path / "d", n=4, val=0, captions=False)
    recipe = recipe_from_dict(multisensor_recipe(manifest, tmp_path / "o", model={"freeze": "projection"}))
    model, _ = build_multisensor_model(recipe, read_items(str(manifest), "manifest"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"patch_embeds.s2.weight", "patch_embeds.s1.weight", "clip.visual.proj", "clip.text_projection",
            "clip.logit_scale"} == trainable
    locked = apply_freeze(model, "lock-text")
    assert "patch_embeds.s1.weight" in locked and not any(n.startswith("clip.transformer.") for n in locked)
    for override, match in ((("model", {"bands": "rgb"}), "model.bands"),
                            (("model", {"modalities": {"s1": "B04"}}), "not s1 bands")):
        r = recipe_from_dict(multisensor_recipe(manifest, tmp_path / "o", **{override[0]: override[1]}))
        with pytest.raises(RecipeError, match=match):
            train(r)
    bad = multisensor_recipe(manifest, tmp_path / "o")
    del bad["normalization"]["s1"]
    with pytest.raises(RecipeError, match="no statistics for modality 's1'"):
        train(recipe_from_dict(bad))
    with pytest.raises(RecipeError, match="data.layout"):
        recipe_from_dict(multisensor_recipe(manifest, tmp_path / "o", data={"layout": "lidar"}))


def test_multigroup_models_get_lora_siglip_and_accumulation(tmp_path):
    """What a single-group recipe has, a multi-group one has: LoRA, SigLIP, gradient accumulation."""
    manifest = write_multisensor_set(tmp_path / "d", n=8, val=0, s1_only=1, s2_only=1)
    run = train(recipe_from_dict(multisensor_recipe(
        manifest, tmp_path / "lora", model={"freeze": "lora"}, loss={"kind": "siglip"}, optim={"accum_steps": 2},
        run={"max_steps": 2})))
    assert run.steps == 2 and run.bundle is not None and np.isfinite(run.final_loss)
    cfg = json.loads((run.bundle / "spectraclip.json").read_text())
    assert "init_logit_bias" in cfg["arch_config"] and len(cfg["inputs"]) == 2
    # an HF text tower (the offline MiniLM), locked: the multi-group trunk trains against it
    hf = train(recipe_from_dict(multisensor_recipe(
        manifest, tmp_path / "hf", model={"text": "minilm", "freeze": "lock-text"}, run={"max_steps": 1})))
    cfg = json.loads((hf.bundle / "spectraclip.json").read_text())
    assert cfg["text"]["tokenizer"] == "hf" and len(cfg["inputs"]) == 2 and np.isfinite(hf.final_loss)


def test_multigroup_accumulation_equals_big_batch_gradient():
    """Feature-cached accumulation over dict inputs with absent groups and uncaptioned rows gives the
    big-batch loss and gradients."""
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP
    from spectraclip.train.distributed import DistInfo
    from spectraclip.train.loop import make_loss
    from spectraclip.train.objective import Objective, step

    torch.manual_seed(0)
    model = SpectralCLIP.from_config(tiny_group_config({"s2": "rgb", "s1": "s1"})).train()
    objective = Objective(make_loss(recipe_from_dict({}).loss, DistInfo()))
    b = 8
    x = {"s2": torch.randn(b, 3, 32, 32), "s1": torch.randn(b, 2, 32, 32)}
    present = {"s2": torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool),
               "s1": torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)}
    text = model.tokenize([f"caption {i}" for i in range(b)])
    has = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)

    def micro(sl):
        return {"x": {g: t[sl] for g, t in x.items()}, "present": {g: p[sl] for g, p in present.items()},
                "text": text[sl], "text_present": has[sl]}

    def grads(parts):
        model.zero_grad(set_to_none=True)
        loss, logs = step(model, objective, parts)
        return loss, logs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    big_loss, big_logs, big = grads([micro(slice(0, 8))])
    acc_loss, acc_logs, acc = grads([micro(slice(0, 4)), micro(slice(4, 8))])
    assert {"s2-s1", "image-text"} <= set(big_logs)
    assert acc_loss == pytest.approx(big_loss, rel=1e-5)
    assert big.keys() == acc.keys() and "patch_embeds.s1.weight" in big
    for n in big:
        assert torch.allclose(big[n], acc[n], atol=1e-6, rtol=1e-4), n
