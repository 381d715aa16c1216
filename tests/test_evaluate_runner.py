"""The evaluation runner, its outputs, the embedding cache, band checks and the `evaluate` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from fixtures_datasets import REAL_DATA, make_bigearthnet_v1, make_eurosat
from typer.testing import CliRunner

from spectraclip.data.bigearthnet import BigEarthNet
from spectraclip.data.eurosat import EuroSATMS
from spectraclip.embeddings import read_embeddings
from spectraclip.evaluate import multilabel as ML
from spectraclip.evaluate.runner import (
    BandMismatchError,
    DatasetSpec,
    EvaluationError,
    ModelSpec,
    evaluate,
    pair_datasets,
    pair_models,
)
from spectraclip.evaluate.templates import load_templates
from spectraclip.evaluate.zeroshot import class_text_embeddings, zero_shot_logits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    from spectraclip.models.loading import load_model

    return load_model("tiny-test", bands="eurosat-ms")


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    return make_eurosat(tmp_path_factory.mktemp("eurosat"), per_class=2)


def _no_encoding(*args, **kwargs):
    raise AssertionError("images were encoded although they should not have been")


def test_runner_outputs_and_cache(tiny, eurosat_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    res = evaluate([ModelSpec(label="tiny", model=tiny)], [DatasetSpec("eurosat-ms", str(eurosat_root))],
                   templates=["clip-satellite", "simple"], output_dir=out, progress=False)
    names = {p.name for p in res.files}
    assert {"results.json", "results.csv", "results.md"} <= names
    assert any(n.endswith("__confusion.png") for n in names)
    assert any(n.endswith("__per_class_accuracy.png") for n in names)
    assert any(n.endswith("__embedding_map.png") for n in names)
    data = json.loads((out / "results.json").read_text())
    assert [(r["templates"], r["task"]) for r in data["runs"]] == [
        ("clip-satellite", "zeroshot"), ("clip-satellite", "retrieval"),
        ("simple", "zeroshot"), ("simple", "retrieval")]
    assert "torchmetrics" in data["definitions"]["retrieval"] and "standard" in data["definitions"]["retrieval"]
    assert data["provenance"]["datasets"]["eurosat-ms"]["n"] == 20
    assert data["provenance"]["templates"]["simple"]["templates"] == ["a satellite image of {}."]
    assert any("t-SNE" in n for n in data["notes"])  # 20 images: t-SNE instead of UMAP, and said so
    zs = data["runs"][0]["metrics"]
    assert 0 <= zs["top1"] <= zs["top5"] <= 1 and sum(map(sum, zs["confusion_matrix"])) == 20
    # per-image predictions, one file per zero-shot run, agree with the run's numbers
    from spectraclip.evaluate.metrics import read_predictions

    preds = list(csv.DictReader(open(data["runs"][0]["predictions"])))
    assert len(preds) == 20 and {p["id"] for p in preds} == set(EuroSATMS(eurosat_root).ids)
    assert np.mean([p["correct"] == "1" for p in preds]) == pytest.approx(zs["top1"])
    confusion = np.zeros((10, 10), int)
    classes = data["provenance"]["datasets"]["eurosat-ms"]["classes"]
    for p in preds:
        confusion[classes.index(p["label"]), classes.index(p["predicted"])] += 1
    assert confusion.tolist() == zs["confusion_matrix"]
    assert len(read_predictions(data["runs"][2]["predictions"])) == 20  # the second template set has its own
    assert "predictions" not in data["runs"][1]  # retrieval runs have none
    md = (out / "results.md").read_text()
    assert "| model | templates | eurosat-ms |" in md and "**" in md
    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0] == ["model", "dataset", "templates", "task", "metric", "value"] and len(rows) > 40

    # the embeddings table is the cache: other templates reuse it without encoding
    table = read_embeddings(out / "embeddings" / "tiny__eurosat-ms.parquet")
    assert len(table) == 20 and table.columns["labels"][0] == ["AnnualCrop"]
    monkeypatch.setattr("spectraclip.inference.encode_images", _no_encoding)
    again = evaluate([ModelSpec(label="tiny", model=tiny)], [DatasetSpec("eurosat-ms", str(eurosat_root))],
                     templates=["rs5m"], tasks=["zeroshot"], output_dir=out, progress=False, plots=False)
    assert again.results["runs"][0]["embeddings_cached"] is True
    # same numbers as computing zero-shot directly from the cached vectors
    ds = EuroSATMS(eurosat_root)
    rs5m = load_templates("rs5m")
    assert again.results["runs"][0]["prompt_names"] == rs5m.prompt_names(ds)  # RS5M's class wording
    assert rs5m.prompt_names(ds) != ds.class_prompt_names() and "sealake" in rs5m.prompt_names(ds)
    cls = class_text_embeddings(tiny, rs5m.prompt_names(ds), rs5m).numpy()
    pred = zero_shot_logits(table.vectors, cls).argmax(1)
    truth = ds.targets()[[ds.ids.index(i) for i in table.ids]]
    assert again.results["runs"][0]["metrics"]["top1"] == pytest.approx(float(np.mean(pred == truth)), abs=1e-9)


def test_band_mismatch_fails_before_encoding(tiny, eurosat_root, tmp_path, monkeypatch):
    monkeypatch.setattr("spectraclip.inference.encode_images", _no_encoding)
    rgb = DatasetSpec(dataset=EuroSATMS(eurosat_root, bands="rgb"), label="eurosat-rgb")
    with pytest.raises(BandMismatchError, match="B01") as exc:
        evaluate([ModelSpec(label="tiny", model=tiny)], [rgb], output_dir=tmp_path, progress=False)
    assert "eurosat-rgb" in str(exc.value) and "tiny" in str(exc.value) and "B8A" in str(exc.value)


def test_multilabel_run_matches_metric_functions(tmp_path):
    from spectraclip.models.loading import load_model

    model = load_model("tiny-test", bands="s2-l2a")
    s2 = make_bigearthnet_v1(tmp_path / "ben", with_s1=False)
    res = evaluate([ModelSpec(label="tiny", model=model)], [DatasetSpec("bigearthnet", str(s2))],
                   templates=["simple"], output_dir=tmp_path / "out", progress=False, embedding_map="none")
    runs = {r["task"]: r for r in res.results["runs"]}
    assert set(runs) == {"multilabel", "retrieval"}
    m = runs["multilabel"]["metrics"]
    assert {"mean_of_others", "negative_class", "mAP", "per_class_AP"} <= set(m)
    table = read_embeddings(tmp_path / "out" / "embeddings" / "tiny__bigearthnet.parquet")
    ds = BigEarthNet(s2)
    cls = class_text_embeddings(model, ds.class_prompt_names(), load_templates("simple")).numpy()
    scores = zero_shot_logits(table.vectors, cls)
    targets = ds.targets()[[ds.ids.index(i) for i in table.ids]]
    assert m["mAP"] == pytest.approx(ML.mean_average_precision(scores, targets)[0], abs=1e-6)
    r = runs["retrieval"]["metrics"]
    assert r["n_queries_with_relevant"] == int((targets.sum(0) > 0).sum())
    assert any(f.name.endswith("__per_class_f1.png") for f in res.files)


def test_pairing_rules():
    assert [(s.name, s.checkpoint) for s in pair_models(["a"], ["x", "y"])] == [("a", "x"), ("a", "y")]
    assert [(s.name, s.checkpoint) for s in pair_models([], ["bundle"])] == [(None, "bundle")]
    with pytest.raises(EvaluationError, match="checkpoint"):
        pair_models(["a", "b"], ["x", "y", "z"])
    with pytest.raises(EvaluationError, match="root"):
        pair_datasets(["eurosat-ms", "bigearthnet"], ["r"])


def test_cli_evaluate(eurosat_root, tmp_path):
    from spectraclip.cli.main import app

    out = tmp_path / "cli"
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--model", "tiny-test", "--model-bands", "eurosat-ms",
                                 "--dataset", "eurosat-ms", "--root", str(eurosat_root), "--templates", "simple",
                                 "--task", "zeroshot", "--output-dir", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file() and "top1" in result.output
    bad = runner.invoke(app, ["evaluate", "--model", "tiny-test", "--dataset", "eurosat-ms",
                              "--root", str(tmp_path / "missing"), "--output-dir", str(out)])
    assert bad.exit_code == 2 and "download" in bad.output.lower()


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data not available")
def test_real_eurosat_subset_runs(tiny, tmp_path):
    res = evaluate([ModelSpec(label="tiny", model=tiny)],
                   [DatasetSpec("eurosat-ms", str(REAL_DATA / "eurosat-ms-mini"))], templates=["simple"],
                   tasks=["zeroshot"], output_dir=tmp_path, progress=False, plots=False)
    m = res.results["runs"][0]["metrics"]
    assert m["n"] == 54 and sum(m["support"].values()) == 54
