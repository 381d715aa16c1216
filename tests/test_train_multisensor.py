"""Recipe-driven multi-sensor training in the shared trainer: runs (with captions, validation and a
missing modality), resumes exactly from a checkpoint, freezes, and rejects what it does not support."""

from __future__ import annotations

import json
import shutil

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
    from spectraclip.models.multisensor import MultiSensorCLIP
    from spectraclip.train.logs import read_metrics

    manifest = write_multisensor_set(tmp_path / "d", n=8, val=4, s1_only=1, s2_only=1)
    a = train(recipe_from_dict(multisensor_recipe(manifest, tmp_path / "a")))
    assert a.steps == 4 and a.bundle is not None
    cfg = json.loads((a.bundle / "spectraclip.json").read_text())
    assert cfg["kind"] == "multisensor" and cfg["modalities"]["s1"]["bands"] == ["VV", "VH"]
    assert cfg["modalities"]["s2"]["mean"] == [1800.0] * 3  # from the recipe's normalization: block
    assert cfg["provenance"]["training"]["steps"] == 4
    recs = read_metrics(a.metrics)
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert any("s2-s1" in r for r in train_recs) and any("image-text" in r for r in train_recs)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train_recs)
    val = [r for r in recs if r["kind"] == "val"][-1]
    assert val["val_items"] == 4 and "s2-s1_r1" in val
    model = load_model(checkpoint=a.bundle)
    assert isinstance(model, MultiSensorCLIP) and model.modalities == ["s2", "s1"]
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
    model = build_multisensor_model(recipe, read_items(str(manifest), "manifest"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"patch_embeds.s2.weight", "patch_embeds.s1.weight", "clip.visual.proj", "clip.text_projection",
            "clip.logit_scale"} == trainable
    locked = apply_freeze(model, "lock-text")
    assert "patch_embeds.s1.weight" in locked and not any(n.startswith("clip.transformer.") for n in locked)
    for override, match in ((("model", {"freeze": "lora"}), "model.freeze"),
                            (("model", {"bands": "rgb"}), "model.bands"),
                            (("optim", {"accum_steps": 2}), "accum_steps"),
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
