"""Training on tiny models (CPU): loss goes down, zero-init band extension keeps the RGB path at step 0,
feature-cached accumulation equals the big-batch gradient, bad recipes/data fail before training."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_train import MSCLIP, tiny_recipe, write_toy_set

from spectraclip.bands import MissingBandError
from spectraclip.train.config import ModelRecipe, recipe_from_dict
from spectraclip.train.distributed import DistInfo
from spectraclip.train.loop import contrastive_step, make_loss, train
from spectraclip.train.model_setup import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_loss_decreases_and_bundle_loads(tmp_path):
    m = write_toy_set(tmp_path / "d", n=32, val=8)
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows.append({"id": "gone", "path": "missing.npy", "bands": "msclip", "captions": ["x"]})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = recipe_from_dict(tiny_recipe(m, tmp_path / "run", run={"max_steps": 24, "plot": True}))
    res = train(r)
    recs = [json.loads(x) for x in res.metrics.read_text().splitlines()]
    losses = [x["loss"] for x in recs if x["kind"] == "train"]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    vals = [x for x in recs if x["kind"] == "val"]
    assert vals and {"val_loss", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"} <= set(vals[-1])
    assert res.skipped_rows == 1  # the missing image, counted
    assert res.plot is not None and res.plot.exists()
    from spectraclip.models.loading import load_model

    model = load_model(checkpoint=str(res.bundle))
    assert model.bands.to_list() == MSCLIP
    prov = model.config.provenance["training"]
    assert prov["recipe"]["model"]["base"] == "tiny-test" and prov["data"]["skipped_rows"] == 1


def test_zero_init_extension_keeps_rgb_path(tmp_path):
    from spectraclip.models.checkpoints import save_bundle
    from spectraclip.models.loading import load_model

    rgb = load_model("tiny-test", bands="rgb")
    save_bundle(rgb, tmp_path / "rgb")
    model, _ = build_model(ModelRecipe(base=str(tmp_path / "rgb"), bands="msclip", init_new_bands="zero"))
    model.eval()
    x_rgb = torch.randn(3, 3, 32, 32)
    x = torch.randn(3, 10, 32, 32) * 5
    for i, b in enumerate(("B04", "B03", "B02")):
        x[:, MSCLIP.index(b)] = x_rgb[:, i]
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x), rgb.encode_image(x_rgb), atol=1e-6)
    mean = dict(zip(model.config.bands, model.config.mean, strict=True))
    assert [mean[b] for b in ("B04", "B03", "B02")] == pytest.approx(rgb.config.mean)


def _batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, 32, 32, generator=g)


def test_accumulation_equals_big_batch_gradient():
    torch.manual_seed(0)
    model, _ = build_model(ModelRecipe(base="tiny-test"))
    loss_fn = make_loss(recipe_from_dict({}).loss, DistInfo())
    img = _batch(8)
    tok = model.tokenize([f"caption number {i}" for i in range(8)])

    def grads(micro):
        model.zero_grad(set_to_none=True)
        loss = contrastive_step(model, loss_fn, micro)
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    big_loss, big = grads([(img, tok)])
    acc_loss, acc = grads([(img[:4], tok[:4]), (img[4:], tok[4:])])
    assert acc_loss == pytest.approx(big_loss, rel=1e-5)
    assert big.keys() == acc.keys()
    for n in big:
        assert torch.allclose(big[n], acc[n], atol=1e-6, rtol=1e-4), n


def test_missing_band_fails_before_training(tmp_path):
    m = write_toy_set(tmp_path / "d", n=8)
    r = recipe_from_dict(tiny_recipe(m, tmp_path / "run", model={"bands": ["B01"] + MSCLIP}))
    with pytest.raises(MissingBandError, match="B01"):
        train(r)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_siglip_and_lora_run(tmp_path):
    m = write_toy_set(tmp_path / "d", n=16)
    r = recipe_from_dict(tiny_recipe(m, tmp_path / "run", loss={"kind": "siglip"},
                                     model={"freeze": "lora", "lora_rank": 2},
                                     optim={"accum_steps": 2}, run={"max_steps": 2}))
    res = train(r)
    assert res.steps == 2 and res.final_loss is not None
    from safetensors.torch import load_file

    assert not [k for k in load_file(res.bundle / "model.safetensors") if "lora" in k]  # merged on export
    from spectraclip.models.loading import load_model

    trained = load_file(res.bundle / "model.safetensors")["logit_bias"]
    loaded = load_model(checkpoint=str(res.bundle))  # the SigLIP bias is part of the rebuilt architecture
    assert torch.equal(loaded.clip.logit_bias.detach(), trained)
