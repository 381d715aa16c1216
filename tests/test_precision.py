"""Precision modes: the accuracy gate against fp32 on real EuroSAT-MS patches, the default rule, the wiring."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_models import randomize

from spectraclip.inference import embed_to_table, encode_images
from spectraclip.models import precision as P
from spectraclip.models.loading import load_model
from spectraclip.zeroshot.classifier import class_text_embeddings
from spectraclip.zeroshot.templates import load_templates

EUROSAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eurosat-ms-mini"
needs_data = pytest.mark.skipif(not EUROSAT.is_dir(), reason="needs ../shared/data/eurosat-ms-mini")
needs_int8 = pytest.mark.skipif(not P.int8_available(), reason="needs onnxruntime + onnx")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path / "cache"))  # int8 trunks are cached there


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("msclip", seed=3)


@pytest.fixture(scope="module")
def patches() -> list[Path]:
    return sorted((EUROSAT / "test").rglob("*.tif"))


def test_unknown_or_impossible_modes_are_errors_naming_the_option():
    with pytest.raises(ValueError, match="--precision 'fp8'"):
        P.resolve_precision("fp8")
    with pytest.raises(P.PrecisionError, match="fp16 runs on CUDA"):
        P.resolve_precision("fp16", "cpu")
    assert P.resolve_precision("fp32", "cpu") == "fp32"


def test_default_rule_follows_the_measurements(monkeypatch):
    monkeypatch.setattr(P, "int8_available", lambda: True)
    assert P.default_precision("cpu", 8) == "int8"
    monkeypatch.setattr(P, "int8_available", lambda: False)
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: True)
    assert P.default_precision("cpu", P.BF16_MIN_BATCH - 1) == "fp32"
    assert P.default_precision("cpu", P.BF16_MIN_BATCH) == "bf16"
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: False)
    assert P.default_precision("cpu", 256) == "fp32"
    with pytest.raises(P.PrecisionError, match="onnxruntime"):
        P.resolve_precision("int8", "cpu")


@needs_int8
def test_int8_leaves_the_model_alone_and_reuses_its_quantised_trunk(model):
    before = {k: v.clone() for k, v in model.clip.visual.state_dict().items()}
    a = P.prepare_for_inference(model, "int8")
    b = P.prepare_for_inference(model, "int8")
    assert a.model.clip.visual is b.model.clip.visual
    assert a.model.clip.visual is not model.clip.visual
    assert a.model.clip.transformer is model.clip.transformer  # the text tower is shared, not copied
    assert a.model.clip.visual.backend == P.int8_backend()  # an OvTrunk (OpenVINO) or an OrtTrunk (fallback)
    for k, v in model.clip.visual.state_dict().items():
        assert type(v) is torch.Tensor and torch.equal(v, before[k])
    import copy
    import pickle

    assert copy.deepcopy(model) is not model and pickle.dumps(model)  # no session hangs off the model
    with torch.no_grad():
        model.clip.visual.proj.mul_(1.0)  # an in-place weight update invalidates the quantised copy
    assert P.prepare_for_inference(model, "int8").model.clip.visual is not a.model.clip.visual


@needs_data
@pytest.mark.parametrize("mode", ["bf16", pytest.param("int8", marks=needs_int8)])
def test_accuracy_gate_on_eurosat_patches(model, patches, mode):
    """Min cosine to fp32 and zero-shot top-1 agreement on the 54 real test patches."""
    ref = encode_images(model, patches, bands="eurosat-ms", batch_size=27, precision="fp32", progress=False)
    got = encode_images(model, patches, bands="eurosat-ms", batch_size=27, precision=mode, progress=False)
    assert got.ids == ref.ids and len(ref.ids) == 54 and got.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
    cos = (got.vectors * ref.vectors).sum(1)
    assert cos.min() >= P.MIN_COSINE[mode]
    assert cos.min() < 1.0  # the mode really ran: not fp32 under another name
    names = sorted({p.parent.name for p in patches})
    cls = class_text_embeddings(model, names, load_templates("simple"), cache=False).numpy()
    agree = ((got.vectors @ cls.T).argmax(1) == (ref.vectors @ cls.T).argmax(1)).mean()
    assert agree >= 0.99


@needs_data
def test_embeddings_table_records_the_mode(model, patches, tmp_path):
    table, failed, _ = embed_to_table(model, patches[:4], tmp_path / "e.parquet", bands="eurosat-ms",
                                      batch_size=4, precision="bf16", progress=False)
    assert not failed and len(table) == 4
    from spectraclip.embeddings import read_embeddings

    assert read_embeddings(tmp_path / "e.parquet").metadata["precision"] == "bf16"
    embed_to_table(model, patches[:2], tmp_path / "lib.parquet", bands="eurosat-ms", batch_size=2, progress=False)
    assert read_embeddings(tmp_path / "lib.parquet").metadata["precision"] == "fp32"  # the library default
    embed_to_table(model, patches[:2], tmp_path / "auto.parquet", bands="eurosat-ms", batch_size=2,
                   precision="auto", progress=False)
    assert read_embeddings(tmp_path / "auto.parquet").metadata["precision"] == P.default_precision("cpu", 2)


@needs_data
def test_cli_embed_defaults_to_auto_and_refuses_unknown_modes(patches, tmp_path):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app
    from spectraclip.embeddings import read_embeddings

    out = tmp_path / "cli.parquet"
    args = ["embed", *map(str, patches[:3]), "-o", str(out), "-m", "tiny-test", "--model-bands", "msclip",
            "--bands", "eurosat-ms", "--workers", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = read_embeddings(out).metadata
    assert len(read_embeddings(out)) == 3
    gate = meta.get("precision_gate")  # auto: the fastest mode that passes the gate on this model, else fp32
    if P.default_precision("cpu", 3) == "fp32":
        assert meta["precision"] == "fp32"
    elif meta["precision"] == "fp32":
        assert gate["mode"] == P.default_precision("cpu", 3) and not gate["passed"]  # why it fell back
    else:
        assert meta["precision"] == P.default_precision("cpu", 3) and gate["passed"]
    res = CliRunner().invoke(app, [*args, "--precision", "fp8"])
    assert res.exit_code != 0 and "fp8" in res.output


@needs_int8
def test_int8_multi_group_model_fuses_the_groups_present():
    from spectraclip.models.registry import tiny_group_config
    from spectraclip.models.spectral_clip import SpectralCLIP

    torch.manual_seed(0)
    net = randomize(SpectralCLIP.from_config(tiny_group_config()), seed=4).eval()
    g = torch.Generator().manual_seed(1)
    x = {grp: torch.randn(4, len(net.config.group(grp).bands), 32, 32, generator=g) for grp in net.groups}
    present = {"s2": torch.tensor([True, True, False, True]), "s1": torch.tensor([True, False, True, True])}
    with torch.inference_mode():
        ref = P.prepare_for_inference(net, "fp32").encode_image(x, present)
        got = P.prepare_for_inference(net, "int8").encode_image(x, present)
    cos = (got * ref).sum(1)
    assert cos.min() >= P.MIN_COSINE["int8"] and cos.min() < 1.0


@pytest.mark.parametrize("mode", ["bf16", pytest.param("int8", marks=[needs_int8, pytest.mark.slow])])
def test_dense_features_pass_the_gate_in_every_mode_and_int8_reuses_its_token_trunk(mode):
    """The dense path (heatmap, map --dense) in bf16/int8 stays within the image gate of fp32's patch features."""
    from spectraclip.apps.dense import prepare_dense

    model = randomize(load_model("tiny-test", bands="s2-l1c"), seed=5).eval()
    x = torch.randn(6, len(model.bands.names), model.image_size, model.image_size)
    with torch.inference_mode():
        ref = prepare_dense(model, "fp32").features(x)
        enc = prepare_dense(model, mode)
        got = enc.features(x)
    assert enc.mode == mode and got.dtype == torch.float32 and got.shape == ref.shape
    cos = (ref * got).sum(1)  # features are unit vectors along dim 1
    assert float(cos.min()) >= P.MIN_COSINE[mode]
    if mode == "int8":
        assert prepare_dense(model, "int8").tokens is enc.tokens  # quantised once per model and attention
        assert prepare_dense(model, "int8", attention="vanilla").tokens is not enc.tokens
        assert all(p.dtype == torch.float32 for p in model.parameters())  # the model itself is untouched


@pytest.mark.parametrize("mode", ["bf16", pytest.param("int8", marks=[needs_int8, pytest.mark.slow])])
def test_map_and_heatmap_record_their_precision_and_agree_with_fp32(mode, tmp_path):
    import rasterio
    from fixtures_scenes import make_multiband

    from spectraclip.apps.heatmap import heatmap_scene
    from spectraclip.apps.maps import map_scene
    from spectraclip.zeroshot.classes import ClassSpec

    model = randomize(load_model("tiny-test", bands="s2-l1c"), seed=6).eval()
    scene = make_multiband(tmp_path / "scene.tif", size=64)
    classes = [ClassSpec("water", "a lake"), ClassSpec("forest", "a forest")]
    out = {}
    for m in ("fp32", mode):
        res = map_scene(model, scene, tmp_path / f"map-{m}.tif", classes, probabilities="float32", quicklook=False,
                        progress=False, precision=m)
        heat = heatmap_scene(model, scene, tmp_path / f"heat-{m}.tif", ["a lake"], quicklook=False,
                             progress=False, precision=m)
        with rasterio.open(res.path) as ds, rasterio.open(heat.path) as hs:
            assert f'"precision": "{m}"' in ds.tags()["spectraclip_map"]
            assert f'"precision": "{m}"' in hs.tags()["spectraclip_heatmap"]
            out[m] = ds.read()[1:], hs.read()
    assert np.abs(out[mode][0] - out["fp32"][0]).max() < 0.05  # class probabilities
    assert np.nanmax(np.abs(out[mode][1] - out["fp32"][1])) < 0.02  # cosine similarities


@needs_int8
def test_int8_falls_back_to_onnxruntime_without_openvino_and_says_so(model, monkeypatch):
    import spectraclip.models.openvino_trunk as O

    monkeypatch.setattr(O, "openvino_available", lambda: False)
    assert P.int8_backend() == "onnxruntime"
    enc = P.prepare_for_inference(model, "int8")
    assert isinstance(enc.model.clip.visual, P.OrtTrunk) and enc.model.clip.visual.path.parent.name == "onnx"
    meta = P.precision_metadata(model, "int8")
    assert meta["precision_backend"].startswith("onnxruntime (ort")
    assert "openvino + nncf not importable" in meta["precision_backend"]
    assert meta["precision_gate"]["backend"] == "onnxruntime"


@needs_int8
def test_int8_backend_can_be_forced_and_is_recorded(model, monkeypatch):
    from spectraclip.models.openvino_trunk import openvino_available

    monkeypatch.setenv(P.BACKEND_ENV, "onnxruntime")
    assert P.int8_backend() == "onnxruntime"
    assert "SPECTRACLIP_INT8_BACKEND=onnxruntime" in P.precision_metadata(model, "int8")["precision_backend"]
    monkeypatch.setenv(P.BACKEND_ENV, "tensorrt")
    with pytest.raises(P.PrecisionError, match="SPECTRACLIP_INT8_BACKEND"):
        P.int8_backend()
    monkeypatch.delenv(P.BACKEND_ENV)
    if not openvino_available():
        pytest.skip("needs openvino + nncf")
    assert P.int8_backend() == "openvino"  # preferred when installed (measured faster: docs/benchmarks.md)
    enc = P.prepare_for_inference(model, "int8")
    assert enc.model.clip.visual.backend == "openvino" and enc.model.clip.visual.path.suffix == ".xml"
    meta = P.precision_metadata(model, "int8")
    assert meta["precision_backend"].startswith("openvino (ov") and "fallback" not in meta["precision_backend"]
    assert meta["precision_gate"]["backend"] == "openvino" and meta["precision_gate"]["passed"]


SIGNAL_STACK_SCRIPT = r"""
import gc, os, signal, sys
import openvino as ov
import torch
from spectraclip.models.export import trace_to_onnx
from spectraclip.models.openvino_trunk import OvTrunk, signal_stack

tmp = sys.argv[2]  # the test's tmp_path
net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
trace_to_onnx(net, (torch.zeros(2, 16),), os.path.join(tmp, "m.onnx"), ["x"])
xml = os.path.join(tmp, "m.xml")
ov.save_model(ov.Core().read_model(os.path.join(tmp, "m.onnx")), xml)
before = signal_stack()
if sys.argv[1] == "raw":  # what OvTrunk must not do: a Core per model, released first-made-first
    first = ov.Core().compile_model(xml, "CPU"); second = ov.Core().compile_model(xml, "CPU")
else:
    first, second = OvTrunk(xml), OvTrunk(xml)
    first(torch.randn(3, 16)); second(torch.randn(5, 16))
    assert signal_stack() == before, (before, signal_stack())
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handler ran", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print("alive", flush=True)
"""


@pytest.mark.slow  # a subprocess compiling OpenVINO models: `make test` only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="alternate signal stacks: Linux")
def test_openvino_leaves_the_signal_stack_as_it_was(tmp_path):
    """OpenVINO's CPU plugin swaps in its own alternate signal stack when a model compiles and unmaps it when the
    Core goes; Cores released out of order left the thread pointing at unmapped memory and the next signal with a
    Python handler killed the process (SIGSEGV: the test suite died so). OvTrunk keeps the thread's stack."""
    import subprocess

    from spectraclip.models.openvino_trunk import openvino_available

    if not openvino_available():
        pytest.skip("needs openvino + nncf")
    script = tmp_path / "stack.py"
    script.write_text(SIGNAL_STACK_SCRIPT)
    ours = subprocess.run([sys.executable, str(script), "ovtrunk", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert ours.returncode == 0 and "handler ran\nalive" in ours.stdout, ours.stderr[-2000:]
    # `stack.py raw` (a Core per model, released first-made-first) dies with SIGSEGV on OpenVINO 2026.4 (measured)
