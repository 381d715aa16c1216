"""ONNX export of the image tower: ONNX Runtime gives the model's fp32 embeddings; the CLI writes and checks it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_models import images
from typer.testing import CliRunner

from spectraclip.cli.main import app
from spectraclip.models.export import ExportError, export_model, verify_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("msclip", seed=5)


def test_onnx_runtime_matches_fp32_at_any_batch_size(model, tmp_path):
    path = export_model(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == f"pixels_{model.groups[0]}" and inp.shape[1:] == [10, 32, 32]
    for n in (1, 5):  # batch size is dynamic
        x = images(model, n, seed=n)
        got = session.run(None, {inp.name: x.numpy()})[0]
        with torch.inference_mode():
            ref = model.encode_image(x).numpy()
        assert got.shape == (n, model.embed_dim)
        assert (got * ref).sum(1).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    prep = json.loads(meta["spectraclip.preprocessing"])
    assert prep["inputs"][0]["bands"] == list(model.bands.names) and prep["image_size"] == 32
    assert meta["model_fingerprint"] and verify_onnx(model, path) >= 0.9999


def test_unknown_format_is_an_error_naming_it(model, tmp_path):
    with pytest.raises(ExportError, match="--format 'tflite'"):
        export_model(model, tmp_path / "m.tflite", "tflite")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_export_writes_and_verifies(tmp_path):
    out = tmp_path / "model.onnx"
    res = CliRunner().invoke(app, ["export", "--format", "onnx", "-m", "tiny-test", "--model-bands", "msclip",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "minimum cosine" in res.output
