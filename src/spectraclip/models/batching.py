"""Batch sizes fitted to the device: from the model's activation footprint and the memory free right now.

A ViT forward at inference keeps, per image, the token activations of one block (residual, q/k/v,
attention scores, the MLP hidden layer) plus the input pixels. `choose_batch_size` budgets a share of
the free memory for them and caps the result where larger batches stop paying off (measured, see
docs/benchmarks.md): on CPU, bf16 autocast needs batches of 64 to beat fp32, fp32/int8 are flat from 16 up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from spectraclip.models.spectral_clip import SpectralCLIP

CPU_MAX_BATCH = 64
GPU_MAX_BATCH = 512
MEMORY_SHARE = 0.25  # of free memory: the loader, its prefetched batches and the rest of the process share it
SAFETY = 2.0  # allocator slack and temporaries beyond the counted activations


def free_memory_bytes(device: str | torch.device = "cpu") -> int:
    """Free memory on `device`: CUDA's free bytes, or MemAvailable of /proc/meminfo (else 4 GiB)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def activation_bytes_per_image(model: SpectralCLIP, bytes_per_value: int = 4) -> int:
    """Peak live activation bytes of one image through the image tower (one block at a time)."""
    vision: dict[str, Any] = dict(model.config.arch_config.get("vision_cfg", {}))
    size = int(model.image_size)
    patch = int(vision.get("patch_size", 16))
    width = int(vision.get("width", 768))
    heads = max(1, width // int(vision.get("head_width", 64)))
    mlp = float(vision.get("mlp_ratio", 4.0))
    tokens = (size // patch) ** 2 + 1
    channels = sum(len(g.bands) for g in model.config.inputs)
    values = tokens * width * (2 + 3 + mlp) + heads * tokens * tokens + channels * size * size
    return int(values * bytes_per_value * SAFETY)


def choose_batch_size(model: SpectralCLIP, device: str | torch.device = "cpu", n_items: int | None = None,
                      free_bytes: int | None = None) -> int:
    """Images per forward pass for `model` on `device`: what fits in a share of the free memory, capped
    where throughput stops growing, and never more than the number of items."""
    dev = torch.device(device)
    free = free_memory_bytes(dev) if free_bytes is None else free_bytes
    fits = int(free * MEMORY_SHARE // max(1, activation_bytes_per_image(model)))
    cap = GPU_MAX_BATCH if dev.type == "cuda" else CPU_MAX_BATCH
    size = max(1, min(fits, cap))
    return max(1, min(size, n_items)) if n_items else size


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


__all__ = ["CPU_MAX_BATCH", "activation_bytes_per_image", "choose_batch_size", "cpu_count", "free_memory_bytes"]
