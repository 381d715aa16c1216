"""Freezing policies: which parameters of a SpectralCLIP are trained.

- `all`: everything.
- `lock-text`: everything except the text tower (LiT).
- `projection`: the two projection layers and the patch embedding.
- `attention`: the attention blocks of both towers and the patch embedding.
- `lora`: LoRA adapters on attention/MLP (see `models.lora`) and the patch embedding.

The temperature (`logit_scale`, and `logit_bias` for SigLIP) is learnable under every policy.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from spectraclip.errors import SpectraclipError

POLICIES = ("all", "lock-text", "projection", "attention", "lora")
TEMPERATURE = ("logit_scale", "logit_bias")
_PROJECTION_RE = re.compile(r"(^|\.)(visual\.proj|visual\.head\..*|text_projection|text\.proj(\..*)?)$")
_ATTENTION_RE = re.compile(r"\.(attn|attention|self_attn)\.")


class FreezeError(SpectraclipError, ValueError):
    """An unknown freeze policy, or one that matches nothing in this model."""


def tower_of(name: str) -> str:
    """`image`, `text` or `temperature` for a parameter name of a SpectralCLIP / open_clip model."""
    n = name[5:] if name.startswith("clip.") else name
    if n.split(".")[-1] in TEMPERATURE and n.count(".") == 0:
        return "temperature"
    return "image" if n.startswith(("visual.", "patch_embeds.")) else "text"


def _patch_embed_names(model: nn.Module) -> set[str]:
    if getattr(model, "patch_embeds", None) is not None:  # MultiSensorCLIP: one patch embedding per modality
        return {n for n, _ in model.named_parameters() if n.startswith("patch_embeds.")}
    from spectraclip.models.channels import get_patch_embed

    conv = get_patch_embed(model)
    ids = {id(p) for p in conv.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def policy_selects(model: nn.Module, policy: str) -> set[str]:
    """Names of the parameters `policy` trains (before any LoRA layers are added for `lora`)."""
    if policy not in POLICIES:
        raise FreezeError(f"unknown freeze policy {policy!r}; choose one of {', '.join(POLICIES)}")
    names = [n for n, _ in model.named_parameters()]
    temp = {n for n in names if tower_of(n) == "temperature"}
    if policy == "all":
        return set(names)
    if policy == "lock-text":
        # Same set as open_clip's `lock_text_tower(0, True)` for CLIP towers, but for HF towers open_clip leaves
        # `text.proj` trainable, which would turn off train.loop.TextFeatureCache (tests/test_freeze.py).
        return {n for n in names if tower_of(n) != "text"}
    patch = _patch_embed_names(model)
    if policy == "projection":
        picked = {n for n in names if _PROJECTION_RE.search(n.removeprefix("clip."))}
    elif policy == "attention":
        picked = {n for n in names if _ATTENTION_RE.search("." + n) and "lora_" not in n}
    else:  # lora
        picked = {n for n in names if "lora_" in n}
    if not picked:
        raise FreezeError(f"freeze policy {policy!r} matches no parameter of this model")
    return picked | patch | temp


def apply_freeze(model: nn.Module, policy: str) -> set[str]:
    """Set `requires_grad` per `policy` and return the names of the trainable parameters.

    For `lora`, call `models.lora.apply_lora` first so the adapters exist.
    """
    keep = policy_selects(model, policy)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return keep


def trainable_summary(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Per tower (`image`, `text`, `temperature`): (trainable, total) parameter counts."""
    out: dict[str, list[int]] = {}
    for n, p in model.named_parameters():
        row = out.setdefault(tower_of(n), [0, 0])
        row[1] += p.numel()
        if p.requires_grad:
            row[0] += p.numel()
    return {k: (v[0], v[1]) for k, v in out.items()}


def print_trainable(model: nn.Module, policy: str, console=None) -> None:
    """Print a table of trainable parameters per tower (shown at the start of training)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trainable parameters (freeze policy: {policy})")
    for col in ("tower", "trainable", "total", "%"):
        table.add_column(col, justify="right" if col != "tower" else "left")
    for tower, (t, tot) in sorted(trainable_summary(model).items()):
        table.add_row(tower, f"{t:,}", f"{tot:,}", f"{100 * t / max(tot, 1):.1f}")
    (console or Console(stderr=True)).print(table)


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that currently require gradients."""
    return [p for p in model.parameters() if p.requires_grad]
