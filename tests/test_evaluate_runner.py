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
from spectraclip.zeroshot.classifier import class_text_embeddings, cosine_logits
from spectraclip.zeroshot.templates import load_templates

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model("eurosat-ms")


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
    pred = cosine_logits(table.vectors, cls).argmax(1)
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
    scores = cosine_logits(table.vectors, cls)
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
                                 "--task", "zeroshot", "--output", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file() and "top1" in result.output
    bad = runner.invoke(app, ["evaluate", "--model", "tiny-test", "--dataset", "eurosat-ms",
                              "--root", str(tmp_path / "missing"), "-o", str(out)])
    assert bad.exit_code == 2 and "download" in bad.output.lower()


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data not available")
def test_real_eurosat_subset_runs(tiny, tmp_path):
    res = evaluate([ModelSpec(label="tiny", model=tiny)],
                   [DatasetSpec("eurosat-ms", str(REAL_DATA / "eurosat-ms-mini"))], templates=["simple"],
                   tasks=["zeroshot"], output_dir=tmp_path, progress=False, plots=False)
    m = res.results["runs"][0]["metrics"]
    assert m["n"] == 54 and sum(m["support"].values()) == 54


# ------------------------------------------------------------------ --embeddings TABLE and the fingerprinted cache
def _seeded(seed: int):
    from fixtures_models import randomize

    from spectraclip.models.loading import load_model

    return randomize(load_model("tiny-test", bands="eurosat-ms"), seed=seed)


def _metrics(res):
    return [(r["templates"], r["task"], r["metrics"]) for r in res.results["runs"]]


def test_evaluate_embeddings_table_matches_encoding_and_reads_no_image(tiny, eurosat_root, tmp_path, monkeypatch):
    from spectraclip.embeddings import write_embeddings
    from spectraclip.errors import FingerprintMismatchError
    from spectraclip.identity import Fingerprints

    specs = [DatasetSpec("eurosat-ms", str(eurosat_root))]
    normal = evaluate([ModelSpec(label="tiny", model=tiny)], specs, templates=["simple"], output_dir=tmp_path / "a",
                      progress=False, plots=False)
    cache = tmp_path / "a" / "embeddings" / "tiny__eurosat-ms.parquet"
    assert read_embeddings(cache).fingerprints == Fingerprints.of(tiny)

    monkeypatch.setattr("spectraclip.inference.encode_images", _no_encoding)
    monkeypatch.setattr("spectraclip.data.base.LabelledDataset.__getitem__", _no_encoding)  # no pixel is read
    given = evaluate([ModelSpec(label="tiny", model=tiny)], specs, templates=["simple"], output_dir=tmp_path / "b",
                     progress=False, plots=False, embeddings=cache)
    assert _metrics(given) == _metrics(normal)
    assert all(r["embeddings_given"] and r["embeddings"] == str(cache) for r in given.results["runs"])
    assert not (tmp_path / "b" / "embeddings").exists()

    # rows match dataset items by path when the ids differ (a table of `spectraclip embed` over other folders)
    table = read_embeddings(cache)
    paths = [str(it.path) for it in EuroSATMS(eurosat_root).items]
    by_id = {it.id: str(it.path) for it in EuroSATMS(eurosat_root).items}
    renamed = write_embeddings(tmp_path / "renamed.parquet", [f"x{n}" for n in range(len(table))], table.vectors,
                               {"path": [by_id[i] for i in table.ids]}, fingerprints=table.fingerprints)
    assert len(paths) == len(table)
    by_path = evaluate([ModelSpec(label="tiny", model=tiny)], specs, templates=["simple"],
                       output_dir=tmp_path / "c", progress=False, plots=False, embeddings=renamed)
    assert _metrics(by_path) == _metrics(normal)

    # another model of the same shape: refused, naming both fingerprints; --force evaluates anyway
    other = _seeded(2)
    with pytest.raises(FingerprintMismatchError) as exc:
        evaluate([ModelSpec(label="seed2", model=other)], specs, templates=["simple"], output_dir=tmp_path / "d",
                 progress=False, plots=False, embeddings=cache)
    assert Fingerprints.of(tiny).model in str(exc.value) and Fingerprints.of(other).model in str(exc.value)
    assert "seed2" in str(exc.value)
    forced = evaluate([ModelSpec(label="seed2", model=other)], specs, templates=["simple"], output_dir=tmp_path / "d",
                      progress=False, plots=False, embeddings=cache, force=True)
    assert forced.results["runs"][0]["n_images"] == 20
    assert forced.results["provenance"]["embeddings"]["forced"] is True
    with pytest.raises(EvaluationError, match="exactly one model"):
        evaluate([ModelSpec(model=tiny), ModelSpec(model=other)], specs, output_dir=tmp_path / "e",
                 progress=False, embeddings=cache)
    stranger = write_embeddings(tmp_path / "s.parquet", ["nope"], np.ones((1, 32)), fingerprints=table.fingerprints)
    with pytest.raises(EvaluationError, match="none of its 1 rows"):
        evaluate([ModelSpec(model=tiny)], specs, output_dir=tmp_path / "f", progress=False, embeddings=stranger)


def test_cache_key_holds_the_preprocessing_fingerprint(eurosat_root, tmp_path, monkeypatch):
    from spectraclip.evaluate.runner import cache_key

    model = _seeded(1)
    spec = [DatasetSpec("eurosat-ms", str(eurosat_root))]
    evaluate([ModelSpec(label="m", model=model)], spec, templates=["simple"], tasks=["zeroshot"],
             output_dir=tmp_path, progress=False, plots=False)
    ds = EuroSATMS(eurosat_root)
    key = cache_key(model, ds)
    model.config.inputs[0].mean[0] += 100.0  # same weights, other normalisation: the cached vectors no longer hold
    assert cache_key(model, ds)["model"] == key["model"] and cache_key(model, ds) != key
    monkeypatch.setattr("spectraclip.inference.encode_images", _no_encoding)
    with pytest.raises(AssertionError, match="encoded"):
        evaluate([ModelSpec(label="m", model=model)], spec, templates=["simple"], tasks=["zeroshot"],
                 output_dir=tmp_path, progress=False, plots=False)


def test_cli_evaluate_embeddings(eurosat_root, tmp_path):
    from spectraclip.cli.main import app

    runner = CliRunner()
    common = ["--model", "tiny-test", "--model-bands", "eurosat-ms", "--dataset", "eurosat-ms", "--root",
              str(eurosat_root), "--templates", "simple", "--task", "zeroshot", "--no-plots"]
    first = runner.invoke(app, ["evaluate", *common, "--output", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    table = tmp_path / "a" / "embeddings" / "tiny-test__eurosat-ms.parquet"
    again = runner.invoke(app, ["evaluate", *common, "--output", str(tmp_path / "b"), "--embeddings", str(table)])
    assert again.exit_code == 0, again.output
    a = json.loads((tmp_path / "a" / "results.json").read_text())["runs"][0]["metrics"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["runs"][0]["metrics"]
    assert a == b and "read 20 embeddings" in again.output
    wrong = runner.invoke(app, ["evaluate", *common[:2], "--model-bands", "s2-l2a", *common[4:],
                                "--output", str(tmp_path / "c"), "--embeddings", str(table)])
    assert wrong.exit_code == 2 and "fingerprint" in " ".join(wrong.output.split())


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data not available")
def test_real_embed_table_evaluated_without_encoding(tiny, tmp_path, monkeypatch):
    """`spectraclip embed` over the real test folder (ids relative to it, so rows match items by path), then
    `evaluate --embeddings`: the numbers of the normal path on the 54 real patches, with no image encoded."""
    from spectraclip.inference import embed_to_table

    root = REAL_DATA / "eurosat-ms-mini"
    files = sorted((root / "test").rglob("*.tif"))
    table, failed, _ = embed_to_table(tiny, files, tmp_path / "test.parquet", bands="eurosat-ms", progress=False)
    assert not failed and len(table) == 54 and table.ids[0].count("/") == 1  # "AnnualCrop/AnnualCrop_…"
    spec = [DatasetSpec("eurosat-ms", str(root))]
    normal = evaluate([ModelSpec(label="tiny", model=tiny)], spec, templates=["simple"], tasks=["zeroshot"],
                      output_dir=tmp_path / "a", progress=False, plots=False)
    monkeypatch.setattr("spectraclip.inference.encode_images", _no_encoding)
    given = evaluate([ModelSpec(label="tiny", model=tiny)], spec, templates=["simple"], tasks=["zeroshot"],
                     output_dir=tmp_path / "b", progress=False, plots=False, embeddings=tmp_path / "test.parquet")
    a, b = normal.results["runs"][0]["metrics"], given.results["runs"][0]["metrics"]
    assert b["n"] == 54 and b["confusion_matrix"] == a["confusion_matrix"]
    assert b["top1"] == pytest.approx(a["top1"]) and b["balanced_accuracy"] == pytest.approx(a["balanced_accuracy"])
