"""Precision modes for image encoding: fp32, bf16 (torch.autocast), fp16 (CUDA autocast) and int8.

`prepare_for_inference(model, mode, device)` returns an `ImageEncoder` whose `encode_image(x, present)`
the batch path calls whatever the mode; it always returns float32, L2-normalised `[B, D]` vectors.

int8 is ONNX Runtime's dynamic quantiser (int8 weights of every transformer MatMul/Gemm, int8 activations
quantised per batch, VNNI kernels; the patch embedding stays fp32: `INT8_OP_TYPES`): the image trunk
(`clip.visual`) is exported to ONNX once per model fingerprint, quantised, kept in the cache folder
(`~/.cache/spectraclip/onnx`) and run by an ONNX Runtime session in place of the trunk; patch embeddings,
fusion of input groups and the text tower stay in torch. The model itself is never modified. torchao's
`Int8DynamicActivationInt8WeightConfig` was measured too and dropped: without torch.compile it ran at 0.7x
fp32 on this CPU (ONNX Runtime int8: 2.8x; same load, batch 16). End to end, `embed --precision int8` ran at
2.5x open_clip's eager fp32 forward (min cosine 0.9998).

Default (`mode="auto"`), measured on the project machine (2 cores with AVX-512 BF16/VNNI, torch 2.14,
ViT-B-16 with 10 bands at 224 px; docs/benchmarks.md): int8 is the fastest mode that passes the accuracy
gate on CPU (min cosine to fp32 >= 0.995); bf16 autocast only pays off from batch 64 up (4.9 vs 4.1
images/s; at batch 16 it is slower, 2.4 vs 4.3). So on CPU: int8 when onnxruntime is installed, else bf16
for batches >= 64 on a CPU with native bf16, else fp32. On CUDA: bf16 autocast where the GPU supports it,
else fp16 autocast (not measured: no GPU on this machine).
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spectraclip.errors import SpectraclipError

if TYPE_CHECKING:
    from spectraclip.models.spectral_clip import SpectralCLIP

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
AUTO = "auto"
# Accuracy gate against fp32 on the same inputs: minimum cosine of the image embeddings.
MIN_COSINE = {"fp32": 1.0, "bf16": 0.999, "fp16": 0.999, "int8": 0.995}
BF16_MIN_BATCH = 64  # below this, bf16 autocast is slower than fp32 on this CPU (measured)
METADATA_KEY = "precision"
INT8_PER_CHANNEL = False  # per-output-channel weight scales (ONNX Runtime's per_channel); see docs/benchmarks.md
# Only the transformer's MatMul/Gemm are quantised; the patch embedding (Conv over all the bands) stays fp32.
# Measured on the demo MS bundle, 270 EuroSAT-MS patches: quantising the Conv too gave min cosine 0.9940 (under
# the 0.995 gate) and 99.6 % top-1 agreement; without it 0.99983 and 100 %, at the same speed.
INT8_OP_TYPES = ("MatMul", "Gemm")


class PrecisionError(SpectraclipError, ValueError):
    """An unknown precision mode, or one the device or installed packages cannot run."""


def int8_available() -> bool:
    """Whether ONNX Runtime and onnx (the int8 path: export + dynamic quantiser) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast can be faster."""
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: str | torch.device = "cpu", batch_size: int | None = None) -> str:
    """The fastest mode that passes the accuracy gate on `device` (the rule and its numbers: module doc)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dev.type == "cpu":
        if int8_available():
            return "int8"
        if cpu_has_bf16() and (batch_size or 0) >= BF16_MIN_BATCH:
            return "bf16"
    return "fp32"


def resolve_precision(mode: str | None, device: str | torch.device = "cpu", batch_size: int | None = None) -> str:
    """`mode` checked against the device (`auto`/None: `default_precision`)."""
    if mode is None or mode == AUTO:
        return default_precision(device, batch_size)
    if mode not in PRECISIONS:
        raise PrecisionError(f"--precision {mode!r}: expected auto or one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if mode == "fp16" and dev.type != "cuda":
        raise PrecisionError("--precision fp16 runs on CUDA only; on CPU use bf16 or int8")
    if mode == "int8":
        if dev.type != "cpu":
            raise PrecisionError(f"--precision int8 runs on CPU only (device {dev}); on a GPU use bf16 or fp16")
        if not int8_available():
            raise PrecisionError("--precision int8 needs onnxruntime and onnx: pip install 'spectraclip[speed]'")
    return mode


@dataclass
class ImageEncoder:
    """A model prepared for one precision on one device; `encode_image` is the batch path's one call."""

    model: Any
    mode: str
    device: torch.device

    def encode_image(self, x: torch.Tensor | Mapping[str, torch.Tensor],
                     present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Float32 L2-normalised `[B, D]` embeddings of normalised input (a tensor or `{group: tensor}`)."""
        multi = self.model.config.multi
        if not isinstance(x, torch.Tensor) and not multi:
            x = x[self.model.groups[0]]
        with autocast_for(self.mode, self.device):
            feats = self.model.encode_image(x, present=present) if multi else self.model.encode_image(x)
        return torch.nn.functional.normalize(feats.float(), dim=-1)


def autocast_for(mode: str, device: torch.device):
    """The autocast context of a precision mode (disabled for fp32 and int8)."""
    if mode == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if mode == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def _weights_state(module: torch.nn.Module) -> tuple:
    """Identity of a module's current weights (storage and in-place version), to reuse a quantised copy."""
    return tuple((p.data_ptr(), p._version) for p in module.parameters())


def _with_visual(model: SpectralCLIP, visual: torch.nn.Module) -> SpectralCLIP:
    """A shallow copy of `model` whose image trunk is `visual` (text tower and patch embeddings shared)."""
    clip = copy.copy(model.clip)
    clip._modules = dict(clip._modules)
    clip._modules["visual"] = visual
    view = copy.copy(model)
    view._modules = dict(view._modules)
    view._modules["clip"] = clip
    return view


class OrtTrunk(torch.nn.Module):
    """An ONNX Runtime session standing in for the image trunk: tensor in, float32 tensor out."""

    def __init__(self, path: str | Path, input_name: str = "x", threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        self.threads = threads or torch.get_num_threads()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.path, self.input_name = Path(path), input_name
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def trunk_example(model: SpectralCLIP) -> torch.Tensor:
    """An input of the trunk's shape: pixels for a single-group model, patch features for a multi-group one."""
    s = model.image_size
    first = model.groups[0]
    x = torch.zeros(2, len(model.config.group(first).bands), s, s)
    if model.patch_embeds is None:
        return x
    with torch.no_grad():
        return model.patch_embeds[first](x)


def int8_trunk_path(model: SpectralCLIP, tag: str = "visual") -> Path | None:
    """Where the quantised trunk `tag` of this model is cached (None when the cache is disabled)."""
    import onnxruntime as ort

    from spectraclip.cache import cache_root
    from spectraclip.identity import model_fingerprint

    root = cache_root()
    kind = "int8mm-pc" if INT8_PER_CHANNEL else "int8mm"
    name = f"{model_fingerprint(model)}-{tag}-{kind}-ort{ort.__version__}.onnx"
    return None if root is None else root / "onnx" / name


class _QuantiserHint(logging.Filter):
    """Drops ONNX Runtime's quantiser hint to run its shape pre-processing (measured: no gain on this trunk)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_module_int8(model: SpectralCLIP, module: torch.nn.Module, example: torch.Tensor,
                         tag: str) -> OrtTrunk:
    """`module` (part of `model`: tensor in, tensor out) as an int8 ONNX Runtime session: read from the cache
    (keyed by the model fingerprint and `tag`), or exported, dynamically quantised and cached."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from spectraclip.io.atomic import atomic_path
    from spectraclip.models.export import trace_to_onnx

    target = int8_trunk_path(model, tag)
    if target is not None and target.is_file():
        return OrtTrunk(target)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / f"{tag}.onnx"
        log.info("exporting and quantising %s to int8 (once per model)", tag)
        trace_to_onnx(module.eval(), (example,), fp32, ["x"])
        dest = target or Path(tmp) / f"{tag}-int8.onnx"
        hint = _QuantiserHint()
        logging.getLogger().addFilter(hint)
        try:
            with atomic_path(dest) as out:
                quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=INT8_PER_CHANNEL,
                                 op_types_to_quantize=list(INT8_OP_TYPES))
        finally:
            logging.getLogger().removeFilter(hint)
        return OrtTrunk(dest)  # the session holds the graph in memory: the temporary file may go


# model -> {tag: (weights state, int8 session)}; outside the model so that pickling or copying it never meets a
# session
_INT8_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def int8_part(model: SpectralCLIP, tag: str, module: torch.nn.Module, example: torch.Tensor) -> OrtTrunk:
    """The int8 session of `module` (a part of `model`), built once per model and tag (and cached on disk),
    reused while the part's weights stay the same, rebuilt from its file when torch's thread count changes."""
    state = _weights_state(module)
    parts = _INT8_PARTS.setdefault(model, {})
    memo = parts.get(tag)
    if memo is None or memo[0] != state:
        if memo is not None:  # the weights changed in place since: the memoised fingerprint is stale too
            model.__dict__.pop("_spectraclip_fingerprint", None)
        memo = parts[tag] = (state, quantize_module_int8(model, module, example, tag))
    elif memo[1].threads != torch.get_num_threads() and memo[1].path.is_file():  # follow torch's thread count
        memo = parts[tag] = (state, OrtTrunk(memo[1].path))
    return memo[1]


def quantize_int8(model: SpectralCLIP) -> OrtTrunk:
    """The int8 ONNX Runtime image trunk (`clip.visual`) of `model`, memoised like `int8_part`."""
    return int8_part(model, "visual", model.clip.visual, trunk_example(model))


def prepare_for_inference(model: SpectralCLIP, mode: str | None = AUTO, device: str | torch.device = "cpu",
                          batch_size: int | None = None) -> ImageEncoder:
    """The `ImageEncoder` for `mode` (auto: the device's default) with the model in eval mode on `device`.

    The int8 trunk is built once per model (and cached on disk) and reused while the weights stay the same.
    """
    dev = torch.device(device)
    resolved = resolve_precision(mode, dev, batch_size)
    model.eval().to(dev)
    if resolved != "int8":
        return ImageEncoder(model, resolved, dev)
    return ImageEncoder(_with_visual(model, quantize_int8(model)), resolved, dev)


__all__ = ["AUTO", "BF16_MIN_BATCH", "ImageEncoder", "METADATA_KEY", "MIN_COSINE", "PRECISIONS", "PrecisionError",
           "OrtTrunk", "autocast_for", "cpu_has_bf16", "default_precision", "int8_available", "int8_trunk_path",
           "int8_part", "prepare_for_inference", "quantize_int8", "quantize_module_int8", "resolve_precision",
           "trunk_example"]
