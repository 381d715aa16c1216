"""Precision modes for image encoding: fp32, bf16 (torch.autocast), fp16 (CUDA autocast) and int8.

`prepare_for_inference(model, mode, device)` returns an `ImageEncoder` whose `encode_image(x, present)`
the batch path calls whatever the mode; it always returns float32, L2-normalised `[B, D]` vectors.
int8 is torchao's dynamic int8 quantisation (int8 weights, per-token int8 activations) of the image
tower's linear layers, applied to a copy of the tower: the model itself is never modified.

Default (`mode="auto"`), measured on the project machine (2 cores with AVX-512 BF16/VNNI, torch 2.14,
ViT-B-16 with 10 bands at 224 px, see docs/benchmarks.md): int8 is the fastest mode that passes the
accuracy gate on CPU at every batch size (min cosine to fp32 >= 0.995), bf16 autocast only pays off
from batch 64 up (4.9 vs 4.1 images/s; at batch 16 it is slower, 2.4 vs 4.3). So on CPU: int8 when
torchao is installed, else bf16 for batches >= 64 on a CPU with native bf16, else fp32. On CUDA:
bf16 autocast where the GPU supports it, else fp16 autocast (not measured here: no GPU on this machine).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
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


class PrecisionError(SpectraclipError, ValueError):
    """An unknown precision mode, or one the device or installed packages cannot run."""


def int8_available() -> bool:
    """Whether torchao (the maintained int8 path) is installed."""
    try:
        import torchao.quantization  # noqa: F401
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
            raise PrecisionError("--precision int8 needs torchao: pip install 'spectraclip[speed]'")
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
        with _autocast(self.mode, self.device):
            feats = self.model.encode_image(x, present=present) if multi else self.model.encode_image(x)
        return torch.nn.functional.normalize(feats.float(), dim=-1)


def _autocast(mode: str, device: torch.device):
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


def quantize_int8(visual: torch.nn.Module) -> torch.nn.Module:
    """A copy of an image trunk with torchao dynamic int8 linear layers (the original is untouched)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    q = copy.deepcopy(visual).eval()
    # nn.MultiheadAttention reads out_proj.weight directly in its fused path: leave its linear alone
    quantize_(q, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda m, name: type(m) is torch.nn.Linear)
    return q


def prepare_for_inference(model: SpectralCLIP, mode: str | None = AUTO, device: str | torch.device = "cpu",
                          batch_size: int | None = None) -> ImageEncoder:
    """The `ImageEncoder` for `mode` (auto: the device's default) with the model in eval mode on `device`.

    The int8 trunk is built once per model and reused while the weights stay the same.
    """
    dev = torch.device(device)
    resolved = resolve_precision(mode, dev, batch_size)
    model.eval().to(dev)
    if resolved != "int8":
        return ImageEncoder(model, resolved, dev)
    visual = model.clip.visual
    state = _weights_state(visual)
    memo = getattr(model, "_spectraclip_int8", None)
    if memo is None or memo[0] != state:
        memo = (state, quantize_int8(visual))
        object.__setattr__(model, "_spectraclip_int8", memo)
    return ImageEncoder(_with_visual(model, memo[1]), resolved, dev)


__all__ = ["AUTO", "BF16_MIN_BATCH", "ImageEncoder", "METADATA_KEY", "MIN_COSINE", "PRECISIONS", "PrecisionError",
           "cpu_has_bf16", "default_precision", "int8_available", "prepare_for_inference", "quantize_int8",
           "resolve_precision"]
