"""The disk text-embedding cache: hits per model + tokenizer + exact prompts, misses otherwise, atomic files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_models import randomize

from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classifier import class_text_embeddings
from spectraclip.zeroshot.text import encode_texts
from spectraclip.zeroshot.text_cache import CACHE_ENV, TextEmbeddingCache, cached_text_embeddings


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def model(tiny_model):
    return tiny_model("msclip", seed=2)


def counting(model):
    """Wrap `model.tokenize` to count the prompts that get encoded."""
    calls = {"n": 0}
    real = model.tokenize

    def tokenize(texts):
        calls["n"] += len(texts)
        return real(texts)

    model.tokenize = tokenize
    return calls


def test_class_prompts_are_encoded_once(model, cache_dir):
    calls = counting(model)
    names, templates = ["forest", "river", "highway"], ["a satellite image of {}.", "{} seen from above"]
    first = class_text_embeddings(model, names, templates)
    assert calls["n"] == 6
    again = class_text_embeddings(model, names, templates)
    assert calls["n"] == 6  # read back from disk
    torch.testing.assert_close(first, again)
    files = list(cache_dir.rglob("*.npy"))
    assert len(files) == 1 and files[0].parent.parent == cache_dir / "text"
    assert not list(cache_dir.rglob("*.tmp"))  # atomic write left nothing behind
    class_text_embeddings(model, names, [*templates, "an aerial photo of {}"])  # another template set
    assert calls["n"] == 6 + 9
    class_text_embeddings(model, names, templates, cache=False)
    assert calls["n"] == 6 + 9 + 6


def test_another_model_misses_and_queries_are_cached_too(model):
    other = randomize(load_model("tiny-test", bands="msclip"), seed=9).eval()
    a, b = encode_texts(model, ["flooded fields"]), encode_texts(other, ["flooded fields"])
    assert not np.allclose(a, b)
    calls = counting(model)
    np.testing.assert_array_equal(encode_texts(model, ["flooded fields"]), a)
    assert calls["n"] == 0


def test_disabled_and_corrupt_entries(model, monkeypatch, cache_dir):
    prompts = ["a", "b"]
    n = {"calls": 0}

    def encode(texts):
        n["calls"] += 1
        return np.ones((len(texts), 4), np.float32)

    cached_text_embeddings(model, prompts, encode)
    path = TextEmbeddingCache().path(model, prompts)
    path.write_bytes(b"not an npy file")
    assert cached_text_embeddings(model, prompts, encode).shape == (2, 4) and n["calls"] == 2  # re-encoded
    monkeypatch.setenv(CACHE_ENV, "off")
    assert not TextEmbeddingCache().enabled
    cached_text_embeddings(model, prompts, encode)
    cached_text_embeddings(model, prompts, encode)
    assert n["calls"] == 4
