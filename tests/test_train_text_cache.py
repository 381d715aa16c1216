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
