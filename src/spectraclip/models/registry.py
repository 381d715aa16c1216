"""Named models, kept as data in `registry.json`: architecture, bands, normalisation, input size and
where the weights come from (a Hub file, an open_clip pretrained tag, or random init for tiny test
models). `model_config(name, bands=...)` turns an entry into a complete `ModelConfig`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from spectraclip.bands import MSCLIP_STATS, BandSet, BandStats
from spectraclip.errors import SpectraclipError

if TYPE_CHECKING:
    from spectraclip.models.spectral_clip import ModelConfig

# Import-light (no torch): `get_entry` and `check_weights_available` run before a command loads anything.


class UnknownModelError(SpectraclipError, LookupError, ValueError):
    """A model name that is neither in the registry nor an open_clip architecture."""

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RegistryEntry:
    """One named model of `registry.json`."""

    name: str
    arch: str
    bands: str
    stats: str | dict[str, Any] = "default"
    arch_config: dict[str, Any] | None = None
    image_size: int | None = None
    resize: str = "bicubic"
    crop: str = "center"
    text: dict[str, Any] = field(default_factory=lambda: {"tokenizer": "open_clip"})
    hub: dict[str, str] | None = None
    openclip_pretrained: str | None = None
    checkpoint_format: str | None = None
    pretrained_text: bool = False
    seed: int | None = None
    description: str = ""
    license: str | None = None
    zeroshot: dict[str, Any] = field(default_factory=dict)  # declared zero-shot defaults (templates)


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return json.loads(resources.files("spectraclip.models").joinpath("registry.json").read_text("utf-8"))


def list_models() -> list[str]:
    """Names of the registered models."""
    return list(_data()["models"])


def get_entry(name: str) -> RegistryEntry:
    """The registry entry called `name` (case-insensitive); UnknownModelError lists the known names."""
    models = _data()["models"]
    key = {k.lower(): k for k in models}.get(name.lower())
    if key is None:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {', '.join(models)}")
    return RegistryEntry(name=key, **models[key])


def check_weights_available(name: str) -> None:
    """For a registry model whose weights come from a Hub file: return when the file is in the local HF cache
    or the Hub is reachable, else raise ModelNotAvailableError at once (naming the model, repo, file and the
    download command) instead of letting the download retry for half a minute. Other names: nothing to check."""
    from spectraclip.models.hub import check_hub_file

    try:
        entry = get_entry(name)
    except UnknownModelError:
        return
    if entry.hub:
        check_hub_file(entry.hub["repo_id"], entry.hub["filename"], entry.hub.get("revision"), model=entry.name)


def stats_for(spec: str | dict[str, Any], bands: BandSet) -> BandStats:
    """Resolve an entry's `stats` spec: `msclip`, `openclip-rgb`, `default` or {"mean":{..},"std":{..}}."""
    from spectraclip.models.channels import default_band_stats, rgb_band_stats

    if isinstance(spec, dict):
        base = BandStats(dict(spec["mean"]), dict(spec["std"]), source="registry entry")
    elif spec == "msclip":
        base = MSCLIP_STATS
    elif spec == "openclip-rgb":
        base = rgb_band_stats()
    elif spec == "default":
        base = default_band_stats()
    else:
        raise ValueError(f"unknown stats spec {spec!r} (msclip, openclip-rgb, default or a dict)")
    default = default_band_stats()
    mean = {**{b: default.mean[b] for b in bands if b in default.mean}, **base.mean}
    std = {**{b: default.std[b] for b in bands if b in default.std}, **base.std}
    return BandStats(mean, std, source=base.source or str(spec))


def openclip_arch_config(arch: str) -> dict[str, Any]:
    """The full model cfg of a built-in open_clip architecture (embed_dim, vision_cfg, text_cfg)."""
    from open_clip.factory import get_model_config
    from open_clip.factory import list_models as oc_models

    cfg = get_model_config(arch)
    if cfg is None:
        raise UnknownModelError(f"unknown open_clip architecture {arch!r}; e.g. {', '.join(oc_models()[:12])}, ...")
    return cfg


def model_config(name: str, bands: BandSet | str | list[str] | None = None) -> ModelConfig:
    """A complete ModelConfig for registry entry `name`, optionally for another band set (by name)."""
    entry = get_entry(name)
    return config_from_entry(entry, bands)


def config_from_entry(entry: RegistryEntry, bands: BandSet | str | list[str] | None = None) -> ModelConfig:
    """Build the ModelConfig of a registry entry (arch cfg from open_clip when not inline)."""
    from spectraclip.models.spectral_clip import ModelConfig

    arch_config = entry.arch_config if entry.arch_config is not None else openclip_arch_config(entry.arch)
    bandset = BandSet.parse(bands if bands is not None else entry.bands)
    stats = stats_for(entry.stats, bandset)
    stats.for_bands(bandset)  # raises MissingBandError naming bands without statistics
    mean, std = [float(stats.mean[b]) for b in bandset], [float(stats.std[b]) for b in bandset]
    image_size = entry.image_size or arch_config["vision_cfg"].get("image_size", 224)
    provenance: dict[str, Any] = {"registry": entry.name}
    if entry.hub:
        provenance["hub"] = dict(entry.hub)
    if entry.openclip_pretrained:
        provenance["openclip_pretrained"] = entry.openclip_pretrained
    if entry.license:
        provenance["license"] = entry.license
    return ModelConfig(arch=entry.arch, arch_config=json.loads(json.dumps(arch_config)), bands=list(bandset.names),
                       mean=mean, std=std, image_size=int(image_size), resize=entry.resize,
                       crop=entry.crop, text=dict(entry.text), provenance=provenance,
                       zeroshot=dict(entry.zeroshot))


def tiny_group_config(groups: dict[str, str | list[str]] | None = None, stats: dict[str, BandStats] | None = None,
                      **kw: Any) -> ModelConfig:
    """A tiny multi-group ViT for tests and demos (embed 32, width 64, 2 layers, 32 px input).

    Per-group mean/std come from `stats` (e.g. `spectraclip.data.stats.compute_stats`) when given, else rough
    defaults (S2 reflectance x 1e4; S1 dB; coherence 0-1).
    """
    from spectraclip.bands import check_group
    from spectraclip.models.inputs import InputGroup
    from spectraclip.models.spectral_clip import ModelConfig

    groups = groups or {"s2": "s2-l2a", "s1": "s1"}
    default = {"s2": (1500.0, 1200.0), "s1": (-12.0, 5.0), "coherence": (0.5, 0.25)}
    inputs = []
    for g, bands in groups.items():
        g = check_group(g)
        names = list(BandSet.parse(bands).names)
        if stats is not None and g in stats:
            inputs.append(InputGroup.from_stats(g, names, stats[g]))
        else:
            mu, sd = default[g]
            inputs.append(InputGroup(g, names, [mu] * len(names), [sd] * len(names)))
    arch_config = {"embed_dim": 32,
                   "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
                   "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    kw.setdefault("missing_bands", "fill")
    kw.setdefault("resize", "bilinear")
    return ModelConfig("tiny-multisensor", arch_config, inputs, image_size=32, **kw)
