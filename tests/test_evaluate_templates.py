"""Template sets (shipped JSON data, user files, the papers' published sets and class wording) and
template-ensemble class embeddings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spectraclip.errors import SpectraclipError
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classes import humanize_classname
from spectraclip.zeroshot.classifier import class_text_embeddings, cosine_logits
from spectraclip.zeroshot.templates import (
    TemplateError,
    TemplateSet,
    available_template_sets,
    fill_template,
    load_templates,
)

# The published sets, pinned: count, sha256 of the templates joined by "\n", and literal templates.
PUBLISHED = {
    # IBM/MS-CLIP msclip/inference/classname_and_prompt/MSCLIP.py
    "msclip": (50, "ac09e940977b2f73740aabc9a78b7e1ac45a78d5b9e7b0e1d494266b615b58e9",
               {0: "a satellite image showing {c}.", 6: "The image shows {c}", 16: "a low resolution satellite "
                "image of the {c}.", 49: "an aerial image of a cool {c}."}),
    # om-ai-lab/RS5M inference/classname_and_prompt/RSEuroSAT.py
    "rs5m": (105, "5d81961f1eed8ff0ee90778d056e695ba6fd396da877a4d7d8eb9d991a2916ff",
             {0: "a remote sensing image of many {}.", 35: "an aerial image of many {}.",
              70: "a satellite image of many {}.", 104: "a satellite image of a cool {}."}),
    # openai/CLIP data/prompts.md, EuroSAT
    "clip": (3, "9bc85d9f1798d03b9991ddfa721493693040d8c222e2f8d8bbf5a0c3ca2507e8",
             {0: "a centered satellite photo of {}.", 2: "a centered satellite photo of the {}."}),
}
EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


class FakeDataset:
    """The parts of a LabelledDataset that class wording needs."""

    def __init__(self, name: str, classes: list[str]) -> None:
        self.name, self.classes = name, classes

    def class_prompt_names(self) -> list[str]:
        return [humanize_classname(c) for c in self.classes]


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
        out = torch.stack([self.vector(inv[int(t)]) for t in tokens])
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def test_shipped_sets_load_and_have_placeholders_and_a_source():
    names = available_template_sets()
    assert {"msclip", "rs5m", "clip", "spectraclip-8", "spectraclip-rs12", "clip-satellite", "simple"} <= set(names)
    for name in names:
        ts = load_templates(name)
        assert ts.name == name and ts.templates and ts.path == f"spectraclip:{name}"
        assert all("{}" in t or "{c}" in t for t in ts.templates)
        assert ts.source and ts.description  # every shipped set says where it comes from
        assert len(set(ts.templates)) == len(ts.templates)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_sets_are_the_papers_templates(name):
    count, digest, literal = PUBLISHED[name]
    ts = load_templates(name)
    assert len(ts.templates) == count
    assert ts.sha256() == digest
    for i, t in literal.items():
        assert ts.templates[i] == t
    assert ts.to_dict()["sha256"] == digest


def test_our_own_sets_kept_their_templates_under_their_own_names():
    assert len(load_templates("spectraclip-8").templates) == 8
    assert load_templates("spectraclip-8").templates[1] == "a Sentinel-2 image of {}."
    assert len(load_templates("spectraclip-rs12").templates) == 12
    assert load_templates("spectraclip-rs12").templates[-1] == "there is {} in this satellite image."
    assert load_templates("clip-satellite").templates == load_templates("clip").templates
    assert not load_templates("spectraclip-8").classnames and load_templates("msclip").classnames


def test_eurosat_wording_under_msclip_is_the_papers():
    # Llama3-MS-CLIP's benchmark code (benchmark_tool.zeroshot_get_dataset) lower-cases the EuroSAT
    # ImageFolder class folders, so the prompts say e.g. "a satellite image of annualcrop."
    ts = load_templates("msclip")
    ds = FakeDataset("eurosat-ms", EUROSAT)
    assert ts.prompt_names(ds) == ["annualcrop", "forest", "herbaceousvegetation", "highway", "industrial",
                                   "pasture", "permanentcrop", "residential", "river", "sealake"]
    assert load_templates("rs5m").prompt_names(ds) == ts.prompt_names(ds)  # RS5M's code does the same
    clip = load_templates("clip").prompt_names(ds)  # CLIP's data/prompts.md wording
    assert clip[EUROSAT.index("HerbaceousVegetation")] == "brushland or shrubland"
    assert clip[EUROSAT.index("SeaLake")] == "lake or sea"
    # sets without wording, or datasets a set has none for, use the dataset's own prompt names
    assert load_templates("spectraclip-8").prompt_names(ds) == ds.class_prompt_names()
    other = FakeDataset("folder", ["Wheat", "Barley"])
    assert ts.prompt_names(other) == ["wheat", "barley"]


def test_msclip_wording_of_meterml_and_bigearthnet():
    from spectraclip.data.bigearthnet import label_tables
    from spectraclip.data.meterml import CLASSES as METER_CLASSES

    ts = load_templates("msclip")
    meter = dict(zip(METER_CLASSES, ts.prompt_names(FakeDataset("meter-ml", list(METER_CLASSES))), strict=True))
    assert meter["Negative"] == "other features" and meter["Mines"] == "coal mines"
    ben = label_tables()["labels19"]
    assert ts.prompt_names(FakeDataset("bigearthnet", ben)) == ben  # class_sets[19] verbatim
    # 43 classes: the paper has no wording for all of them, so none of it is used
    partial = FakeDataset("bigearthnet", [*ben[:3], "Rice fields"])
    assert ts.prompt_names(partial) == partial.class_prompt_names()


def test_user_set_may_carry_class_wording(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"name": "mine", "templates": ["{} from above"], "source": "me",
                             "classnames": {"eurosat-ms": {c: c.upper() for c in EUROSAT}}}))
    ts = load_templates(p)
    assert ts.source == "me" and ts.path == str(p)
    assert ts.prompt_names(FakeDataset("eurosat-ms", EUROSAT))[0] == "ANNUALCROP"
    p.write_text(json.dumps({"templates": ["{}"], "classnames": {"eurosat-ms": {"Forest": 3}}}))
    with pytest.raises(TemplateError, match="classnames"):
        load_templates(p)


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
    with pytest.raises(SpectraclipError):
        load_templates("nope")
    with pytest.raises(ValueError):
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
    emb = class_text_embeddings(model, ["forest", "river"], ts, batch_size=4, cache=False)  # open_clip's builder
    assert emb.shape == (2, 8)
    assert model.calls == [3, 3]  # batched by whole classes: 4 prompts per pass -> 1 class of 3 templates
    model.calls.clear()
    torch.testing.assert_close(class_text_embeddings(model, ["forest", "river"], ts, batch_size=64, cache=False),
                               emb)
    assert model.calls == [6]
    # the cached path (each prompt's embedding from the disk cache) averages the same way
    torch.testing.assert_close(class_text_embeddings(model, ["forest", "river"], ts), emb, atol=1e-6, rtol=0)
    for k, c in enumerate(["forest", "river"]):
        norm = torch.nn.functional.normalize
        vs = torch.stack([norm(model.vector(t.format(c)), dim=0) for t in ts.templates])
        ref = torch.nn.functional.normalize(vs.mean(0), dim=0)
        torch.testing.assert_close(emb[k], ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_zero_shot_logits_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    img, cls = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    a = cosine_logits(img, cls)
    b = cosine_logits(torch.tensor(img), torch.tensor(cls)).numpy()
    assert a.shape == (5, 3) and np.abs(a).max() <= 100 + 1e-9
    np.testing.assert_allclose(a, b, atol=1e-4)


def _reference_class_embeddings(model, classnames, templates):
    """The implementation before open_clip's builder: normalise each prompt, average per class, renormalise."""
    norm = torch.nn.functional.normalize
    with torch.inference_mode():
        out = []
        for c in classnames:
            emb = model.encode_text(model.tokenize([fill_template(t, c) for t in templates]))
            out.append(norm(norm(emb.float(), dim=-1).mean(0), dim=0))
    return torch.stack(out)


def test_open_clip_builder_equals_the_previous_implementation_on_tiny_test():
    torch.manual_seed(0)
    model = load_model("tiny-test").eval()
    ts = load_templates("msclip")  # {c} placeholders, 50 templates
    names = ["annual crop land", "forest", "lake or sea"]
    ours = class_text_embeddings(model, names, ts, batch_size=64)
    ref = _reference_class_embeddings(model, names, ts.templates)
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ours[0], ours[1])  # the classes differ: the test could fail
    # probabilities: softmax of the model's logit scale x cosine to those class embeddings
    from spectraclip.zeroshot.classes import ClassSpec
    from spectraclip.zeroshot.classifier import ZeroShotClassifier, logit_scale

    img = torch.nn.functional.normalize(torch.randn(4, ref.shape[1]), dim=-1).numpy()
    probs = ZeroShotClassifier.build(model, [ClassSpec(n, n) for n in names], ts).probabilities(img)
    scale = logit_scale(model)
    assert scale == pytest.approx(float(model.clip.logit_scale.detach().exp())) and scale < 100
    expected = torch.softmax(scale * torch.from_numpy(img) @ ref.T, dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


L2A = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2-l2a-examples"


@pytest.mark.skipif(not L2A.is_dir(), reason="needs ../shared/data")
def test_classify_defaults_to_the_published_50_and_follows_the_published_recipe(tmp_path):
    """`spectraclip classify` (no --templates) scores like Llama3-MS-CLIP's run_inference_classification:
    per class, the 50 templates filled with `str.format(c=...)`, each embedding L2-normalised, averaged,
    renormalised; probabilities are the softmax of the model's logit scale x cosine (the package's one rule)."""
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.inference import encode_images

    classes = ["ocean", "snow", "rural"]
    out = tmp_path / "c.csv"
    res = CliRunner().invoke(app, ["classify", str(L2A), "--bands", "s2-l2a", "-m", "tiny-test", "--resize",
                                   "--precision", "fp32", "--classes",
                                   ",".join(classes), "--device", "cpu", "--workers", "0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "50 templates" in res.output
    rows = list(csv.DictReader(out.open()))
    got = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])

    model = load_model("tiny-test").eval().set_input_options(allow_resize=True)  # as the CLI loads it
    enc = encode_images(model, sorted(L2A.glob("*.tif")), bands="s2-l2a", progress=False)
    assert [r["id"] for r in rows] == enc.ids
    templates = load_templates("msclip").templates
    with torch.no_grad():
        weights = []
        for c in classes:
            e = model.encode_text(model.tokenize([t.format(c=c) for t in templates]))
            e = torch.nn.functional.normalize(e, dim=-1).mean(dim=0)
            weights.append(e / e.norm())
        from spectraclip.zeroshot.classifier import logit_scale

        logits = logit_scale(model) * torch.from_numpy(enc.vectors) @ torch.stack(weights, dim=1)
    np.testing.assert_allclose(got, logits.softmax(dim=-1).numpy(), atol=1e-5)
