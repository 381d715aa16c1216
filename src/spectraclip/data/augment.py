"""Spatial augmentations that keep spectra honest: every band gets the same flip, rotation and crop,
and no operation mixes or rescales band values (only resampling on a resized crop)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import RandomResizedCrop, v2


@dataclass
class SpectralAugment:
    """Random horizontal/vertical flips, 90° rotations and a random resized crop of a `[C,H,W]` tensor.

    The crop keeps the input size (`size=None`) or resizes to `size`; `crop_scale=None` disables it.
    Randomness comes only from the `generator` passed in, so results are reproducible per item.
    """

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    crop_scale: tuple[float, float] | None = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: int | None = None

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator if generator is not None else torch.Generator().manual_seed(
            int(torch.randint(0, 2**31 - 1, ()).item()))
        x = pixels
        if self.crop_scale is not None:
            h, w = x.shape[-2:]
            size = [self.size, self.size] if self.size else [h, w]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g).item()))
                top, left, ch, cw = RandomResizedCrop.get_params(
                    x, scale=list(self.crop_scale), ratio=list(self.crop_ratio))
            x = v2.functional.resized_crop(x, top, left, ch, cw, size=size, antialias=True,
                                           interpolation=v2.InterpolationMode.BILINEAR)
        if self.hflip and bool(torch.rand((), generator=g) < 0.5):
            x = torch.flip(x, dims=[-1])
        if self.vflip and bool(torch.rand((), generator=g) < 0.5):
            x = torch.flip(x, dims=[-2])
        if self.rot90:
            k = int(torch.randint(0, 4, (), generator=g).item())
            if k and x.shape[-1] == x.shape[-2]:
                x = torch.rot90(x, k, dims=[-2, -1])
        return x.contiguous()
