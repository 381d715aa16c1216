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
  native bf16), one stream, `torch.get_num_threads()` threads, latency hint.
- An item's vector does not depend on its batch: batch 1, 7, 16 and 32 gave bit-identical vectors
  (the dynamic batch axis is kept; int8 GEMMs accumulate exactly and the fp32 kernels do not split rows).
"""

from __future__ import annotations

import logging
import os
import tempfile
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
    """`ov<version>-nncf<version>`: part of the cache key and of the recorded backend."""
    import nncf
    import openvino as ov

    return f"ov{ov.__version__.split('-')[0]}-nncf{nncf.__version__}"


def _config(threads: int) -> dict:
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"}


class OvTrunk(torch.nn.Module):
    """An OpenVINO compiled model standing in for the image trunk: tensor in, float32 tensor out."""

    backend = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import openvino as ov

        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", _config(self.threads))
        self.request = self.compiled.create_infer_request()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.request.infer({0: x.detach().to("cpu", torch.float32).contiguous().numpy()})
        return torch.from_numpy(np.array(out[self.compiled.output(0)])).to(x.device)


def quantize_openvino(onnx_fp32: str | Path, inputs: list[torch.Tensor], dest: str | Path) -> None:
    """Quantise the fp32 ONNX graph `onnx_fp32` with NNCF, calibrated on `inputs` (each one batch of the trunk's
    input), and write the IR to `dest` (`.xml`; the `.bin` beside it). The `.bin` is moved in first and the
    `.xml` last, so a reader that finds the `.xml` finds a complete pair."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    dest = Path(dest)
    model = ov.Core().read_model(str(onnx_fp32))
    data = nncf.Dataset([t.to(torch.float32).contiguous().numpy() for t in inputs])
    params = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1),
                                            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    quantised = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(inputs),
                              ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False),
                              advanced_parameters=params)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.stem}.") as tmp:
        xml = Path(tmp) / dest.name
        ov.save_model(quantised, str(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), dest.with_suffix(".bin"))
        os.replace(xml, dest)


__all__ = ["OvTrunk", "openvino_available", "openvino_versions", "quantize_openvino"]
