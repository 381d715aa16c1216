"""The zero-shot evaluator as used by the trainer's validation hook, on the embedded EuroSAT-MS subset."""

from __future__ import annotations

import numpy as np
import pytest

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
