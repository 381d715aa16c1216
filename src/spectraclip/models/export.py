"""Exporting a model's image tower to ONNX, for deployment with ONNX Runtime or OpenVINO.

The graph takes *normalised* pixels (one input per input group, `[B, C_g, S, S]`, batch dynamic) and
returns L2-normalised `[B, D]` embeddings, the same as `model.encode_image` in fp32. Reading, band
selection and normalisation stay outside: the preprocessing is written into the file's metadata
(`spectraclip.preprocessing`: bands, mean, std, image size) so a deployment can reproduce it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_path

if TYPE_CHECKING:
    from spectraclip.models.spectral_clip import SpectralCLIP

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
DEFAULT_OPSET = 17


class ExportError(SpectraclipError, ValueError):
    """An export that cannot be made (unknown format, missing exporter, a model the format cannot hold)."""


class ImageTower(nn.Module):
    """`model.encode_image` as a plain module of positional tensors, one per input group (all present)."""

    def __init__(self, model: SpectralCLIP) -> None:
        super().__init__()
        self.model = model
        self.groups = list(model.groups)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if not self.model.config.multi:
            return self.model.encode_image(xs[0])
        return self.model.encode_image(dict(zip(self.groups, xs, strict=True)))


def onnx_metadata(model: SpectralCLIP) -> dict[str, str]:
    """What a deployment needs besides the graph: inputs (bands, mean, std), input size, fingerprints."""
    from spectraclip.identity import Fingerprints

    inputs = [{"name": g.name, "bands": list(g.bands), "mean": list(g.mean), "std": list(g.std)}
              for g in model.config.inputs]
    return {"spectraclip.preprocessing": json.dumps({"inputs": inputs, "image_size": model.image_size,
                                                     "spec": model.preprocessing_spec()}, default=str),
            "spectraclip.embed_dim": str(model.embed_dim), **Fingerprints.of(model).to_metadata()}


def trace_to_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: str | Path, input_names: list[str],
                  output_name: str = "embedding", opset: int = DEFAULT_OPSET) -> None:
    """torch.onnx.export of `module` with a dynamic batch axis (attention fast path off: it has no ONNX op)."""
    axes: dict[str, Any] = {n: {0: "batch"} for n in input_names}
    axes[output_name] = {0: "batch"}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, example, str(path), input_names=input_names, output_names=[output_name],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def export_onnx(model: SpectralCLIP, output: str | Path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write the image tower of `model` (fp32, eval mode, on CPU) to an ONNX file, atomically."""
    try:
        import onnx
    except ImportError:
        raise ExportError("--format onnx needs the onnx package: pip install 'spectraclip[speed]'") from None
    output = Path(output)
    model = model.eval().to("cpu")
    tower = ImageTower(model).eval()
    s = model.image_size
    example = tuple(torch.zeros(2, len(model.config.group(g).bands), s, s) for g in model.groups)
    names = [f"pixels_{g}" for g in model.groups]
    with atomic_path(output) as tmp:
        trace_to_onnx(tower, example, tmp, names, opset=opset)
        proto = onnx.load(str(tmp))
        for k, v in onnx_metadata(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
    log.info("wrote %s (inputs %s)", output, ", ".join(names))
    return output


def verify_onnx(model: SpectralCLIP, path: str | Path, n: int = 4, seed: int = 0) -> float:
    """Minimum cosine between ONNX Runtime's embeddings of `path` and the model's fp32 ones on `n` random
    normalised inputs (1.0 = identical)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime: pip install 'spectraclip[speed]'") from None
    g = torch.Generator().manual_seed(seed)
    s = model.image_size
    xs = [torch.randn(n, len(model.config.group(grp).bands), s, s, generator=g) for grp in model.groups]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {f"pixels_{grp}": x.numpy() for grp, x in zip(model.groups, xs, strict=True)})[0]
    with torch.inference_mode():
        ref = ImageTower(model.eval().to("cpu"))(*xs)
    got_t = torch.nn.functional.normalize(torch.from_numpy(got).float(), dim=-1)
    return float((got_t * torch.nn.functional.normalize(ref.float(), dim=-1)).sum(-1).min())


def export_model(model: SpectralCLIP, output: str | Path, fmt: str = "onnx", **kwargs: Any) -> Path:
    """Export `model` in `fmt` (only `onnx` today)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return export_onnx(model, output, **kwargs)


__all__ = ["DEFAULT_OPSET", "ExportError", "FORMATS", "ImageTower", "export_model", "export_onnx", "onnx_metadata",
           "trace_to_onnx", "verify_onnx"]
