"""`spectraclip demo`: the pretrained-model path with a tiny Llama3-MS-CLIP-format checkpoint, the offline
error, and (slow) the full trained path with a shortened recipe."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_models import llama3_layout, randomize, tiny
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.demo.pipeline import DemoOptions, run_demo
from spectraclip.models.checkpoints import save_bundle
from spectraclip.models.loading import load_model


@pytest.fixture()
def published_format_checkpoint(tmp_path):
    """A tiny model saved in the exact key layout of the published Llama3-MS-CLIP file."""
    path = tmp_path / "Llama3_MS_CLIP_weights.pt"
    torch.save(llama3_layout(randomize(tiny("msclip"), seed=5).clip.state_dict()), path)
    return path


def test_pretrained_path_with_published_format_checkpoint(tmp_path, published_format_checkpoint):
    rgb = save_bundle(tiny("rgb"), tmp_path / "rgb-bundle")
    out = tmp_path / "demo"
    res = run_demo(DemoOptions(output_dir=out, model="tiny-test", checkpoint=str(published_format_checkpoint),
                               baseline_model=None, baseline_checkpoint=str(rgb), top_k=3), say=lambda _: None)
    assert res["mode"] == "pretrained" and not (out / "captions.jsonl").exists()  # no training
    saved = json.loads((out / "results.json").read_text())
    for v in ("ms", "rgb"):
        assert 0.0 <= saved["summary"][v]["top1"]["mean"] <= 1.0
    assert saved["baseline"]["all bands"]["n_test"] == 54
    assert [len(q["hits"]) for q in saved["search"]] == [3, 3, 3]
    page = (out / "report.html").read_text()
    assert "Confusion matrices" in page and page.count("data:image/png;base64") >= 3 + 2 * 9
    assert "http://" not in page and "https://" not in page  # opens offline


def test_pretrained_model_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    res = CliRunner().invoke(app, ["demo", "--model", "Llama3-MS-CLIP-Base", "-o", str(tmp_path / "d")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "Llama3_MS_CLIP_weights.pt" in text and "--checkpoint" in text


@pytest.mark.slow
def test_trained_path_end_to_end_with_a_short_recipe(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(DemoOptions(output_dir=out, overrides=["run.max_steps=3"], top_k=2), say=lambda _: None)
    rows = [json.loads(x) for x in (out / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 216 and all(len(r["captions"]) >= 3 for r in rows)
    assert len({c for r in rows for c in r["captions"]}) > 500  # varied sentences, not one template
    for v, bands in (("ms", 13), ("rgb", 3)):
        model = load_model(checkpoint=str(out / "models" / v))
        assert len(model.bands) == bands
    assert res["targets"].keys() >= {"ms_beats_rgb_by_10_points", "ms_top1_at_least_all_band_baseline"}
    assert (out / "report.html").is_file() and json.loads((out / "results.json").read_text())["mode"] == "trained"
