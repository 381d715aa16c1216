"""The contrastive objective of every model the trainer trains, one input group or several.

One optimiser step's batch is `{"x": {group: [B,C,S,S]}, "present": {group: bool[B]}, "text": tokens or
cached features, "text_present": bool[B]}`. The model's forward (`groups=True`, so DDP sees it) gives the
per-group embeddings, the fused image embedding and the text embedding. The loss is

- image-text: open_clip's `ClipLoss` or `SigLipLoss` (negatives gathered across ranks as the recipe says)
  between the fused image and the caption embeddings, when every row has a caption; on the captioned rows
  only (masked InfoNCE, gathered across ranks) when some have none;
- plus, for a model with several groups, masked InfoNCE between every pair of groups on the rows that have
  both, averaged over pairs, negatives gathered across ranks.

So a single-group model trains exactly as before, and a multi-group model gets the same machinery: DDP with
cross-rank negatives, feature-cached gradient accumulation (`step`), SigLIP, LoRA and HF text towers.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from spectraclip.bands import GROUP_ORDER


@dataclass
class Features:
    """Embeddings of a (micro-)batch: per group (zero rows where absent), presence, fused image, text."""

    emb: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    fused: torch.Tensor
    text: torch.Tensor | None
    text_present: torch.Tensor | None
    scale: torch.Tensor
    bias: torch.Tensor | None = None

    def detached_temperature(self) -> Features:
        return replace(self, scale=self.scale.detach(), bias=None if self.bias is None else self.bias.detach())


def forward_features(net: torch.nn.Module, micro: Mapping[str, Any]) -> Features:
    """Run `net` (a SpectralCLIP, possibly DDP-wrapped) on one micro-batch through its forward."""
    out = net(micro["x"], micro.get("text"), present=micro.get("present"), groups=True)
    emb, pres, fused, text, scale = out[:5]
    bias = out[5] if len(out) > 5 else None
    return Features(emb, pres, fused, text, micro.get("text_present"), scale, bias)


def _cat(parts: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(p is None for p in parts) else torch.cat(list(parts))


def concat(parts: Sequence[Features]) -> Features:
    """Features of several micro-batches as one batch (temperature of the last)."""
    groups = list(parts[0].emb)
    return Features({g: torch.cat([p.emb[g] for p in parts]) for g in groups},
                    {g: torch.cat([p.present[g] for p in parts]) for g in groups},
                    torch.cat([p.fused for p in parts]), _cat([p.text for p in parts]),
                    _cat([p.text_present for p in parts]), parts[-1].scale, parts[-1].bias)


def _gather(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """All ranks' rows in rank order, with gradients flowing back to each rank's own rows."""
    if world_size <= 1:
        return t
    import torch.distributed.nn as dist_nn

    return torch.cat(dist_nn.all_gather(t.contiguous()))


def masked_infonce(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor,
                   world_size: int = 1) -> torch.Tensor | None:
    """Symmetric InfoNCE between `a` and `b` on the rows where `rows` holds, negatives from every rank.

    Every rank computes the same global loss; through the gradient-carrying gather and DDP's averaging this
    gives exactly the single-process gradient. None when fewer than two rows take part."""
    a, b = _gather(a, world_size), _gather(b, world_size)
    keep = _gather(rows.to(torch.int8), world_size).bool()
    if int(keep.sum()) < 2:
        return None
    a, b = a[keep], b[keep]
    logits = scale * a @ b.T
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class Objective:
    """Image-text loss (the recipe's ClipLoss / SigLipLoss) plus pairwise group InfoNCE for multi-group models."""

    def __init__(self, image_text: torch.nn.Module, world_size: int = 1, groups_loss: bool = True) -> None:
        self.image_text = image_text
        self.world_size = world_size
        self.groups_loss = groups_loss

    def __call__(self, f: Features) -> tuple[torch.Tensor, dict[str, float]]:
        losses, logs = [], {}
        if self.groups_loss and len(f.emb) > 1:
            pair_losses = []
            names = [g for g in GROUP_ORDER if g in f.emb] + [g for g in f.emb if g not in GROUP_ORDER]
            for a, b in itertools.combinations(names, 2):
                value = masked_infonce(f.emb[a], f.emb[b], f.present[a] & f.present[b], f.scale, self.world_size)
                if value is not None:
                    pair_losses.append(value)
                    logs[f"{a}-{b}"] = float(value.detach())
            if pair_losses:
                losses.append(torch.stack(pair_losses).mean())
        if f.text is not None:
            rows = f.text_present
            everyone = rows is None or bool(_gather(rows.to(torch.int8), self.world_size).all())
            if everyone:
                extra = [f.bias] if f.bias is not None else []
                value = self.image_text(f.fused, f.text, f.scale, *extra)
            else:
                value = masked_infonce(f.fused, f.text, rows, f.scale, self.world_size)
            if value is not None:
                losses.append(value)
                logs["image-text"] = float(value.detach())
        loss = torch.stack(losses).sum() if losses else f.scale * 0.0
        logs["loss"] = float(loss.detach())
        return loss, logs


def _backward(loss: torch.Tensor, scaler: Any) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def step(net: torch.nn.Module, objective: Callable[[Features], tuple[torch.Tensor, dict[str, float]]],
         micro_batches: Sequence[Mapping[str, Any]], autocast: Callable[[], Any] = contextlib.nullcontext,
         scaler: Any = None) -> tuple[float, dict[str, float]]:
    """Forward/backward one optimiser step's batch (does not step the optimiser); returns (loss, logs).

    With several micro-batches the features of all of them are computed first without gradients and cached;
    each micro-batch is then re-run with gradients and its features spliced into the cached ones, so the loss
    sees the whole batch as negatives (open_clip's accum-freq scheme). The temperature takes its gradient in
    the last pass only, so the summed gradient equals the big-batch gradient."""
    if len(micro_batches) == 1:
        with autocast():
            loss, logs = objective(forward_features(net, micro_batches[0]))
        _backward(loss, scaler)
        return float(loss.detach()), logs
    with torch.no_grad(), autocast():
        cache = [forward_features(net, m) for m in micro_batches]
    loss, logs = torch.zeros(()), {}
    for j, micro in enumerate(micro_batches):
        last = j == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
        with sync:
            with autocast():
                f = forward_features(net, micro)
                f = f if last else f.detached_temperature()
                loss, logs = objective(concat([*cache[:j], f, *cache[j + 1:]]))
            _backward(loss, scaler)
    return float(loss.detach()), logs


def split(batch: Mapping[str, Any], text: torch.Tensor | None, n: int, device: torch.device
          ) -> list[dict[str, Any]]:
    """One step's batch as `n` micro-batches on `device`."""
    b = len(batch["ids"])
    if b % n:
        raise ValueError(f"per-process batch of {b} does not split into optim.accum_steps={n}")
    size = b // n
    out = []
    for k in range(n):
        sl = slice(k * size, (k + 1) * size)
        out.append({
            "x": {g: t[sl].to(device, non_blocking=True) for g, t in batch["x"].items()},
            "present": {g: p[sl].to(device) for g, p in batch["present"].items()},
            "text": text[sl].to(device, non_blocking=True) if text is not None else None,
            "text_present": batch["has_caption"][sl].to(device) if "has_caption" in batch else None,
        })
    return out


__all__ = ["Features", "Objective", "concat", "forward_features", "masked_infonce", "split", "step"]
