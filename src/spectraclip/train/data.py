"""Data plumbing for the trainer: the picklable sample→tensor transform, a deterministic global-batch
sampler that splits each step's batch across processes (and can start mid-epoch on resume), and the
construction of train/validation loaders from a recipe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spectraclip.bands import BandSet
from spectraclip.data.augment import SpectralAugment
from spectraclip.io.sample import Sample
from spectraclip.train.config import DataRecipe


@dataclass
class TrainTransform:
    """Select the model's bands by name, augment (same op on every band), then resize/normalise."""

    bands: tuple[str, ...]
    model_transform: Callable[[Any], torch.Tensor]
    augment: SpectralAugment | None = None

    def __call__(self, sample: Sample, generator: torch.Generator) -> torch.Tensor:
        px = sample.select(BandSet(self.bands)).pixels
        x = torch.from_numpy(px).float() if not isinstance(px, torch.Tensor) else px.float()
        if self.augment is not None:
            x = self.augment(x, generator)
        return self.model_transform(x)


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields, per step, this rank's contiguous share of a `global_batch` drawn from a seeded permutation.

    Rank r gets items `[r*B/W, (r+1)*B/W)` of each global batch, so W processes see exactly the batch one
    process would; `start` skips steps already done (resume). The last incomplete batch is dropped.
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        if global_batch % world_size:
            raise ValueError(f"data.batch_size {global_batch} is not divisible by {world_size} processes")
        self.n, self.global_batch, self.rank, self.world_size = n, global_batch, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per = self.global_batch // self.world_size
        for step in range(self.start, self.steps_per_epoch()):
            lo = step * self.global_batch + self.rank * per
            yield order[lo:lo + per]


def is_shards(spec: str) -> bool:
    """Whether a data spec names WebDataset shards rather than a caption manifest."""
    p = Path(spec)
    return p.is_dir() or spec.endswith(".tar") or "{" in spec or "*" in spec


def make_dataset(spec: str, transform: TrainTransform, recipe: DataRecipe, seed: int, split: str | None,
                 training: bool):
    """A `CaptionDataset` (manifest), `ShardDataset` (shards) or `Ssl4eoV11Dataset` (SSL4EO-S12 v1.1) for `spec`."""
    if recipe.layout == "ssl4eo-v1.1":
        from spectraclip.data.ssl4eo_v11 import Ssl4eoV11Dataset

        return Ssl4eoV11Dataset(spec, captions=recipe.captions, level=recipe.level, max_cloud=recipe.max_cloud,
                                cloud_policy=recipe.cloud_policy, transform=transform, seed=seed,
                                texts=recipe.texts)
    if is_shards(spec):
        from spectraclip.data.shards import ShardDataset

        return ShardDataset(spec, transform=transform, shuffle=recipe.shuffle_buffer if training else 0,
                            resampled=recipe.resampled and training, seed=seed)
    from spectraclip.data.captions import CaptionDataset

    return CaptionDataset(spec, split=split, transform=transform, seed=seed)
