"""The training recipe: nested pydantic models loaded from YAML, with `--set section.key=value` overrides.

Every key is checked: an unknown key is an error naming it (and the keys that do exist), so a typo
never silently trains with a default. Types are strict (no `"8"` for an integer, no `1` for a bool),
except that a float may be written as a string (`4e-5`, which YAML 1.1 reads as a string).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from spectraclip.errors import SpectraclipError


class RecipeError(SpectraclipError, ValueError):
    """A recipe key or value that is not allowed; the message names the key."""


def _float_from_text(value: Any) -> Any:
    """`"4e-5"` -> 4e-5 (YAML 1.1 reads exponents without a dot as strings); anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Float = Annotated[float, BeforeValidator(_float_from_text)]
Freeze = Literal["all", "projection", "attention", "lock-text", "lora"]
FREEZE_POLICIES: tuple[str, ...] = get_args(Freeze)


class _Section(BaseModel):
    """Strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ModelRecipe(_Section):
    """Which model to start from and what to train of it."""

    base: str = "ViT-B-16"  # registry name, open_clip name, bundle dir, hf-hub: id or Llama3-MS-CLIP .pt
    pretrained: str | None = None  # open_clip pretrained tag, when `base` is an open_clip name
    bands: str | list[str] | None = None  # target bands by name (preset or list); None keeps the model's
    init_new_bands: Literal["zero", "mean"] = "zero"  # init of patch-embedding weights of new bands
    text: str | None = None  # None: the model's own text tower; "minilm" or a local HF folder
    freeze: Freeze = "all"
    lora_rank: int = 8
    lora_alpha: Float = 16.0
    lora_dropout: Float = 0.0
    grad_checkpointing: bool = False
    # per-band normalisation: "model" keeps the base model's mean/std; "data" measures them on the
    # training images (a model trained from scratch on new data); a `normalization:` block wins over both
    stats: Literal["model", "data"] = "model"
    # multi-sensor models (see train/multisensor.py): kind: multisensor trains a MultiSensorCLIP
    kind: Literal["spectral", "multisensor"] = "spectral"  # spectral: SpectralCLIP on image-caption pairs
    modalities: dict[str, str | list[str]] | None = None  # multisensor: {s2: s2-l2a, s1: s1}; None: from data
    modality_dropout: Float = 0.3  # multisensor: chance to drop each present modality of a sample
    channel_dropout: Float = 0.1  # multisensor: chance to zero each band of a kept modality
    # the prompt templates the trained model is declared for (its zero-shot default everywhere: a shipped set's
    # name or a list); None keeps the base model's declaration
    zeroshot_templates: str | list[str] | None = None


class DataRecipe(_Section):
    """Where the image–caption pairs come from and how they are batched."""

    train: str = ""  # caption manifest (.jsonl/.parquet) or shards (folder, glob, brace pattern)
    val: str | None = None  # another manifest/shards; None: rows with split == val_split of `train`
    train_split: str | None = "train"  # manifest rows used for training (rows without split count as train)
    val_split: str = "val"
    batch_size: int = 32  # global batch per optimiser step (split across processes and accum steps)
    num_workers: int = 0
    augment: bool = True
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    crop_scale: list[Float] | None = Field(default_factory=lambda: [0.5, 1.0])
    shuffle_buffer: int = 1000  # shards only
    resampled: bool = False  # shards only: sample shards with replacement
    samples_per_epoch: int | None = None  # shards: epoch length (default: the index's sample count)
    # how data.train is read: multisensor layouts, or ssl4eo-v1.1 (SSL4EO-S12 v1.1 zarr zips, a split folder)
    layout: Literal["auto", "ssl4eo", "bigearthnet-s1s2", "manifest", "ssl4eo-v1.1"] = "auto"
    captions: str | None = None  # ssl4eo-v1.1: Llama3-SSL4EO-S12-v1.1 captions (folder, .csv or .parquet)
    level: Literal["S2L2A", "S2L1C"] = "S2L2A"  # ssl4eo-v1.1: which Sentinel-2 product
    max_cloud: Float = 1.0  # ssl4eo-v1.1: largest cloud-mask fraction of the season used (1.0: any)
    cloud_policy: Literal["skip", "flag"] = "skip"  # ssl4eo-v1.1: all 4 seasons cloudier: skip or flag
    # ssl4eo-v1.1: which texts feed the contrastive loss: caption, qa (one question–answer pair) or both (one of
    # caption + pairs), drawn per item and epoch from (seed, epoch, location), so resume stays exact
    texts: Literal["caption", "qa", "both"] = "caption"


class LossRecipe(_Section):
    """The contrastive objective."""

    kind: Literal["clip", "siglip"] = "clip"  # clip (InfoNCE, learnable temperature) | siglip
    local_loss: bool = True
    gather_with_grad: bool = True
    siglip_bias_init: Float = -10.0


class OptimRecipe(_Section):
    """AdamW with linear warm-up then cosine decay, stepped every optimiser step."""

    lr: Float = 4e-5
    min_lr: Float = 0.0
    weight_decay: Float = 0.1
    betas: list[Float] = Field(default_factory=lambda: [0.9, 0.98])
    eps: Float = 1e-6
    warmup_steps: int = 50
    grad_clip: Float | None = 1.0
    accum_steps: int = 1  # micro-batches per step; features are cached so the contrastive batch is the full one


class RunRecipe(_Section):
    """Length, output, logging, checkpointing and hardware of a run."""

    output: str = "runs/spectraclip"
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU if supported
    log_every: int = 10
    val_every: int = 0  # 0: validate at the end of each epoch only
    checkpoint_every: int = 0  # 0: checkpoint at the end of each epoch only
    keep_checkpoints: int = 2
    tensorboard: bool = False
    progress: bool = True
    plot: bool = True
    zeroshot: str | None = None  # dataset name for the zero-shot hook at each validation (e.g. eurosat-ms-mini)
    zeroshot_root: str | None = None  # its folder, for datasets that do not ship with the package
    zeroshot_templates: str = "default"
    threads: int | None = None  # torch.set_num_threads on CPU


class Recipe(_Section):
    """A complete training recipe."""

    model: ModelRecipe = Field(default_factory=ModelRecipe)
    data: DataRecipe = Field(default_factory=DataRecipe)
    loss: LossRecipe = Field(default_factory=LossRecipe)
    optim: OptimRecipe = Field(default_factory=OptimRecipe)
    run: RunRecipe = Field(default_factory=RunRecipe)
    # per-modality band statistics {s2: {mean: {B02: ..}, std: {..}}, s1: ...} as `spectraclip stats
    # --write-recipe` writes them; used by multisensor models (None: computed from data.train)
    normalization: dict[str, Any] | None = None

    @field_validator("model", "data", "loss", "optim", "run", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        """A section written as `model:` with nothing under it (YAML null) means all defaults."""
        return {} if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML, JSON logs and the bundle's provenance)."""
        return self.model_dump()

    def to_yaml(self) -> str:
        """The recipe as YAML, in field order (what `--print-recipe` shows)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _key_of(loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None]:
    """Dotted recipe key of a pydantic error location (union/list members dropped) and its section class."""
    parts: list[str] = []
    section: type[BaseModel] | None = Recipe
    for part in loc:
        if section is None or not isinstance(part, str):
            break
        parts.append(part)
        field = section.model_fields.get(part)
        if field is None:
            break
        ann = field.annotation
        section = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    owner: type[BaseModel] | None = Recipe
    for part in parts[:-1]:
        ann = owner.model_fields[part].annotation if owner else None
        owner = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return ".".join(parts), owner


def _recipe_error(err: ValidationError) -> RecipeError:
    """The first pydantic error as a `RecipeError` naming the key, the bad value and what is allowed."""
    e = err.errors()[0]
    key, owner = _key_of(e["loc"])
    if e["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(owner.model_fields)) if owner else ""
        return RecipeError(f"unknown recipe key {key!r}; allowed in this section: {allowed}")
    if not key:
        return RecipeError(f"recipe top level: {e['msg']}")
    return RecipeError(f"recipe key {key!r}: {e['input']!r} is not valid ({e['msg']})")


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Validate a nested dict into a `Recipe` (unknown keys and wrong types raise `RecipeError`)."""
    if data is not None and not isinstance(data, dict):
        raise RecipeError(f"recipe top level must be a mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data or {})
    except ValidationError as err:
        raise _recipe_error(err) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` → (["section", "key"], value parsed as YAML, so `1e-4`, `true`, `[1,2]` work)."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise RecipeError(f"override {text!r} has no key")
    value = yaml.safe_load(raw) if raw.strip() else None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `section.key=value` into the nested dict `data` (validated later by `recipe_from_dict`)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (relative `data.*` paths resolve against its folder), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise RecipeError(f"recipe {p} not found")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise RecipeError(f"recipe {p} must be a YAML mapping")
        for key in ("train", "val", "captions"):
            v = (data.get("data") or {}).get(key)
            if isinstance(v, str) and v and not Path(v).is_absolute() and (p.parent / v).exists():
                data["data"][key] = str(p.parent / v)
    data = apply_overrides(data, overrides or [])
    recipe = recipe_from_dict(data)
    if not recipe.data.train:
        raise RecipeError("recipe key 'data.train' is required (a caption manifest or shards)")
    if recipe.data.texts != "caption" and recipe.data.layout != "ssl4eo-v1.1":
        raise RecipeError(f"data.texts: {recipe.data.texts} needs question–answer pairs, which only data.layout: "
                          "ssl4eo-v1.1 with data.captions provides; use data.texts: caption")
    return recipe
