"""The spectral patch embedding: find it, resize its input channels, and extend an RGB model to any
band set by name.

Normalisation when extending from an RGB OpenCLIP model: those models were trained on 8-bit RGB
scaled to [0, 1] and normalised with OPENAI_DATASET_MEAN/STD. We express that in reflectance digital
numbers (DN = reflectance x 10000) with `RGB_REFLECTANCE_SCALE` (DN / 3000 -> [0, 1], i.e. reflectance
0.3 maps to white, a usual true-colour stretch): for R, G, B the band mean is OPENAI_MEAN[c] * 3000
and the std OPENAI_STD[c] * 3000, so `(DN - mean) / std == (DN / 3000 - OPENAI_MEAN[c]) / OPENAI_STD[c]`,
exactly what the RGB model saw. New bands take their statistics from the registry's defaults
(`registry.default_band_stats()`), which is irrelevant at zero init and sensible once trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from spectraclip.bands import BandSet, BandStats
from spectraclip.errors import SpectraclipError

RGB_REFLECTANCE_SCALE = 3000.0
OPENCLIP_RGB_ORDER = ("B04", "B03", "B02")  # open_clip channel 0, 1, 2 = R, G, B


class PatchEmbedError(SpectraclipError, TypeError):
    """A model whose patch embedding cannot be found or changed."""


def _locate(model: nn.Module) -> tuple[nn.Module, str]:
    """(owner module, attribute name) of the first conv that reads the image."""
    if isinstance(model, nn.Conv2d):
        raise PatchEmbedError("expected a model, got a Conv2d")
    clip = getattr(model, "clip", model)  # SpectralCLIP -> open_clip model
    visual = getattr(clip, "visual", clip)
    if isinstance(getattr(visual, "conv1", None), nn.Conv2d):  # open_clip ViT and ModifiedResNet
        return visual, "conv1"
    trunk = getattr(visual, "trunk", None)  # timm towers
    pe = getattr(trunk, "patch_embed", None)
    if pe is not None and isinstance(getattr(pe, "proj", None), nn.Conv2d):
        return pe, "proj"
    raise PatchEmbedError(f"cannot find the patch embedding of {type(visual).__name__} "
                          "(expected visual.conv1 or visual.trunk.patch_embed.proj)")


def get_patch_embed(model: nn.Module) -> nn.Conv2d:
    """The Conv2d that embeds image patches (`visual.conv1` for open_clip ViTs)."""
    owner, name = _locate(model)
    return getattr(owner, name)


def _replace(model: nn.Module, conv: nn.Conv2d) -> None:
    owner, name = _locate(model)
    setattr(owner, name, conv)
    if name == "proj" and hasattr(owner, "in_chans"):
        owner.in_chans = conv.in_channels


def _like(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    return new.to(device=conv.weight.device, dtype=conv.weight.dtype)


def set_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Give `model` a freshly initialised patch embedding taking `in_channels` (no-op if it already does)."""
    conv = get_patch_embed(model)
    if conv.in_channels != in_channels:
        _replace(model, _like(conv, in_channels))
    return model


def extend_conv(conv: nn.Conv2d, from_bands: BandSet | Sequence[str] | str,
                to_bands: BandSet | Sequence[str] | str, init: Literal["zero", "mean"] = "zero") -> nn.Conv2d:
    """A new conv for `to_bands`: kernel slices of bands in `from_bands` copied by name, others zero
    (`init="zero"`) or the mean of all `from_bands` slices (`init="mean"`). Bias is copied unchanged."""
    src, dst = BandSet.parse(from_bands), BandSet.parse(to_bands)
    if conv.in_channels != len(src):
        raise PatchEmbedError(f"conv takes {conv.in_channels} channels but from_bands names {len(src)}: {src}")
    if init not in ("zero", "mean"):
        raise ValueError(f"init must be 'zero' or 'mean', got {init!r}")
    new = _like(conv, len(dst))
    with torch.no_grad():
        w = torch.zeros_like(new.weight)
        for i, band in enumerate(dst):
            if band in src.names:
                w[:, i] = conv.weight[:, src.names.index(band)]
        if init == "mean":
            fill = conv.weight.mean(1)
            for i, band in enumerate(dst):
                if band not in src.names:
                    w[:, i] = fill
        new.weight.copy_(w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def rgb_band_stats(scale: float = RGB_REFLECTANCE_SCALE) -> BandStats:
    """OpenCLIP's RGB normalisation expressed in reflectance DN for B04/B03/B02 (see module docstring)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return BandStats.from_lists(OPENCLIP_RGB_ORDER, [m * scale for m in OPENAI_DATASET_MEAN],
                                [s * scale for s in OPENAI_DATASET_STD],
                                source=f"OpenCLIP RGB (OPENAI mean/std x {scale:g} DN)")


def default_band_stats() -> BandStats:
    """Default per-band mean/std for bands a model does not define (`band_stats` of registry.json)."""
    import json
    from importlib import resources

    data = json.loads(resources.files("spectraclip.models").joinpath("registry.json").read_text("utf-8"))
    bs = data["band_stats"]
    return BandStats(dict(bs["mean"]), dict(bs["std"]), source="spectraclip registry defaults")


def extend_channels(model_or_conv: Any, from_bands: BandSet | Sequence[str] | str | None = None,
                    to_bands: BandSet | Sequence[str] | str = "msclip", init: Literal["zero", "mean"] = "zero",
                    stats: BandStats | None = None) -> Any:
    """Extend a patch embedding from `from_bands` to `to_bands`, matching kernel slices by band name.

    - a `Conv2d` -> returns a new Conv2d;
    - an open_clip model -> replaces its patch embedding in place and returns it
      (`from_bands` defaults to OpenCLIP's RGB order B04, B03, B02);
    - a `SpectralCLIP` -> also updates its config: bands, and mean/std (known bands keep theirs, new
      ones come from `stats`, else the registry's default band statistics). Returns the model.
    """
    dst = BandSet.parse(to_bands)
    if isinstance(model_or_conv, nn.Conv2d):
        if from_bands is None:
            raise ValueError("from_bands is required when extending a bare Conv2d")
        return extend_conv(model_or_conv, from_bands, dst, init)
    if hasattr(model_or_conv, "config") and hasattr(model_or_conv, "clip"):  # a SpectralCLIP
        cfg = model_or_conv.config
        src = BandSet.parse(from_bands) if from_bands is not None else model_or_conv.bands
        _replace(model_or_conv, extend_conv(get_patch_embed(model_or_conv), src, dst, init))
        old = {b: (m, s) for b, m, s in zip(cfg.bands, cfg.mean, cfg.std, strict=True)}
        new_bands = [b for b in dst if b not in old]
        if new_bands:
            if stats is None:
                stats = default_band_stats()
            stats.for_bands(new_bands)  # raises MissingBandError naming bands without statistics
            old.update({b: (float(stats.mean[b]), float(stats.std[b])) for b in new_bands})
        cfg.bands = list(dst.names)
        cfg.mean = [old[b][0] for b in dst]
        cfg.std = [old[b][1] for b in dst]
        cfg.provenance.setdefault("channel_extension", []).append(
            {"from_bands": list(src.names), "to_bands": list(dst.names), "init": init})
        return model_or_conv
    src = BandSet.parse(from_bands) if from_bands is not None else BandSet(OPENCLIP_RGB_ORDER)
    _replace(model_or_conv, extend_conv(get_patch_embed(model_or_conv), src, dst, init))
    return model_or_conv
