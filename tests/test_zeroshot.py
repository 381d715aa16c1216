"""The zero-shot package: one --classes grammar for every command, templates declared by bundles, one
logit-scale rule, and text encoding that never changes the caller's model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from fixtures_scenes import make_multiband
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.models.checkpoints import save_bundle
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classes import ClassesError, ClassSpec, parse_classes
from spectraclip.zeroshot.classifier import (
    FALLBACK_TEMPLATES,
    ZeroShotClassifier,
    default_templates,
    logit_scale,
)
from spectraclip.zeroshot.text import encode_texts

BUNDLES_V1 = Path(__file__).parent / "data" / "bundles_v1"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny L1C bundle that declares the one-template `simple` set."""
    model = load_model("tiny-test", bands="s2-l1c")
    model.config.zeroshot["templates"] = "simple"
    return save_bundle(model, tmp_path_factory.mktemp("zs") / "bundle")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_multiband(tmp_path_factory.mktemp("zs-scene") / "scene.tif", size=64)


# -- the --classes grammar -------------------------------------------------------------------------------------
def test_one_grammar_repeated_comma_words_preset_and_file(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# mine\nWetland=marsh or swamp\nRoads\n")
    got = parse_classes(["Forest", "River,Industrial", "Water=open water", f"@{f}"])
    assert [c.name for c in got] == ["Forest", "River", "Industrial", "Water", "Wetland", "Roads"]
    assert [c.prompt for c in got][:5] == ["forest", "river", "industrial buildings or commercial buildings",
                                           "open water", "marsh or swamp"]
    assert [c.name for c in parse_classes("eurosat")][:2] == ["AnnualCrop", "Forest"]
    assert len(parse_classes(["eurosat"])) == 10
    assert [c.name for c in parse_classes(None, f)] == ["Wetland", "Roads"]


def test_camel_case_names_never_reach_a_prompt_verbatim():
    """`AnnualCrop` is worded by the EuroSAT preset, an unknown CamelCase name is de-CamelCased."""
    got = parse_classes("AnnualCrop,SolarFarm,HerbaceousVegetation")
    assert [c.prompt for c in got] == ["annual crop land", "solar farm", "brushland or shrubland"]


@pytest.mark.parametrize("values, match", [(["a"], "at least two"), (["a,a"], "repeats"), (["=x,b"], "name"),
                                           (["@/nonexistent/c.txt"], "not found")])
def test_bad_class_lists_name_the_problem(values, match):
    with pytest.raises(ClassesError, match=match):
        parse_classes(values)


# -- declared templates, the logit scale ---------------------------------------------------------------------------
def test_a_bundle_declares_its_templates_and_old_bundles_fall_back(bundle):
    model = load_model(checkpoint=str(bundle))
    assert model.config.zeroshot == {"templates": "simple"}
    choice = default_templates(model)
    assert choice.origin == "declared" and choice.templates.name == "simple"
    assert default_templates(model, "clip").origin == "given"
    old = load_model(checkpoint=str(BUNDLES_V1 / "single"))
    assert old.config.zeroshot == {}
    fb = default_templates(old)
    assert fb.origin == "fallback" and fb.templates.name == FALLBACK_TEMPLATES
    reg = load_model("tiny-test")
    assert default_templates(reg).origin == "fallback"


def test_the_published_model_declares_msclip():
    from spectraclip.models.registry import model_config

    assert model_config("Llama3-MS-CLIP-Base").zeroshot == {"templates": "msclip"}


def test_logit_scale_rule_is_the_models_learned_temperature_capped_at_100():
    model = load_model("tiny-test")
    assert logit_scale(model) == pytest.approx(float(model.clip.logit_scale.detach().exp()))
    with torch.no_grad():
        model.clip.logit_scale.fill_(np.log(1000.0))
    assert logit_scale(model) == 100.0
    assert logit_scale(object()) == 100.0  # a model without a scale: CLIP's fixed 100


def test_encode_texts_never_moves_or_retrains_the_callers_model():
    model = load_model("tiny-test").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = encode_texts(model, ["a river", "a forest"], cache=False)
    assert model.training  # its mode is restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


# -- the commands -------------------------------------------------------------------------------------------------
def test_map_keeps_every_repeated_class(bundle, scene, tmp_path):
    """Defect: `map --classes Forest --classes River --classes Industrial` kept only the last class."""
    out = tmp_path / "m.tif"
    res = CliRunner().invoke(app, ["map", str(scene), "-c", str(bundle), "--classes", "Forest", "--classes", "River",
                                   "--classes", "Industrial", "-o", str(out), "--device", "cpu", "--precision",
                                   "fp32", "--stride", "32"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert json.loads(ds.tags()["classes"]) == ["Forest", "River", "Industrial"]
        assert ds.count == 4
        tags = json.loads(ds.tags()["spectraclip_map"])
    assert tags["templates"] == "simple" and tags["templates_origin"] == "declared"
    assert "templates simple (declared)" in res.output


def test_classify_accepts_presets_and_uses_the_declared_templates_and_the_learned_scale(bundle, scene, tmp_path):
    """Defects: `classify --classes eurosat` was refused; classify used msclip for every model and a fixed
    scale of 100 while map used the model's learned scale."""
    runner = CliRunner()
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["classify", str(scene), "-c", str(bundle), "--classes", "eurosat", "--resize",
                              "--device", "cpu", "--precision", "fp32", "-o", str(out), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "simple (1 templates, declared by the model)" in res.output
    import csv

    row = next(csv.DictReader(out.open()))
    assert row["templates"] == "simple"
    model = load_model(checkpoint=str(bundle))
    assert float(row["logit_scale"]) == pytest.approx(logit_scale(model))
    assert len([k for k in row if k.startswith("p_")]) == 10
    # the CSV's probabilities are the library's, under the same rule
    from spectraclip.inference import encode_images

    enc = encode_images(model.set_input_options(allow_resize=True), [scene], progress=False)
    zs = ZeroShotClassifier.build(model, parse_classes("eurosat"))
    probs = zs.probabilities(enc.vectors)[0]
    got = np.array([float(row[f"p_{c.name}"]) for c in zs.classes])
    np.testing.assert_allclose(got, probs, atol=1e-5)


def test_classify_words_a_preset_as_the_template_set_does_for_evaluate():
    """`msclip` carries the Llama3-MS-CLIP code's wording of EuroSAT ("annualcrop"): classify and evaluate prompt
    the same words; an explicit `Name=words` is kept."""
    from spectraclip.zeroshot.templates import load_templates

    model = load_model("tiny-test")
    zs = ZeroShotClassifier.build(model, parse_classes("eurosat"), "msclip")
    ds_words = load_templates("msclip").classnames["eurosat-ms"]
    assert [c.prompt for c in zs.classes] == [ds_words[c.name] for c in zs.classes]
    assert ZeroShotClassifier.build(model, parse_classes("eurosat"), "clip-satellite").classes[0].prompt == \
        "annual crop land"  # a set without wording keeps the preset's
    mixed = ZeroShotClassifier.build(model, parse_classes("AnnualCrop=farmland,Forest"), "msclip").classes
    assert [c.prompt for c in mixed] == ["farmland", "forest"]


def test_a_bundle_may_declare_a_whole_set_with_its_class_wording(tmp_path):
    model = load_model("tiny-test")
    model.config.zeroshot["templates"] = {"name": "mine", "templates": ["an image of {}."],
                                          "classnames": {"x": {"River": "flowing water"}}}
    loaded = load_model(checkpoint=str(save_bundle(model, tmp_path / "b")))
    zs = ZeroShotClassifier.build(loaded, parse_classes("River,Forest"))
    assert zs.templates.templates.name == "mine" and zs.templates.origin == "declared"
    assert [c.prompt for c in zs.classes] == ["river", "forest"]  # all or nothing: "Forest" has no wording
    assert ZeroShotClassifier.build(loaded, parse_classes("River,Lake=a lake")).classes[0].prompt == "flowing water"


def test_classifier_probabilities_are_the_same_for_numpy_and_torch():
    model = load_model("tiny-test")
    zs = ZeroShotClassifier.build(model, [ClassSpec("a", "sea"), ClassSpec("b", "snow")], "simple")
    img = torch.nn.functional.normalize(torch.randn(3, model.embed_dim), dim=-1)
    np.testing.assert_allclose(zs.probabilities(img), zs.probabilities(img.numpy()), atol=1e-6)
    assert "logit scale" in zs.describe() and zs.metadata()["templates"] == "simple"


def test_evaluate_uses_each_models_declared_templates_and_reports_calibration(bundle, tmp_path):
    from spectraclip.evaluate.runner import DatasetSpec, ModelSpec, evaluate

    res = evaluate([ModelSpec(checkpoint=str(bundle), label="m")], [DatasetSpec("eurosat-ms-mini", None, "test")],
                   tasks=["zeroshot"], output_dir=tmp_path / "ev", progress=False, plots=False, precision="fp32")
    run = res.results["runs"][0]
    assert run["templates"] == "simple" and run["templates_origin"] == "declared"
    cal = run["metrics"]["calibration"]
    assert 0.0 <= cal["ece"] <= 1.0 and cal["accuracy"] == pytest.approx(run["metrics"]["top1"])
    assert res.results["provenance"]["templates"]["simple"]["origin"] == "declared"


def test_expected_calibration_error_of_known_cases():
    from spectraclip.evaluate.metrics import expected_calibration_error

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert expected_calibration_error(probs, [0, 0, 0, 1])["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)
    perfect = np.eye(3)
    assert expected_calibration_error(perfect, [0, 1, 2])["ece"] == 0.0
