"""Resize, crop and per-band normalisation for multispectral tensors `[C,H,W]` or `[B,C,H,W]`.

Any channel count works: these are plain torch ops (torchvision's v2 functional API), not PIL. torchvision is
not imported with this module: importing it pulls in torch._dynamo (~1.4 s), which every command that loads a
model paid before reading a pixel, and every loader worker before its first batch. Float resizing calls
`torch.nn.functional.interpolate` as torchvision does (tested equal); cropping and other dtypes import torchvision
on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spectraclip.errors import SpectraclipError

RESIZE_MODES = ("bicubic", "bilinear", "nearest")  # torchvision's InterpolationMode of the same name
CROP_MODES = ("center", "none")


class TransformError(SpectraclipError, ValueError):
    """A transform option or input shape that cannot be used; the message names it."""


def _check_mode(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise TransformError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    return resize


def _mode(resize: str) -> Any:
    """torchvision's `InterpolationMode` for a resize mode name."""
    _check_mode(resize)
    from torchvision.transforms.v2 import InterpolationMode

    return InterpolationMode(resize)


def _tf() -> Any:
    from torchvision.transforms.v2 import functional

    return functional


def to_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 tensor sharing memory with `array` when it already is float32."""
    t = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
    return t.float() if t.dtype != torch.float32 else t


def _resize(x: torch.Tensor, height: int, width: int, resize: str, antialias: bool) -> torch.Tensor:
    """torchvision v2's `resize` of a float tensor to `height`x`width`, which for float input on the CPU is exactly
    `torch.nn.functional.interpolate` (align_corners False for bilinear/bicubic, no antialiasing for nearest):
    called directly so that reading a patch does not import torchvision (~1.4 s in every loader worker before
    its first batch). Other dtypes go through torchvision itself. Equal to torchvision: tests/test_transforms.py."""
    if x.dtype not in (torch.float32, torch.float64):
        return _tf().resize(x, [height, width], interpolation=_mode(resize), antialias=antialias)
    _check_mode(resize)
    smooth = resize in ("bilinear", "bicubic")
    shape = x.shape
    flat = x.reshape(-1, *shape[-3:])
    out = torch.nn.functional.interpolate(flat, size=[height, width], mode=resize,
                                          align_corners=False if smooth else None, antialias=antialias and smooth)
    return out.reshape(*shape[:-2], height, width)


def resize_shorter(x: torch.Tensor, size: int, resize: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Resize so the shorter side is `size` (aspect kept, antialiased); no-op when it already is. The longer side
    is `int(size * long / short)`, torchvision's rule."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if w <= h else (size, new_long)
    return _resize(x, new_h, new_w, resize, antialias)


def resize_exact(x: torch.Tensor, size: int, resize: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Resize to exactly `size`x`size` (aspect not kept); no-op when it already is."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return _resize(x, size, size, resize, antialias)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central `size`x`size` window (zero-padded if the input is smaller)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return _tf().center_crop(x, [size, size])


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-band `(x - mean) / std`; mean/std have one value per channel (axis -3)."""
    c = x.shape[-3]
    if len(mean) != c or len(std) != c:
        raise TransformError(f"input has {c} channels but normalisation has {len(mean)} means, {len(std)} stds")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(c, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(c, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class SpectralTransform:
    """Picklable callable: array/tensor `[C,H,W]` (model band order, raw units) -> normalised float32 `[C,S,S]`.

    `crop="center"` resizes the shorter side to `image_size` then centre-crops; `crop="none"` resizes
    straight to `image_size`x`image_size`.
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "bicubic"
    crop: str = "center"

    def __post_init__(self) -> None:
        _check_mode(self.resize)
        if self.crop not in CROP_MODES:
            raise TransformError(f"unknown crop mode {self.crop!r}; choose one of {', '.join(CROP_MODES)}")
        if len(self.mean) != len(self.std):
            raise TransformError(f"{len(self.mean)} means but {len(self.std)} stds")

    def __call__(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = to_tensor(array)
        if x.ndim not in (3, 4):
            raise TransformError(f"expected [C,H,W] or [B,C,H,W], got shape {tuple(x.shape)}")
        if self.crop == "center":
            x = center_crop(resize_shorter(x, self.image_size, self.resize), self.image_size)
        else:
            x = resize_exact(x, self.image_size, self.resize)
        return normalize(x, self.mean, self.std).contiguous()
