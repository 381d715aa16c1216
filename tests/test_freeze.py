"""Each freeze policy trains exactly the parameters it names (and nothing else moves)."""

from __future__ import annotations

import pytest
import torch

from spectraclip.train.config import ModelRecipe, recipe_from_dict
from spectraclip.train.distributed import DistInfo
from spectraclip.train.loop import contrastive_step, make_loss
from spectraclip.train.model_setup import build_model

PATCH = "clip.visual.conv1.weight"
TEMP = "clip.logit_scale"


def _expected(names, policy):
    if policy == "all":
        return set(names)
    if policy == "lock-text":
        return {n for n in names if n.startswith("clip.visual.")} | {TEMP}
    if policy == "projection":
        return {"clip.visual.proj", "clip.text_projection", PATCH, TEMP}
    if policy == "attention":
        return {n for n in names if ".attn." in n and "lora" not in n} | {PATCH, TEMP}
    return {n for n in names if "lora_" in n} | {PATCH, TEMP}


@pytest.mark.parametrize("policy", ["all", "lock-text", "projection", "attention", "lora"])
def test_policy_trains_exactly_its_parameters(policy, capsys):
    torch.manual_seed(0)
    model, _ = build_model(ModelRecipe(base="tiny-test", freeze=policy, lora_rank=2))
    names = [n for n, _ in model.named_parameters()]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _expected(names, policy)
    if policy == "lora":  # adapters start as a no-op; give B a value so A gets gradients too
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.fill_(0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    img = torch.randn(4, 10, 32, 32)
    tok = model.tokenize(["a", "b c", "d e f", "g"])
    contrastive_step(model, make_loss(recipe_from_dict({}).loss, DistInfo()), [(img, tok)])
    opt.step()
    # peft's LoRA for nn.MultiheadAttention merges/unmerges the adapter into the frozen in_proj weight around
    # each forward, which leaves float round-off (~1e-9); anything beyond that is training.
    changed = {n for n, p in model.named_parameters() if not torch.allclose(p, before[n], atol=1e-6, rtol=0)}
    assert changed <= trainable
    if policy != "lora":
        assert {n for n, p in model.named_parameters() if not torch.equal(p, before[n])} <= trainable
    assert {n for n, p in model.named_parameters() if p.grad is not None} == trainable
    from spectraclip.models.freeze import print_trainable, trainable_summary

    summary = trainable_summary(model)
    assert summary["image"][0] > 0
    print_trainable(model, policy)
    assert "trainable" in capsys.readouterr().err


def _lock_text_sets(model):
    """(our lock-text trainable names, open_clip lock_text_tower trainable names) for fresh copies of `model`."""
    import copy

    from spectraclip.models.freeze import apply_freeze

    theirs_model = copy.deepcopy(model)
    ours = apply_freeze(model, "lock-text")
    for p in theirs_model.parameters():
        p.requires_grad_(True)
    theirs_model.clip.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    return ours, {n for n, p in theirs_model.named_parameters() if p.requires_grad}


def test_lock_text_matches_open_clip_on_clip_towers_and_differs_on_hf_projection():
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP
    from spectraclip.train.model_setup import replace_text_tower

    torch.manual_seed(0)
    single, _ = build_model(ModelRecipe(base="tiny-test", freeze="all"))
    for model in (single, SpectralCLIP.from_config(tiny_group_config())):
        ours, theirs = _lock_text_sets(model)
        assert ours == theirs and TEMP in ours
    # an HF text tower: open_clip leaves the (new) projection head trainable, we freeze the whole tower
    ours, theirs = _lock_text_sets(replace_text_tower(single, "minilm"))
    assert theirs - ours == {"clip.text.proj.weight"} and not ours - theirs
