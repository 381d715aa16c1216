"""The trainer's text-feature cache for a frozen (LiT) text tower."""

from __future__ import annotations

import torch

from spectraclip.models.freeze import apply_freeze
from spectraclip.models.loading import load_model
from spectraclip.train.loop import TextFeatureCache


def test_cache_applies_only_to_a_frozen_text_tower_and_encodes_each_caption_once():
    model = load_model("tiny-test", bands="rgb")
    apply_freeze(model, "all")
    assert not TextFeatureCache.applies(model)
    apply_freeze(model, "lock-text")
    assert TextFeatureCache.applies(model)
    model.train()
    calls = []
    real = model.encode_text
    model.encode_text = lambda tokens, normalize=True: calls.append(len(tokens)) or real(tokens, normalize)
    cache = TextFeatureCache(model)
    caps = ["a forest", "a river", "a forest"]
    feats = cache(caps)
    again = cache(["a river", "a forest", "a lake"])
    assert calls == [2, 1]  # the repeated captions were not encoded again
    assert model.clip.transformer.training  # the tower's mode is restored after encoding in eval mode
    model.eval()
    with torch.no_grad():
        ref = real(model.tokenize(["a forest", "a river", "a lake"]))
    torch.testing.assert_close(feats, ref[[0, 1, 0]])
    torch.testing.assert_close(again, ref[[1, 0, 2]])


def test_forward_with_cached_features_equals_forward_with_tokens():
    model = load_model("tiny-test", bands="rgb").eval()
    x = torch.randn(2, 3, model.image_size, model.image_size)
    tokens = model.tokenize(["fields", "sea"])
    with torch.no_grad():
        a = model(x, tokens)
        b = model(x, model.encode_text(tokens, normalize=True))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)


def test_normalization_measured_on_the_training_data_or_given_in_the_recipe(tmp_path):
    import numpy as np
    from fixtures_train import MSCLIP, tiny_recipe, write_toy_set

    from spectraclip.models.loading import load_model as load
    from spectraclip.train import train
    from spectraclip.train.config import recipe_from_dict

    m = write_toy_set(tmp_path / "d", n=16)
    data = np.stack([np.load(p) for p in sorted((tmp_path / "d").glob("*.npy"))])
    res = train(recipe_from_dict(tiny_recipe(m, tmp_path / "run", model={"stats": "data"}, run={"max_steps": 2})))
    model = load(checkpoint=str(res.bundle))
    np.testing.assert_allclose(model.config.mean, data.mean(axis=(0, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(model.config.std, data.std(axis=(0, 2, 3)), rtol=1e-3)
    given = {"mean": {b: 1000.0 + i for i, b in enumerate(MSCLIP)}, "std": {b: 50.0 for b in MSCLIP}}
    res = train(recipe_from_dict({**tiny_recipe(m, tmp_path / "run2", run={"max_steps": 2}),
                                  "normalization": {"s2": given}}))
    model = load(checkpoint=str(res.bundle))
    assert model.config.mean == [1000.0 + i for i in range(len(MSCLIP))] and model.config.std == [50.0] * 10
