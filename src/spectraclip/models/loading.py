"""`load_model`: one entry point for every way to name a model.

- a registry name (`Llama3-MS-CLIP-Base`, `OpenCLIP-ViT-B-16`, `tiny-test`, ...; see `registry.json`);
- `openclip:<arch>[/<tag>]` or a bare open_clip architecture name (`ViT-B-16`);
- a bundle directory (one input group or several), `hf-hub:org/repo[@rev]`,
  or a checkpoint file (Llama3-MS-CLIP layout, plain
  open_clip state dict, or a bundle's `model.safetensors`) given as `checkpoint=` (or as `name`).

`bands=` asks for another band set: tiny/random models are built for it, pretrained models have their
patch embedding extended by band name (new bands zero-initialised, see `channels.extend_channels`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from spectraclip.bands import BandSet
from spectraclip.models.channels import extend_channels, rgb_band_stats
from spectraclip.models.checkpoints import (
    BUNDLE_CONFIG,
    HF_PREFIX,
    CheckpointError,
    ModelNotAvailableError,
    convert_llama3_msclip,
    hub_file,
    hub_snapshot,
    infer_openclip_arch,
    is_bundle,
    is_llama3_msclip,
    load_bundle,
    load_into,
    read_state_dict,
    split_hf_id,
)
from spectraclip.models.registry import (
    RegistryEntry,
    UnknownModelError,
    check_weights_available,
    config_from_entry,
    get_entry,
    list_models,
    openclip_arch_config,
)
from spectraclip.models.spectral_clip import ModelConfig, ModelConfigError, SpectralCLIP

DEFAULT_MODEL = "Llama3-MS-CLIP-Base"
OPENCLIP_PREFIX = "openclip:"
BandsArg = BandSet | str | list[str] | None


def load_model(name: str | None = None, checkpoint: str | os.PathLike[str] | None = None,
               device: str | torch.device = "cpu", bands: BandsArg = None) -> SpectralCLIP:
    """Load a SpectralCLIP by name and/or checkpoint (see module docstring); fp32, eval mode, on `device`.

    A local file or bundle loaded before on the CPU comes back deferred (`models/deferred.py`): config and
    fingerprint from its record, weights built on first use."""
    from spectraclip.models.deferred import deferred_model, record_key, remember

    source = checkpoint if checkpoint is not None else name
    key = None  # record_key: None unless `source` is a local file or bundle
    if source is not None and torch.device(device).type == "cpu":
        key = record_key(name if checkpoint is not None else None, source, bands)
    if key is not None:
        model = deferred_model(key, lambda: _load_now(name, checkpoint, "cpu", bands))
        if model is not None:
            return model
    model = _load_now(name, checkpoint, device, bands)
    remember(model, key)
    return model


def _load_now(name: str | None, checkpoint: str | os.PathLike[str] | None, device: str | torch.device,
              bands: BandsArg) -> SpectralCLIP:
    if checkpoint is not None:
        model = _from_checkpoint(str(checkpoint), name, bands)
    else:
        model = _from_name(name or DEFAULT_MODEL, bands)
    model = _with_bands(model, bands)
    return model.float().to(device).eval()


# -- names --------------------------------------------------------------------------------------------

def _from_name(name: str, bands: BandsArg) -> SpectralCLIP:
    if name.startswith(HF_PREFIX):
        return _from_hf(name)
    if name.startswith(OPENCLIP_PREFIX):
        arch, _, tag = name[len(OPENCLIP_PREFIX):].partition("/")
        return _openclip(arch, tag or None)
    try:
        entry = get_entry(name)
    except UnknownModelError:
        entry = None
    if entry is not None:
        return _from_entry(entry, bands)
    if Path(name).exists():
        return _from_checkpoint(name, None, bands)
    from open_clip.factory import list_models as oc_models

    arch, _, tag = name.partition("/")
    if arch in oc_models():
        return _openclip(arch, tag or None)
    raise UnknownModelError(
        f"unknown model {name!r}: not a registered model ({', '.join(list_models())}), not an open_clip "
        f"architecture (see `openclip:<arch>[/<tag>]`), not an existing path and not an hf-hub: id"
    )


def _from_entry(entry: RegistryEntry, bands: BandsArg) -> SpectralCLIP:
    if entry.hub:
        check_weights_available(entry.name)  # not cached and no Hub: fail now, not after the download's retries
        path = hub_file(entry.hub["repo_id"], entry.hub["filename"], entry.hub.get("revision"))
        return _from_file(path, entry, None)
    if entry.openclip_pretrained:
        return _openclip(entry.arch, entry.openclip_pretrained, entry)
    # random init (tiny test models): build straight for the requested bands, reproducibly
    config = config_from_entry(entry, bands)
    with torch.random.fork_rng(devices=[]):
        if entry.seed is not None:
            torch.manual_seed(entry.seed)
        model = SpectralCLIP.from_config(config, pretrained_text=entry.pretrained_text)
    model.config.provenance["init"] = "random" + (f" (seed {entry.seed})" if entry.seed is not None else "")
    return model


def _openclip_config(arch: str, tag: str | None, entry: RegistryEntry | None = None) -> ModelConfig:
    if entry is not None:
        return config_from_entry(entry)
    arch_config = openclip_arch_config(arch)
    stats = rgb_band_stats()
    rgb = BandSet.parse("rgb")
    size = arch_config["vision_cfg"].get("image_size", 224)
    provenance = {"openclip": arch, **({"openclip_pretrained": tag} if tag else {"init": "random"})}
    return ModelConfig(arch=arch, arch_config=arch_config, bands=list(rgb.names),
                       mean=[float(stats.mean[b]) for b in rgb], std=[float(stats.std[b]) for b in rgb],
                       image_size=size if isinstance(size, int) else size[0], provenance=provenance)


def openclip_weights(arch: str, tag: str) -> str:
    """A local file for an open_clip pretrained tag, fetched through the HF cache (offline-aware).

    Tags hosted on the Hub resolve to `open_clip_model.safetensors` (else `open_clip_pytorch_model.bin`)
    of their repo; other tags (plain URLs, e.g. OpenAI) are left to open_clip's own download.
    """
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        raise UnknownModelError(f"open_clip {arch} has no pretrained tag {tag!r}; "
                                f"tags: {', '.join(list_pretrained_tags_by_model(arch)) or 'none'}")
    parts = [p for p in cfg.get("hf_hub", "").split("/") if p]
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not repo:
        return tag
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    last: ModelNotAvailableError | None = None
    for name in names:
        try:
            return str(hub_file(repo, name))
        except ModelNotAvailableError as exc:
            last = exc
    raise ModelNotAvailableError(f"open_clip {arch} pretrained={tag!r}: {last}\n"
                                 f"(with --checkpoint PATH also pass --model {arch}).")


def _openclip(arch: str, tag: str | None, entry: RegistryEntry | None = None) -> SpectralCLIP:
    """An RGB open_clip model (pretrained tag or random), wrapped with OpenCLIP's RGB normalisation in DN."""
    import open_clip

    config = _openclip_config(arch, tag, entry)
    weights = openclip_weights(arch, tag) if tag else None
    try:
        clip = open_clip.create_model(arch, pretrained=weights, device="cpu")
    except RuntimeError as exc:
        if weights != tag:  # a local file that does not load is a real error
            raise CheckpointError(weights or arch, str(exc)) from exc
        raise ModelNotAvailableError(f"cannot download open_clip {arch} pretrained={tag!r} ({exc}); "
                                     f"pass a local file with `--model {arch} --checkpoint PATH`") from exc
    return SpectralCLIP(clip, config)


def _from_hf(source: str) -> SpectralCLIP:
    repo, rev = split_hf_id(source)
    folder = hub_snapshot(repo, rev, allow_patterns=[BUNDLE_CONFIG, "model.safetensors", "open_clip_config.json",
                                                     "open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
    if is_bundle(folder):
        return load_bundle(folder)
    if (folder / "open_clip_config.json").is_file():
        import open_clip

        clip = open_clip.create_model(f"local-dir:{folder}", device="cpu")
        arch_config = _read_json(folder / "open_clip_config.json")["model_cfg"]
        stats, rgb = rgb_band_stats(), BandSet.parse("rgb")
        config = ModelConfig(arch=source, arch_config=arch_config, bands=list(rgb.names),
                             mean=[stats.mean[b] for b in rgb], std=[stats.std[b] for b in rgb],
                             image_size=clip.visual.image_size[0], provenance={"hub": source})
        return SpectralCLIP(clip, config)
    raise CheckpointError(source, f"Hub repo has neither {BUNDLE_CONFIG} nor open_clip_config.json")


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


# -- checkpoints ----------------------------------------------------------------------------------------

def _from_checkpoint(checkpoint: str, name: str | None, bands: BandsArg) -> SpectralCLIP:
    if checkpoint.startswith(HF_PREFIX):
        return _from_hf(checkpoint)
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if is_bundle(path):
            return load_bundle(path)
        raise CheckpointError(path, f"directory is not a spectraclip bundle (no {BUNDLE_CONFIG})")
    if path.name == BUNDLE_CONFIG or (path.suffix == ".safetensors" and is_bundle(path.parent)):
        return load_bundle(path.parent)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file or bundle directory")
    entry = None
    if name and not name.startswith((HF_PREFIX, OPENCLIP_PREFIX)):
        try:
            entry = get_entry(name)
        except UnknownModelError:
            entry = None
    arch = None
    if name and entry is None:
        arch = name[len(OPENCLIP_PREFIX):] if name.startswith(OPENCLIP_PREFIX) else name
        arch = arch.partition("/")[0]
    return _from_file(path, entry, arch)


def _from_file(path: Path, entry: RegistryEntry | None, arch: str | None) -> SpectralCLIP:
    """A state-dict file: Llama3-MS-CLIP wrapper or plain open_clip (arch from entry/name/shapes)."""
    sd = read_state_dict(path)
    provenance: dict = {"checkpoint": str(path)}
    if is_llama3_msclip(sd):
        sd, info = convert_llama3_msclip(sd, where=str(path))
        provenance.update(info)
        if entry is None and arch is None:
            entry = get_entry(DEFAULT_MODEL)
    if entry is not None:
        _check_channels(sd, entry, path)
        config = config_from_entry(entry)
    else:
        arch = arch or infer_openclip_arch(sd)
        if arch is None:
            raise CheckpointError(path, "cannot tell the open_clip architecture from the weights; "
                                        "name it with --model <arch> (e.g. ViT-B-16)")
        config = _openclip_config(arch, None)
        config.provenance.pop("init", None)
        n = _in_channels(sd)
        if n is not None and n != len(config.bands):
            raise CheckpointError(path, f"patch embedding takes {n} channels and nothing names its bands: a plain "
                                        "state dict does not say which bands its channels are. Load it with a "
                                        "registry name that declares them (--model Llama3-MS-CLIP-Base for the "
                                        "10-band msclip order), or save it as a bundle with its bands")
    config.provenance.update(provenance)
    model = SpectralCLIP.from_config(config, init=False)  # every weight comes from the file (strict)
    return load_into(model, sd, where=str(path))


def _in_channels(sd: dict) -> int | None:
    w = sd.get("visual.conv1.weight")
    return int(w.shape[1]) if w is not None else None


def _check_channels(sd: dict, entry: RegistryEntry, path: Path) -> None:
    """The weights' patch embedding must take as many channels as the entry has bands."""
    n = _in_channels(sd)
    own = BandSet.parse(entry.bands)
    if n is not None and n != len(own):
        raise CheckpointError(path, f"patch embedding takes {n} channels but {entry.name} expects "
                                    f"{len(own)} ({own})")


def _with_bands(model: SpectralCLIP, bands: BandsArg) -> SpectralCLIP:
    """Extend/select the patch embedding by name when another band set is asked for."""
    if bands is None:
        return model
    if model.config.multi:
        raise ModelConfigError("--model-bands does not apply to a model with several input groups (its bands are "
                               "per group); choose the bands of the inputs instead")
    want = BandSet.parse(bands)
    if want.names == model.bands.names:
        return model
    return extend_channels(model, to_bands=want, init="zero")
