"""AdamW with open_clip's parameter groups (no weight decay on gains, biases, temperature) and a
linear warm-up + cosine decay schedule as a `LambdaLR`, stepped once per optimiser step (resumable)."""

from __future__ import annotations

import math

import torch

from spectraclip.train.config import OptimRecipe


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    # open_clip's rule (main.py): gains, biases and the temperature are not decayed.
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def build_optimizer(model: torch.nn.Module, recipe: OptimRecipe) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; 1-D parameters (norms, biases, temperature) get no decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("no trainable parameters: check model.freeze")
    decay = [p for n, p in named if not _no_decay(n, p)]
    no_decay = [p for n, p in named if _no_decay(n, p)]
    groups = [g for g in ({"params": no_decay, "weight_decay": 0.0},
                          {"params": decay, "weight_decay": recipe.weight_decay}) if g["params"]]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=tuple(recipe.betas), eps=recipe.eps)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier at `step`: linear from 1/warmup to 1 over `warmup` steps, then cosine to `min_ratio`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: OptimRecipe,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine schedule; its `state_dict` goes into checkpoints."""
    min_ratio = recipe.min_lr / recipe.lr if recipe.lr > 0 else 0.0
    warmup = min(recipe.warmup_steps, max(0, total_steps - 1))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, total_steps, min_ratio))
