"""The zero-shot evaluator as used by the trainer's validation hook, on the embedded EuroSAT-MS subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_models import randomize, tiny

from spectraclip.data.registry import load_dataset, needs_root
from spectraclip.evaluate.runner import EvaluationError, pair_datasets
from spectraclip.evaluate.zeroshot import evaluate_zeroshot
from spectraclip.models.loading import load_model
from spectraclip.train.validate import zeroshot_hook


def test_embedded_dataset_needs_no_root():
    assert not needs_root("eurosat-ms-mini") and needs_root("eurosat-ms")
    specs = pair_datasets(["eurosat-ms-mini", "eurosat-ms"], ["/data/eurosat"])
    assert specs[0].root is None and specs[1].root == "/data/eurosat"
    with pytest.raises(EvaluationError, match="root"):
        pair_datasets(["eurosat-ms"], [])
    ds = load_dataset("eurosat-ms-mini", None, split="test")
    assert len(ds) == 54 and len(ds.classes) == 10 and "B8A" in ds.bands


def test_hook_reports_the_evaluator_numbers():
    model = load_model("tiny-test", bands="msclip")
    direct = evaluate_zeroshot(model, "eurosat-ms-mini", "msclip")
    assert direct["n"] == 54 and 0.0 <= direct["top1"] <= 1.0
    out = zeroshot_hook("eurosat-ms-mini", "msclip")(model, 0)
    assert out == {"zeroshot/top1": direct["top1"], "zeroshot/balanced_accuracy": direct["balanced_accuracy"]}
    assert np.isclose(direct["top1"] * 54, round(direct["top1"] * 54))


def test_evaluator_uses_the_template_sets_class_wording(monkeypatch):
    from spectraclip.evaluate import zeroshot
    from spectraclip.evaluate.metrics import classification_metrics
    from spectraclip.zeroshot.templates import load_templates

    torch.manual_seed(1)
    model = randomize(tiny("msclip"), seed=7)
    ds = load_dataset("eurosat-ms-mini", None, split="test")
    _, vectors, labels = zeroshot.encode_labelled(model, ds)
    seen: list[list[str]] = []
    build = zeroshot.class_text_embeddings
    monkeypatch.setattr(zeroshot, "class_text_embeddings",
                        lambda m, names, ts, **kw: seen.append(names) or build(m, names, ts, **kw))
    for name in ("msclip", "clip"):
        ts = load_templates(name)
        cls = build(model, ts.prompt_names(ds), ts).numpy()
        expected = classification_metrics(zeroshot.cosine_logits(vectors, cls), labels, ds.classes)
        got = zeroshot.evaluate_zeroshot(model, ds, name)
        assert seen[-1] == ts.prompt_names(ds)
        assert got["top1"] == expected["top1"] and got["balanced_accuracy"] == expected["balanced_accuracy"]
    assert load_templates("msclip").prompt_names(ds)[0] == "annualcrop"
    assert load_templates("clip").prompt_names(ds)[0] == "annual crop land" == ds.class_prompt_names()[0]
