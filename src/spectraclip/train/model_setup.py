"""Build the model a recipe trains: load the base, set the target bands by name (new bands zero- or
mean-initialised), swap in an HF text tower, apply LoRA / freezing and gradient checkpointing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spectraclip.bands import BandSet
from spectraclip.train.config import ModelRecipe


def _base_name(recipe: ModelRecipe) -> str:
    base = recipe.base
    if recipe.pretrained and not base.startswith(("openclip:", "hf-hub:")) and not Path(base).exists():
        return f"openclip:{base}/{recipe.pretrained}"
    return base


def target_bands(recipe: ModelRecipe) -> BandSet | None:
    """The recipe's target band set, or None to keep the model's own."""
    if recipe.bands is None:
        return None
    return BandSet.parse(recipe.bands)


def replace_text_tower(model: Any, text: str) -> Any:
    """A copy of `model` with an HF text tower (`minilm` = the offline MiniLM, or a local HF folder);
    image tower and temperature are kept."""
    from spectraclip.models.spectral_clip import ModelConfig, SpectralCLIP
    from spectraclip.models.text import MINILM_REF, minilm_text_cfg

    ref = MINILM_REF if text.lower() in ("minilm", MINILM_REF) else str(Path(text).expanduser().resolve())
    if ref != MINILM_REF and not (Path(ref) / "config.json").is_file():
        raise FileNotFoundError(f"model.text: {text} is not an HF model folder (no config.json)")
    cfg = ModelConfig.from_dict(model.config.to_dict())
    text_cfg = minilm_text_cfg()
    text_cfg.update({"hf_model_name": ref, "hf_tokenizer_name": ref})
    cfg.arch_config = {**cfg.arch_config, "text_cfg": text_cfg}
    cfg.arch_config.pop("custom_text", None)
    cfg.text = {"tokenizer": "hf", "hf_name": ref}
    cfg.provenance.setdefault("text_tower", ref)
    new = SpectralCLIP.from_config(cfg, pretrained_text=True)
    new.clip.visual.load_state_dict(model.clip.visual.state_dict())
    if model.patch_embeds is not None:  # a multi-group model: its patch embeddings live beside the trunk
        new.patch_embeds.load_state_dict(model.patch_embeds.state_dict())
    with torch.no_grad():
        new.clip.logit_scale.copy_(model.clip.logit_scale)
    return new


def build_model(recipe: ModelRecipe, siglip_bias: float | None = None) -> tuple[Any, Any]:
    """The single-group SpectralCLIP to train and, for `freeze: lora`, the LoRA handle (else None)."""
    from spectraclip.models.channels import extend_channels
    from spectraclip.models.loading import load_model

    model = load_model(_base_name(recipe))
    want = target_bands(recipe)
    if want is not None and want.names != model.bands.names:
        extend_channels(model, to_bands=want, init=recipe.init_new_bands)
    return finish_model(model, recipe, siglip_bias)


def finish_model(model: Any, recipe: ModelRecipe, siglip_bias: float | None = None) -> tuple[Any, Any]:
    """What every model a recipe trains gets, one input group or several: the recipe's text tower, a SigLIP
    bias, LoRA or a freezing policy, gradient checkpointing. Returns (model, LoRA handle or None)."""
    from spectraclip.models.freeze import apply_freeze

    if recipe.text:
        model = replace_text_tower(model, recipe.text)
    if siglip_bias is not None and getattr(model.clip, "logit_bias", None) is None:
        model.clip.logit_bias = torch.nn.Parameter(torch.tensor(float(siglip_bias)))  # a scalar, as open_clip makes it
        # recorded in the architecture too, so the saved bundle rebuilds a model that has the bias
        model.config.arch_config["init_logit_bias"] = float(siglip_bias)
    handle = None
    if recipe.freeze == "lora":
        from spectraclip.models.lora import apply_lora

        handle = apply_lora(model, recipe.lora_rank, recipe.lora_alpha, recipe.lora_dropout)
    apply_freeze(model, recipe.freeze)
    if recipe.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    model.train()
    return model, handle


def set_normalization(model: Any, stats: Any, source: str) -> None:
    """Replace the model's per-band mean/std (by band name) with `stats` (a BandStats)."""
    mean, std = stats.for_bands(model.bands)
    model.config.mean = [float(x) for x in mean]
    model.config.std = [float(max(x, 1e-6)) for x in std]
    model.config.provenance["normalization"] = source


def normalization_for(recipe: Any) -> tuple[Any, str] | None:
    """The BandStats a recipe asks for: its `normalization:` block (flat or per modality, as `spectraclip
    stats --write-recipe` writes it), statistics of the training images (`model.stats: data`), or None to
    keep the model's own. Per-modality statistics are merged by band name."""
    from spectraclip.bands import BandStats
    from spectraclip.data.stats import compute_stats, stats_from_json

    block = recipe.normalization
    if block:
        stats = stats_from_json({"s2": block} if "mean" in block else block, "recipe key 'normalization'")
        source = "recipe normalization: block"
    elif recipe.model.stats == "data":
        stats = compute_stats([recipe.data.train], max_items=512, progress=False)
        source = f"measured on {recipe.data.train}"
    else:
        return None
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for s in stats.values():
        mean.update(s.mean)
        std.update(s.std)
    return BandStats(mean, std, source), source
