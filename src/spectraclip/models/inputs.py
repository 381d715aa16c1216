"""Input groups and the one preprocessing path from a `Sample` to model input.

A model takes one or more **input groups** (`s2`, `s1`, `coherence`, or one group of any bands for a
single-sensor model): each names its ordered bands, their per-band mean/std in the data's raw units and
the radiometry those units are in. A band's group comes from the band catalog (`Band.sensor`), so one
`Sample` holding any mix of bands feeds any model. `Preprocessor` is picklable (no weights): DataLoader
workers, Ray tasks and the trainer all turn samples into model input with the same object.

Missing data is declared, never guessed:
- a group none of whose bands the sample has is *absent* (a multi-group model fuses the groups present);
- a group with only some of its bands follows the missing-band policy: `error` (name the bands) or
  `fill` (the band's training mean, i.e. zero after normalisation); filled bands are reported;
- a raster much larger than the model input is a scene, not a chip: an error unless `allow_resize`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spectraclip.bands import (
    CATALOG,
    GROUP_ORDER,
    BandSet,
    BandStats,
    InputGroupError,
    MissingBandError,
    check_group,
    group_of_band,
    split_by_group,
)
from spectraclip.errors import InputError
from spectraclip.io.radiometry import Radiometry, convert
from spectraclip.io.sample import Sample
from spectraclip.models.transforms import SpectralTransform

MISSING_POLICIES: tuple[str, ...] = ("error", "fill")
SCENE_FACTOR = 2  # a raster more than this many model inputs on a side is a scene, not a chip


class SceneNotChipError(InputError, ValueError):
    """A raster far larger than the model input given where one model input (a chip) is expected."""


def default_radiometry(bands: Sequence[str]) -> dict[str, Any]:
    """What raw units a group's statistics are in when a config does not say: Sentinel-2 reflectance x 10000
    (no offset), radar dB and coherence as they are."""
    if all(CATALOG[b].sensor == "sentinel-2" for b in bands):
        return {"scale": 1e-4, "offset": 0.0}
    return {"scale": 1.0, "offset": 0.0}


@dataclass
class InputGroup:
    """One input of a model: ordered bands, per-band mean/std (raw units) and the radiometry of those units
    (`{"scale", "offset"[, "level"]}`: physical value = raw * scale + offset)."""

    name: str
    bands: list[str]
    mean: list[float]
    std: list[float]
    radiometry: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bands = list(BandSet.parse(self.bands).names)
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        n = len(self.bands)
        if len(self.mean) != n or len(self.std) != n:
            raise InputGroupError(f"input group {self.name!r}: {n} bands but {len(self.mean)} means / "
                                  f"{len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise InputGroupError(f"input group {self.name!r}: std must be positive, got {self.std}")
        self.radiometry = dict(self.radiometry or default_radiometry(self.bands))

    @classmethod
    def from_stats(cls, name: str, bands: BandSet | str | Sequence[str], stats: BandStats,
                   radiometry: Mapping[str, Any] | None = None) -> InputGroup:
        names = list(BandSet.parse(bands).names)
        mean, std = stats.for_bands(names)
        return cls(name, names, mean.tolist(), std.tolist(), dict(radiometry or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bands": list(self.bands), "mean": list(self.mean), "std": list(self.std),
                "radiometry": dict(self.radiometry)}


def _source_radiometry(sample: Sample, group: str) -> Radiometry | None:
    """The radiometry the sample's pixels of `group` are in, when the reader knew it (else None: as trained)."""
    by_modality = sample.meta.get("radiometry_by_modality") or {}
    rad = by_modality.get(group, sample.meta.get("radiometry"))
    if rad is None or isinstance(rad, Radiometry):
        return rad
    return Radiometry.from_dict(rad)


@dataclass
class PreparedInput:
    """Model input of one sample: `x[group]` `[C_g, S, S]` for the groups present, and the bands filled."""

    x: dict[str, torch.Tensor]
    filled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preprocessor:
    """Sample -> `PreparedInput`: bands by name per group, radiometry to the model's units, missing-band
    policy, resize/crop to the input size, per-band normalisation. Picklable; holds no weights."""

    groups: tuple[InputGroup, ...]
    image_size: int
    resize: str = "bicubic"
    crop: str = "center"
    missing_bands: str = "error"
    allow_resize: bool = False

    def __post_init__(self) -> None:
        if self.missing_bands not in MISSING_POLICIES:
            raise InputGroupError(f"missing-band policy {self.missing_bands!r}: choose one of "
                                  f"{', '.join(MISSING_POLICIES)}")

    @property
    def multi(self) -> bool:
        return len(self.groups) > 1

    def spec(self) -> dict[str, Any]:
        """Everything that decides the model input, as plain data (the preprocessing fingerprint's source)."""
        # whether rasters larger than 2x the input are resized or refused is left out: it decides which inputs
        # a run accepts, not what an accepted chip's embedding is (tables record it as `large_rasters`)
        return {"groups": [g.to_dict() for g in self.groups], "image_size": self.image_size, "resize": self.resize,
                "crop": self.crop, "missing_bands": self.missing_bands}

    def _check_size(self, sample: Sample) -> None:
        _, h, w = sample.pixels.shape
        limit = SCENE_FACTOR * self.image_size
        if (h > limit or w > limit) and not self.allow_resize:
            raise SceneNotChipError(
                f"{sample.path or sample.id}: {h}x{w} pixels is more than {SCENE_FACTOR}x the model input "
                f"({self.image_size}) on a side, so it is a scene, not a chip; resizing it into one input would "
                "blur it beyond use. Map it window by window with `spectraclip map` / `spectraclip heatmap`, or "
                "pass --resize to squeeze it into one model input anyway")

    def _group_pixels(self, group: InputGroup, sample: Sample, where: str) -> tuple[np.ndarray, list[str]] | None:
        have = sample.bands.names
        present = [b for b in group.bands if b in have]
        if not present:
            return None
        missing = [b for b in group.bands if b not in have]
        if missing and self.missing_bands == "error":
            raise MissingBandError(missing, have, f"{where} (the model's missing-band policy is 'error'; "
                                                  "--missing-bands fill fills them with the training mean)")
        idx = [have.index(b) for b in present]
        got = sample.pixels[idx]
        src = _source_radiometry(sample, group.name)
        if src is not None:
            invalid = sample.invalid[idx] if getattr(sample, "invalid", None) is not None else None
            got = convert(got, src.for_bands(present), Radiometry.from_dict(group.radiometry), bands=present,
                          invalid=invalid)
        if not missing:
            return np.asarray(got, np.float32), []
        px = np.empty((len(group.bands), *sample.pixels.shape[1:]), np.float32)
        for i, b in enumerate(group.bands):
            px[i] = got[present.index(b)] if b in present else group.mean[i]
        return px, missing

    def __call__(self, sample: Sample) -> PreparedInput:
        where = sample.path or sample.id
        self._check_size(sample)
        x: dict[str, torch.Tensor] = {}
        filled: list[str] = []
        for g in self.groups:
            got = self._group_pixels(g, sample, where)
            if got is None:
                continue
            px, missing = got
            x[g.name] = SpectralTransform(self.image_size, tuple(g.mean), tuple(g.std), self.resize, self.crop)(px)
            filled += missing
        if not x:
            need = [b for g in self.groups for b in g.bands]
            raise MissingBandError(need, sample.bands.names, f"{where} (none of the model's input groups "
                                                             f"{', '.join(g.name for g in self.groups)} is present)")
        return PreparedInput(x, filled)


def drop_inputs(x: dict[str, torch.Tensor], group_p: float, channel_p: float,
                generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Training-time corruption of one item's prepared input: each group is dropped with `group_p` (one is
    always kept) and each band of a kept group zeroed (its mean after normalisation) with `channel_p` (one
    band always kept). Deterministic for a given generator, so resumed and multi-process runs match."""
    names = list(x)
    if group_p > 0 and len(names) > 1:
        keep = [g for g in names if float(torch.rand((), generator=generator)) >= group_p]
        if not keep:
            keep = [names[int(torch.randint(len(names), (), generator=generator))]]
        x = {g: x[g] for g in names if g in keep}
    if channel_p <= 0:
        return x
    out = {}
    for g, t in x.items():
        if t.shape[0] > 1:
            mask = torch.rand(t.shape[0], generator=generator) >= channel_p
            if not mask.any():
                mask[int(torch.randint(t.shape[0], (), generator=generator))] = True
            t = t * mask[:, None, None].to(device=t.device, dtype=t.dtype)
        out[g] = t
    return out


def drop_batch(x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], group_p: float,
               channel_p: float, generator: torch.Generator | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`drop_inputs` on each sample of a batch (`x[g]` `[B, C_g, S, S]`, `present[g]` bool `[B]`).

    Returns the presence masks after dropout and the inputs with dropped bands zeroed; a group absent from a
    sample is never made present, and each sample keeps at least one of its groups and one band of each."""
    names = list(present)
    pres = {g: present[g].clone() for g in names}
    out = {g: x[g].clone() for g in names}
    for i in range(len(next(iter(pres.values())))):
        item = {g: x[g][i] for g in names if bool(present[g][i])}
        if not item:
            continue
        kept = drop_inputs(item, group_p, channel_p, generator)
        for g in item:
            if g in kept:
                out[g][i] = kept[g]
            else:
                pres[g][i] = False
    return pres, out


def collate_inputs(items: Sequence[PreparedInput], groups: Sequence[str]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stack prepared inputs into `x[g]` `[B, C_g, S, S]` (zeros where absent) and bool `present[g]` `[B]`."""
    x: dict[str, torch.Tensor] = {}
    present: dict[str, torch.Tensor] = {}
    for g in groups:
        ref = next((it.x[g] for it in items if g in it.x), None)
        if ref is None:
            continue
        x[g] = torch.stack([it.x[g] if g in it.x else torch.zeros_like(ref) for it in items])
        present[g] = torch.tensor([g in it.x for it in items], dtype=torch.bool)
    return x, present


__all__ = ["GROUP_ORDER", "MISSING_POLICIES", "InputGroup", "InputGroupError", "PreparedInput", "Preprocessor",
           "SceneNotChipError", "check_group", "collate_inputs", "default_radiometry", "drop_batch", "drop_inputs",
           "group_of_band", "split_by_group"]
