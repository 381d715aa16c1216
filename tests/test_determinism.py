"""Issue #29: an item's embedding does not depend on its neighbours. In every precision mode, batch size, loader
workers, shards and a resume leave each vector as it is (int8: bit for bit, through static calibrated scales)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_models import randomize

from spectraclip.embeddings import PartWriter, read_embeddings
from spectraclip.inference import embed_to_table, encode_images, item_ids, table_metadata
from spectraclip.models import precision as P
from spectraclip.models.loading import load_model

EUROSAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eurosat-ms-mini" / "test"
if not EUROSAT.is_dir():
    EUROSAT = Path("/work/shared/data/eurosat-ms-mini/test")
needs_data = pytest.mark.skipif(not EUROSAT.is_dir(), reason="needs ../shared/data/eurosat-ms-mini")
needs_int8 = pytest.mark.skipif(not P.int8_available(), reason="needs onnxruntime + onnx")
MODES = ["fp32", "bf16", pytest.param("int8", marks=needs_int8)]
TOL = {"fp32": 1e-6, "bf16": 1e-6, "int8": 0.0}  # int8: bit for bit


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path_factory.getbasetemp() / "det-cache"))


@pytest.fixture(scope="module")
def model():
    return randomize(load_model("tiny-test", bands="eurosat-ms"), seed=7).eval()


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return sorted(EUROSAT.rglob("*.tif"))[:40]


def _same(a: np.ndarray, b: np.ndarray, mode: str) -> None:
    diff = float(np.abs(a - b).max())
    assert diff <= TOL[mode], f"{mode}: {diff}"


@needs_data
@pytest.mark.parametrize("mode", MODES)
def test_batch_size_does_not_change_a_vector(model, files, mode):
    runs = {b: encode_images(model, files, bands="eurosat-ms", batch_size=b, precision=mode, progress=False)
            for b in (32, 7, 1)}
    assert runs[1].ids == runs[32].ids == runs[7].ids
    _same(runs[7].vectors, runs[32].vectors, mode)
    _same(runs[1].vectors, runs[32].vectors, mode)
    if mode != "fp32":  # the mode really ran
        ref = encode_images(model, files, bands="eurosat-ms", batch_size=32, precision="fp32", progress=False)
        assert float(np.abs(runs[32].vectors - ref.vectors).max()) > 1e-6


def _int8_ops(trunk) -> set[str]:
    if trunk.backend == "openvino":
        import openvino as ov

        return {op.get_type_name() for op in ov.Core().read_model(str(trunk.path)).get_ops()}
    import onnx

    return {n.op_type for n in onnx.load(str(trunk.path)).graph.node}


@needs_int8
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_is_static_calibrated_once_and_cached_by_calibration(model, backend, monkeypatch):
    monkeypatch.setenv(P.BACKEND_ENV, backend)
    if P.int8_backend() != backend:
        pytest.skip(f"{backend} not installed")
    enc = P.prepare_for_inference(model, "int8")
    trunk = enc.model.clip.visual
    assert trunk.backend == backend
    cal = P.calibration_fingerprint(model)
    assert cal in trunk.path.name and trunk.path.parent.name == {"openvino": "openvino", "onnxruntime": "onnx"}[backend]
    ops = _int8_ops(trunk)
    if backend == "onnxruntime":
        assert "QLinearMatMul" in ops and "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops
    else:  # NNCF's static quantisers (fixed scales), on the MatMuls only; the patch embedding stays fp32
        assert "FakeQuantize" in ops and "Convolution" in ops
    again = P.calibration_pixels(model)
    assert P.calibration_fingerprint(model) == cal  # a fixed sample, the same on every call (and machine)
    assert torch.equal(again[model.groups[0]], P.calibration_pixels(model)[model.groups[0]])
    other = load_model("tiny-test", bands="msclip")  # 10 bands, not 13: another kind of input, another sample
    assert P.calibration_fingerprint(other) != cal
    held = P.calibration_pixels(model, P.HELDOUT_SIZE, P.HELDOUT_SEED)[model.groups[0]]
    assert not torch.equal(held[: P.CALIBRATION_SIZE], again[model.groups[0]])  # the gate never sees it


@needs_data
@pytest.mark.parametrize("mode", MODES)
def test_workers_shards_and_resume_do_not_change_a_vector(model, files, mode, tmp_path):
    kw = dict(bands="eurosat-ms", precision=mode, progress=False)
    full, _, _ = embed_to_table(model, files, tmp_path / "full.parquet", batch_size=16, **kw)
    ids = item_ids(files)
    by_id = dict(zip(full.ids, full.vectors, strict=True))
    # two loader workers, another batch size
    two, _, _ = embed_to_table(model, files, tmp_path / "workers.parquet", batch_size=5, num_workers=2, **kw)
    _same(np.stack([by_id[i] for i in two.ids]), two.vectors, mode)
    # shard 2/2 of the listing (the CLI's --shard gives the others as skip_ids)
    half = set(sorted(ids)[: len(ids) // 2])
    shard, _, _ = embed_to_table(model, files, tmp_path / "shard.parquet", batch_size=16, skip_ids=half, **kw)
    assert set(shard.ids) == set(ids) - half
    _same(np.stack([by_id[i] for i in shard.ids]), shard.vectors, mode)
    # resume: an earlier run wrote 11 rows (an odd boundary), the rerun finishes the rest in other batches
    out = tmp_path / "resumed.parquet"
    done = PartWriter(out, metadata=table_metadata(model, mode))
    done.write(full.ids[:11], full.vectors[:11], {k: v[:11] for k, v in full.columns.items()})
    resumed, _, kept = embed_to_table(model, files, out, batch_size=16, **kw)
    assert kept == 11 and sorted(resumed.ids) == sorted(full.ids)
    _same(np.stack([by_id[i] for i in resumed.ids]), resumed.vectors, mode)
    assert read_embeddings(out).metadata == read_embeddings(tmp_path / "full.parquet").metadata


@needs_int8
def test_auto_gates_int8_on_the_model_and_records_gate_and_calibration(model, tmp_path, monkeypatch):
    gate = P.accuracy_gate(model, "int8")
    assert gate["inputs"] == P.HELDOUT_SIZE and gate["thresholds"] == [P.GATE_MIN_COSINE, P.GATE_MIN_AGREEMENT]
    assert gate["passed"] == (gate["min_cosine"] >= P.GATE_MIN_COSINE and gate["agreement"] >= P.GATE_MIN_AGREEMENT)
    assert gate["passed"], gate  # this tiny model passes: auto really runs int8 below
    cached = list((Path(P.int8_trunk_path(model)).parent.parent / "gates").glob("*int8*.json"))
    assert len(cached) == 1 and P.calibration_fingerprint(model) in cached[0].name
    assert P.resolve_precision("auto", "cpu", 8, model=model) == "int8"
    meta = table_metadata(model, "int8")
    assert meta["precision_calibration"] == P.calibration_fingerprint(model) and meta["precision_gate"] == gate

    # a gate this model cannot pass: auto falls back to fp32 and the table says why
    strict = randomize(load_model("tiny-test", bands="eurosat-ms"), seed=8).eval()
    monkeypatch.setattr(P, "GATE_MIN_COSINE", 1.5)
    assert P.resolve_precision("auto", "cpu", 8, model=strict) == "fp32"
    failed = table_metadata(strict, "fp32")["precision_gate"]
    assert failed["mode"] == "int8" and not failed["passed"]


@needs_data
@needs_int8
def test_the_fallback_int8_backend_is_batch_invariant_too(model, files, monkeypatch):
    """ONNX Runtime (used when OpenVINO + NNCF are not installed): bit for bit across batch sizes as well."""
    monkeypatch.setenv(P.BACKEND_ENV, "onnxruntime")
    if P.int8_backend() != "onnxruntime":
        pytest.skip("onnxruntime not installed")
    runs = {b: encode_images(model, files[:16], bands="eurosat-ms", batch_size=b, precision="int8", progress=False)
            for b in (16, 7, 1)}
    _same(runs[7].vectors, runs[16].vectors, "int8")
    _same(runs[1].vectors, runs[16].vectors, "int8")
    assert table_metadata(model, "int8")["precision_backend"].startswith("onnxruntime")


def test_bf16_batch_of_one_matches_larger_batches():
    """Autocast takes another kernel path for a single row; the encoder pads it to two."""
    net = randomize(load_model("tiny-test", bands="s2-l1c"), seed=5).eval()
    x = P.calibration_pixels(net, 9, 1)[net.groups[0]]
    enc = P.prepare_for_inference(net, "bf16")
    with torch.inference_mode():
        full = enc.encode_image(x)
        ones = torch.cat([enc.encode_image(x[i:i + 1]) for i in range(len(x))])
    assert float((full - ones).abs().max()) <= 1e-6


@needs_data
@needs_int8
@pytest.mark.slow  # ~20 s of Ray start-up
def test_ray_blocks_do_not_change_an_int8_vector(model, files, tmp_path):
    ray = pytest.importorskip("ray")
    from spectraclip.distributed.ray_engine import embed_with_ray, runtime_env

    local, _, _ = embed_to_table(model, files, tmp_path / "local.parquet", bands="eurosat-ms", batch_size=16,
                                 precision="int8", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False)
    try:
        table, failed, _ = embed_with_ray(model, files, tmp_path / "ray.parquet", bands="eurosat-ms", batch_size=3,
                                          workers=1, precision="int8", progress=False)
    finally:
        ray.shutdown()
    assert not failed and table.ids == local.ids
    assert np.array_equal(table.vectors, local.vectors)  # bit for bit
    assert table.metadata["precision_calibration"] == local.metadata["precision_calibration"]
