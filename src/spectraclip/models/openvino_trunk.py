"""The int8 image trunk on OpenVINO: NNCF's post-training quantisation with static, calibrated activation scales.

`quantize_openvino` takes the trunk's fp32 ONNX graph and the trunk inputs of the calibration sample
(`precision.trunk_inputs(model, calibration_pixels(model))`), quantises it with `nncf.quantize`
(`ModelType.TRANSFORMER`: int8 MatMuls, symmetric per-channel int8 weights, activation scales from the min/max
of each activation over the sample, fixed from then on) and writes OpenVINO's IR (`.xml` + `.bin`, fp32
constants kept). `OvTrunk` runs it on OpenVINO's CPU plugin. Measured on the ViT-B trunk (docs/benchmarks.md):

- SmoothQuant (on by default for transformers) is off: with it, min cosine to fp32 fell to 0.9934 and zero-shot
  agreement to 91.7 %; without it 0.9998 and 100 %, at the same speed.
- The patch embedding (Conv over all the bands) stays fp32, as on ONNX Runtime (`precision.INT8_OP_TYPES`).
- Inference precision is pinned to f32 (the CPU plugin would pick bf16 for the unquantised ops on a CPU with
  native bf16), one single-thread stream per `torch.get_num_threads()` thread, a batch split across them.
- An item's vector does not depend on its batch: batch 1, 7, 16 and 32 gave bit-identical vectors
  (the dynamic batch axis is kept; int8 GEMMs accumulate exactly and the fp32 kernels do not split rows).
- One `ov.Core` per process, and the calling thread's signal stack kept as it was (`keep_signal_stack`): the
  CPU plugin installs its own alternate signal stack on the thread that compiles a model (mmap'd, sized for
  AMX frames) and, when that Core goes, restores the stack it found and unmaps its own. Cores released out of
  the order they were made (garbage collection decides) left the thread's signal stack pointing at unmapped
  memory; the next signal with a Python handler then killed the process with SIGSEGV (the test suite died so,
  in `subprocess.communicate`; reproduced by two `OvTrunk`s deleted first-made-first:
  tests/test_precision.py::test_openvino_leaves_the_signal_stack_as_it_was).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def openvino_available() -> bool:
    """Whether OpenVINO and NNCF (the OpenVINO int8 backend) are installed (found, not imported: importing NNCF
    takes seconds, and option checking asks this)."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None and find_spec("nncf") is not None


def openvino_versions() -> str:
    """`ov<version>-nncf<version>`: part of the cache key and of the recorded backend. Read from the installed
    distributions' metadata: importing NNCF to ask costs about a second on every warm run."""
    from importlib.metadata import version

    return f"ov{version('openvino').split('-')[0]}-nncf{version('nncf')}"


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack `(address, flags, size)` (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    cur = _StackT()
    if _libc().sigaltstack(None, ctypes.byref(cur)) != 0:
        return None
    return int(cur.ss_sp or 0), int(cur.ss_flags), int(cur.ss_size)


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the block, then give the calling thread back the alternate signal stack it had before (module doc:
    OpenVINO's CPU plugin swaps in its own and may unmap it while the thread still points at it)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = _libc()
    before = _StackT()
    saved = libc.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved and libc.sigaltstack(ctypes.byref(before), None) != 0:
            log.warning("could not restore the signal stack after OpenVINO (errno %d)", ctypes.get_errno())


_CORE = None
_CORE_LOCK = threading.Lock()


def core():
    """The process's one `ov.Core` (made once; module doc for why not one per model)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def _config(threads: int) -> dict:
    """One single-thread stream per thread: measured 3-7 % more images/s than one stream on both threads (ViT-B
    trunk, 2 cores, batches of 16-64 split across the streams), with bit-identical vectors."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": threads, "PERFORMANCE_HINT": "THROUGHPUT",
            "INFERENCE_PRECISION_HINT": "f32"}


def _compiled_cache() -> Path | None:
    """Where OpenVINO keeps compiled blobs (`<cache>/openvino/compiled`; None when the cache is off)."""
    from spectraclip.cache import cache_root

    root = cache_root()
    return None if root is None else root / "openvino" / "compiled"


class OvTrunk(torch.nn.Module):
    """An OpenVINO compiled model standing in for the image trunk: tensor in, float32 tensor out. A batch is split
    into one contiguous block of rows per stream, run concurrently; every row's result depends on that row only
    (tests/test_determinism.py: bit for bit across batch sizes)."""

    backend = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        config = _config(self.threads)
        compiled_cache = _compiled_cache()
        if compiled_cache is not None:  # OpenVINO's own cache of compiled models: 0.86 s -> 0.19 s (ViT-B trunk)
            config["CACHE_DIR"] = str(compiled_cache)
        with keep_signal_stack():
            self.compiled = core().compile_model(str(self.path), "CPU", config)
            self.requests = [self.compiled.create_infer_request() for _ in range(self.threads)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if not len(rows):
            return torch.zeros(0, self.compiled.output(0).get_partial_shape()[1].get_length(), device=x.device)
        per = -(-len(rows) // len(self.requests))
        blocks = [rows[i:i + per] for i in range(0, len(rows), per)]
        with keep_signal_stack():
            for req, block in zip(self.requests, blocks, strict=False):
                req.start_async({0: block})
            outs = []
            for req, _ in zip(self.requests, blocks, strict=False):
                req.wait()
                outs.append(np.array(req.get_output_tensor(0).data))
        return torch.from_numpy(np.concatenate(outs)).to(x.device)


def quantize_openvino(onnx_fp32: str | Path, inputs: list[torch.Tensor], dest: str | Path) -> None:
    """Quantise the fp32 ONNX graph `onnx_fp32` with NNCF, calibrated on `inputs` (each one batch of the trunk's
    input), and write the IR to `dest` (`.xml`; the `.bin` beside it). The `.bin` is moved in first and the
    `.xml` last, so a reader that finds the `.xml` finds a complete pair."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    dest = Path(dest)
    model = core().read_model(str(onnx_fp32))
    data = nncf.Dataset([t.to(torch.float32).contiguous().numpy() for t in inputs])
    params = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1),
                                            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    with keep_signal_stack():  # NNCF compiles the model to collect the activation ranges
        quantised = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(inputs),
                                  ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False),
                                  advanced_parameters=params)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.stem}.") as tmp:
        xml = Path(tmp) / dest.name
        ov.save_model(quantised, str(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), dest.with_suffix(".bin"))
        os.replace(xml, dest)


__all__ = ["OvTrunk", "core", "keep_signal_stack", "openvino_available", "openvino_versions", "quantize_openvino",
           "signal_stack"]
