"""Template sets (shipped JSON data, user files) and template-ensemble class embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spectraclip.evaluate.templates import (
    TemplateError,
    TemplateSet,
    available_template_sets,
    fill_template,
    humanize_classname,
    load_templates,
)
from spectraclip.evaluate.zeroshot import class_text_embeddings, zero_shot_logits


class FakeTextModel(torch.nn.Module):
    """Deterministic text tower: a prompt's embedding is a fixed random vector per prompt string."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab: dict[str, int] = {}
        self.calls: list[int] = []

    def tokenize(self, texts):
        ids = [self.vocab.setdefault(t, len(self.vocab)) for t in texts]
        return torch.tensor(ids)

    def vector(self, text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(abs(hash(text)) % (2**31))
        return torch.randn(self.dim, generator=g) * 3.0

    def encode_text(self, tokens, normalize: bool = False):
        self.calls.append(len(tokens))
        inv = {v: k for k, v in self.vocab.items()}
        return torch.stack([self.vector(inv[int(t)]) for t in tokens])


def test_shipped_sets_load_and_have_placeholders():
    names = available_template_sets()
    assert {"clip-satellite", "rs5m", "msclip"} <= set(names)
    for name in names:
        ts = load_templates(name)
        assert ts.name == name and ts.templates
        assert all("{}" in t or "{c}" in t for t in ts.templates)


def test_user_file_list_and_object(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(["a photo of {c}.", "{} from above"]))
    ts = load_templates(str(p))
    assert ts.name == "mine" and ts.fill("forest") == ["a photo of forest.", "forest from above"]
    q = tmp_path / "obj.json"
    q.write_text(json.dumps({"name": "obj", "templates": ["x {}"]}))
    assert load_templates(q).templates == ["x {}"]


def test_bad_template_sets_name_the_problem(tmp_path):
    with pytest.raises(TemplateError, match="nope"):
        load_templates("nope")
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(["no placeholder"]))
    with pytest.raises(TemplateError, match="no placeholder"):
        load_templates(p)


def test_humanize_and_fill():
    assert humanize_classname("HerbaceousVegetation") == "herbaceous vegetation"
    assert humanize_classname("SeaLake") == "sea lake"
    assert humanize_classname("annual_crop") == "annual crop"
    assert fill_template("an image of {c} {}", "x") == "an image of x x"


def test_class_text_embeddings_is_normalised_mean_of_normalised_prompts():
    model = FakeTextModel()
    ts = TemplateSet("t", ["a {}.", "b {}.", "c {}."])
    emb = class_text_embeddings(model, ["forest", "river"], ts, batch_size=4)
    assert emb.shape == (2, 8)
    assert model.calls == [4, 2]  # batched
    for k, c in enumerate(["forest", "river"]):
        norm = torch.nn.functional.normalize
        vs = torch.stack([norm(model.vector(t.format(c)), dim=0) for t in ts.templates])
        ref = torch.nn.functional.normalize(vs.mean(0), dim=0)
        torch.testing.assert_close(emb[k], ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_zero_shot_logits_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    img, cls = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    a = zero_shot_logits(img, cls)
    b = zero_shot_logits(torch.tensor(img), torch.tensor(cls)).numpy()
    assert a.shape == (5, 3) and np.abs(a).max() <= 100 + 1e-9
    np.testing.assert_allclose(a, b, atol=1e-4)
