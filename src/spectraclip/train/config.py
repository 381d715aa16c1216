"""The training recipe: nested dataclasses loaded from YAML, with `--set section.key=value` overrides.

Every key is checked: an unknown key is an error naming it (and the keys that do exist), so a typo
never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spectraclip.errors import SpectraclipError


class RecipeError(SpectraclipError, ValueError):
    """A recipe key or value that is not allowed; the message names the key."""


@dataclass
class ModelRecipe:
    """Which model to start from and what to train of it."""

    base: str = "ViT-B-16"  # registry name, open_clip name, bundle dir, hf-hub: id or Llama3-MS-CLIP .pt
    pretrained: str | None = None  # open_clip pretrained tag, when `base` is an open_clip name
    bands: str | list[str] | None = None  # target bands by name (preset or list); None keeps the model's
    init_new_bands: str = "zero"  # "zero" or "mean": initialisation of patch-embedding weights of new bands
    text: str | None = None  # None: the model's own text tower; "minilm" or a local HF folder
    freeze: str = "all"  # all | projection | attention | lock-text | lora
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    grad_checkpointing: bool = False
    # per-band normalisation: "model" keeps the base model's mean/std; "data" measures them on the
    # training images (a model trained from scratch on new data); a `normalization:` block wins over both
    stats: str = "model"
    # multi-sensor models (see train/multisensor.py): kind: multisensor trains a MultiSensorCLIP
    kind: str = "spectral"  # spectral (SpectralCLIP on image-caption pairs) | multisensor
    modalities: dict[str, str | list[str]] | None = None  # multisensor: {s2: s2-l2a, s1: s1}; None: from data
    modality_dropout: float = 0.3  # multisensor: chance to drop each present modality of a sample
    channel_dropout: float = 0.1  # multisensor: chance to zero each band of a kept modality


@dataclass
class DataRecipe:
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
    crop_scale: list[float] | None = field(default_factory=lambda: [0.5, 1.0])
    shuffle_buffer: int = 1000  # shards only
    resampled: bool = False  # shards only: sample shards with replacement
    samples_per_epoch: int | None = None  # shards: epoch length (default: the index's sample count)
    layout: str = "auto"  # multisensor: auto | ssl4eo | bigearthnet-s1s2 | manifest (how data.train is read)


@dataclass
class LossRecipe:
    """The contrastive objective."""

    kind: str = "clip"  # clip (InfoNCE, learnable temperature) | siglip
    local_loss: bool = True
    gather_with_grad: bool = True
    siglip_bias_init: float = -10.0


@dataclass
class OptimRecipe:
    """AdamW with linear warm-up then cosine decay, stepped every optimiser step."""

    lr: float = 4e-5
    min_lr: float = 0.0
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 50
    grad_clip: float | None = 1.0
    accum_steps: int = 1  # micro-batches per step; features are cached so the contrastive batch is the full one


@dataclass
class RunRecipe:
    """Length, output, logging, checkpointing and hardware of a run."""

    output: str = "runs/spectraclip"
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (fp32 on CPU, bf16 on GPU when supported) | fp32 | bf16 | fp16
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


@dataclass
class Recipe:
    """A complete training recipe."""

    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    loss: LossRecipe = field(default_factory=LossRecipe)
    optim: OptimRecipe = field(default_factory=OptimRecipe)
    run: RunRecipe = field(default_factory=RunRecipe)
    # per-modality band statistics {s2: {mean: {B02: ..}, std: {..}}, s1: ...} as `spectraclip stats
    # --write-recipe` writes them; used by multisensor models (None: computed from data.train)
    normalization: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML, JSON logs and the bundle's provenance)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


FREEZE_POLICIES = ("all", "projection", "attention", "lock-text", "lora")
_CHOICES = {
    "model.freeze": FREEZE_POLICIES,
    "model.stats": ("model", "data"),
    "model.init_new_bands": ("zero", "mean"),
    "model.kind": ("spectral", "multisensor"),
    "data.layout": ("auto", "ssl4eo", "bigearthnet-s1s2", "manifest"),
    "loss.kind": ("clip", "siglip"),
    "run.precision": ("auto", "fp32", "bf16", "fp16"),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except RecipeError:
                pass
        raise RecipeError(f"recipe key {key!r}: {value!r} is not a valid {tp}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"recipe key {key!r}: expected a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value] if args else list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(f"recipe key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"recipe key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _looks_float(value):  # YAML 1.1 reads `4e-5` as a string
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"recipe key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"recipe key {key!r}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"recipe section {prefix.rstrip('.') or 'top level'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise RecipeError(
            f"unknown recipe key {prefix + unknown[0]!r}; allowed in this section: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for k, v in data.items():
        tp = hints[k]
        key = prefix + k
        if dataclasses.is_dataclass(tp):
            kwargs[k] = _build(tp, v or {}, key + ".")
        else:
            kwargs[k] = _coerce(v, tp, key)
            if key in _CHOICES and kwargs[k] not in _CHOICES[key]:
                raise RecipeError(f"recipe key {key!r}: {v!r} is not one of {', '.join(_CHOICES[key])}")
    return cls(**kwargs)


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Validate a nested dict into a `Recipe` (unknown keys and wrong types raise `RecipeError`)."""
    return _build(Recipe, data or {}, "")


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


def _looks_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


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
        for key in ("train", "val"):
            v = (data.get("data") or {}).get(key)
            if isinstance(v, str) and v and not Path(v).is_absolute() and (p.parent / v).exists():
                data["data"][key] = str(p.parent / v)
    data = apply_overrides(data, overrides or [])
    recipe = recipe_from_dict(data)
    if not recipe.data.train:
        raise RecipeError("recipe key 'data.train' is required (a caption manifest or shards)")
    return recipe
