"""Checkpoint formats.

- Our bundle: a directory (or `hf-hub:org/repo`) holding `model.safetensors` + `spectraclip.json`
  (the full `ModelConfig` with a format version). Loading needs nothing else.
- Plain open_clip checkpoints: `.pt`/`.bin`/`.pth`/`.safetensors` state dicts, optionally wrapped in
  `{"state_dict": ...}` and/or with `module.` prefixes.
- The published Llama3-MS-CLIP file: a torch state dict of a Lightning wrapper whose open_clip weights
  appear three times (`clip_base_model.model.`, `image_encoder.model.`, `text_encoder.model.`) plus a
  scalar `temperature`. `temperature` is the CLIP temperature tau of that training code (logits =
  cosine / tau, initialised at 0.07), so it converts to open_clip's `logit_scale = log(1 / tau)`; the
  open_clip `logit_scale` stored in the file (left from the RGB initialisation, unused in training) is
  kept in the provenance. Embeddings do not depend on either.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from spectraclip.errors import CheckpointError, ModelNotAvailableError
from spectraclip.io.atomic import current_umask
from spectraclip.models.hub import check_hub_file, hf_cache_dir, offline
from spectraclip.models.spectral_clip import ModelConfig, ModelConfigError, SpectralCLIP

BUNDLE_CONFIG = "spectraclip.json"
BUNDLE_WEIGHTS = "model.safetensors"
HF_PREFIX = "hf-hub:"
LLAMA3_PREFIXES = ("clip_base_model.model.", "image_encoder.model.", "text_encoder.model.")


# -- Hugging Face Hub ---------------------------------------------------------------------------------

def _not_available(repo_id: str, filename: str | None, exc: BaseException) -> ModelNotAvailableError:
    what = f"{repo_id}/{filename}" if filename else repo_id
    cmd = f"huggingface-cli download {repo_id}" + (f" {filename}" if filename else "")
    mode = "HF_HUB_OFFLINE is set and " if offline() else ""
    return ModelNotAvailableError(
        f"cannot get {what} from the Hugging Face Hub: {mode}it is not in the local cache "
        f"({hf_cache_dir() or 'default HF cache'}) [{type(exc).__name__}: {exc}].\n"
        f"Download it where you have network with `{cmd}` (fills the HF cache; copy HF_HOME over), "
        f"or fetch the file by hand and pass it with `--checkpoint PATH` (load_model(checkpoint=PATH)), "
        f"which needs no network."
    )


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """One file of a Hub repo through huggingface_hub's cache (honours HF_HUB_OFFLINE / HF_HOME)."""
    from huggingface_hub import hf_hub_download

    check_hub_file(repo_id, filename, revision)  # cached, or the Hub answers: else fail now, not after retries
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hf_cache_dir(),
                                    local_files_only=offline()))
    except Exception as exc:  # noqa: BLE001 - every failure means: not available here
        raise _not_available(repo_id, filename, exc) from exc


def hub_snapshot(repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None) -> Path:
    """A local snapshot folder of a Hub repo (cached; offline-aware)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=hf_cache_dir(),
                                      local_files_only=offline(), allow_patterns=allow_patterns))
    except Exception as exc:  # noqa: BLE001
        raise _not_available(repo_id, None, exc) from exc


def split_hf_id(source: str) -> tuple[str, str | None]:
    """`hf-hub:org/repo[@revision]` -> (repo_id, revision)."""
    ident = source[len(HF_PREFIX):] if source.startswith(HF_PREFIX) else source
    repo, _, rev = ident.strip("/").partition("@")
    if repo.count("/") != 1:
        raise ValueError(f"{source!r} is not a Hub id of the form hf-hub:org/repo[@revision]")
    return repo, rev or None


# -- our bundle ---------------------------------------------------------------------------------------

def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True for a directory holding `spectraclip.json`."""
    return (Path(path) / BUNDLE_CONFIG).is_file()


def write_bundle_dir(directory: str | os.PathLike[str], fill: Callable[[Path], None]) -> Path:
    """Atomically (re)place the bundle `directory`: `fill(tmp)` writes the files into a temp dir, which is
    then renamed into place. An existing bundle is replaced; any other non-empty directory is refused."""
    target = Path(directory)
    if target.exists() and not is_bundle(target) and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(target, "exists and is not a spectraclip bundle; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders; bundles are meant to be shared
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def save_bundle(model: SpectralCLIP, directory: str | os.PathLike[str],
                provenance: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` + `spectraclip.json` to `directory` atomically (temp dir, then rename).

    An existing bundle at `directory` is replaced; any other non-empty directory is refused. A single-group
    model stores its open_clip weights (`model.clip`, open_clip's own key names); a multi-group model the
    whole module (`clip.*` and `patch_embeds.*`), as format-1 multi-sensor bundles did.
    """
    from safetensors.torch import save_file

    from spectraclip import __version__

    cfg = ModelConfig.from_dict(model.config.to_dict())
    cfg.provenance.update(provenance or {})
    cfg.provenance.setdefault("saved_at", datetime.now(UTC).isoformat(timespec="seconds"))
    cfg.provenance["spectraclip_version"] = __version__
    module = model if cfg.multi else model.clip
    layout = "model" if cfg.multi else "clip"

    def fill(tmp: Path) -> None:
        from safetensors.torch import save_model

        meta = {"format": "spectraclip", "arch": cfg.arch, "weights": layout}
        if cfg.multi:
            save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
                      str(tmp / BUNDLE_WEIGHTS), metadata=meta)
        else:
            save_model(module, str(tmp / BUNDLE_WEIGHTS), metadata=meta)
        (tmp / BUNDLE_CONFIG).write_text(cfg.to_json() + "\n", encoding="utf-8")

    return write_bundle_dir(directory, fill)


def read_bundle_config(directory: str | os.PathLike[str]) -> ModelConfig:
    """The ModelConfig stored in a bundle directory (any format version; older `config.json` too)."""
    d = Path(directory)
    older = d / "config.json"  # the first multi-sensor bundles
    path = older if older.is_file() and not (d / BUNDLE_CONFIG).is_file() else d / BUNDLE_CONFIG
    try:
        return ModelConfig.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(directory, f"not a spectraclip bundle (no {BUNDLE_CONFIG})") from None
    except (json.JSONDecodeError, ModelConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid bundle config: {exc}") from exc


def load_bundle(source: str | os.PathLike[str], device: str | torch.device = "cpu") -> SpectralCLIP:
    """Load a bundle from a directory or `hf-hub:org/repo[@rev]` (through the HF cache)."""
    from safetensors.torch import load_file, load_model

    src = str(source)
    if src.startswith(HF_PREFIX):
        repo, rev = split_hf_id(src)
        folder = hub_snapshot(repo, rev, allow_patterns=[BUNDLE_CONFIG, BUNDLE_WEIGHTS])
    else:
        folder = Path(src)
    config = read_bundle_config(folder)
    weights = folder / BUNDLE_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(folder, f"bundle has {BUNDLE_CONFIG} but no {BUNDLE_WEIGHTS}")
    model = SpectralCLIP.from_config(config, pretrained_text=False, init=False)  # filled strictly below
    try:
        if config.multi:
            model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
        else:
            load_model(model.clip, str(weights), strict=True, device="cpu")
    except RuntimeError as exc:
        raise CheckpointError(weights, f"weights do not fit the config's architecture: {exc}") from exc
    return model.to(device).eval()


# -- plain state dicts ---------------------------------------------------------------------------------

def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A flat tensor dict from `.safetensors` or a torch file (unwrapping `state_dict`/`model`, `module.`)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        else:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # not a zip-format file: no mmap
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path, "no such checkpoint file") from None
    except Exception as exc:  # noqa: BLE001 - corrupt/foreign files
        raise CheckpointError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(path, "not a state dict of tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def is_llama3_msclip(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for the published Llama3-MS-CLIP wrapper layout."""
    return any(k.startswith(LLAMA3_PREFIXES[0]) for k in state_dict) or (
        "temperature" in state_dict and any(k.startswith(LLAMA3_PREFIXES[1]) for k in state_dict))


def convert_llama3_msclip(state_dict: dict[str, torch.Tensor], where: str = "checkpoint"
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Published Llama3-MS-CLIP wrapper state dict -> (open_clip state dict, conversion info).

    Uses the `clip_base_model.model.` copy after checking the `image_encoder`/`text_encoder` copies
    hold the same tensors. If they differ, the image tower comes from `image_encoder.model.` and the
    rest from `text_encoder.model.` (the modules the published inference calls), with a warning.
    """
    copies = {p: {k[len(p):]: v for k, v in state_dict.items() if k.startswith(p)} for p in LLAMA3_PREFIXES}
    base, img, txt = (copies[p] for p in LLAMA3_PREFIXES)
    info: dict[str, Any] = {"source_format": "llama3-ms-clip"}
    disagree = sorted(k for k in base if (k in img and not torch.equal(img[k], base[k]))
                      or (k in txt and not torch.equal(txt[k], base[k])))
    if base and not disagree:
        out = dict(base)
        info["copies_agree"] = True
    else:
        if not img and not txt:
            raise CheckpointError(where, "Llama3-MS-CLIP layout without image_encoder/text_encoder weights")
        if disagree:
            warnings.warn(f"{where}: the three Llama3-MS-CLIP weight copies differ in {len(disagree)} tensors "
                          f"(e.g. {disagree[0]}); using image_encoder.model.visual.* and text_encoder.model.*",
                          stacklevel=2)
        out = {**base, **{k: v for k, v in txt.items() if not k.startswith("visual.")},
               **{k: v for k, v in img.items() if k.startswith("visual.")}}
        info["copies_agree"] = False
        info["copies_differ_in"] = disagree[:20]
    if "temperature" in state_dict:
        tau = float(state_dict["temperature"].float().reshape(-1)[0])
        if "logit_scale" in out:
            info["file_logit_scale"] = float(out["logit_scale"].float().reshape(-1)[0])
        if tau > 0 and math.isfinite(tau):
            ref = out.get("logit_scale", torch.zeros([]))
            out["logit_scale"] = torch.full_like(ref.float(), math.log(1.0 / tau)).to(ref.dtype)
            info["temperature"] = tau
    extra = sorted(k for k in state_dict if not k.startswith(LLAMA3_PREFIXES) and k != "temperature")
    if extra:
        info["ignored_keys"] = extra[:20]
    return out, info


def prepare_openclip_state_dict(clip: torch.nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Small fix-ups open_clip applies when loading: logit_scale/bias shape, stray position_ids."""
    sd = dict(sd)
    for key in ("logit_scale", "logit_bias"):
        param = getattr(clip, key, None)
        if key in sd and param is not None and sd[key].shape != param.shape:
            sd[key] = sd[key].reshape(param.shape)
    if getattr(clip, "logit_bias", None) is None:
        sd.pop("logit_bias", None)
    own = clip.state_dict()
    for k in [k for k in sd if k.endswith("position_ids") and k not in own]:
        del sd[k]
    return sd


def load_into(model: SpectralCLIP, sd: dict[str, torch.Tensor], where: str = "checkpoint") -> SpectralCLIP:
    """Load an open_clip state dict into `model.clip` strictly, naming the file on mismatch."""
    sd = prepare_openclip_state_dict(model.clip, sd)
    try:
        model.clip.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(where, f"weights do not fit architecture {model.config.arch!r}: {exc}") from exc
    return model


def infer_openclip_arch(sd: dict[str, torch.Tensor]) -> str | None:
    """The built-in open_clip ViT architecture whose shapes match this state dict (None if none/ambiguous).

    QuickGELU variants look identical in the weights; the plain name is preferred.
    """
    from open_clip.factory import get_model_config, list_models

    if "visual.conv1.weight" not in sd or "visual.positional_embedding" not in sd:
        return None
    width, _, patch, _ = sd["visual.conv1.weight"].shape
    n_pos = sd["visual.positional_embedding"].shape[0]
    v_layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
    t_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    embed = sd["text_projection"].shape[1] if "text_projection" in sd else None
    t_width = sd["token_embedding.weight"].shape[1] if "token_embedding.weight" in sd else None
    ctx = sd["positional_embedding"].shape[0] if "positional_embedding" in sd else None
    found = []
    for name in list_models():
        cfg = get_model_config(name)
        v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if "timm_model_name" in v or "hf_model_name" in t or isinstance(v.get("layers"), (list, tuple)):
            continue
        size = v.get("image_size", 224)
        size = size if isinstance(size, int) else size[0]
        if (v.get("width") == width and v.get("patch_size") == patch and v.get("layers") == v_layers
                and (size // patch) ** 2 + 1 == n_pos and cfg.get("embed_dim") == embed
                and t.get("width") == t_width and t.get("layers") == t_layers
                and t.get("context_length", 77) == ctx and not cfg.get("custom_text")):
            found.append(name)
    plain = [n for n in found if "quickgelu" not in n.lower()]
    found = plain or found
    return found[0] if len(found) == 1 else (min(found, key=len) if found else None)
