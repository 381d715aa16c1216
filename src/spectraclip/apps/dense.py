"""Dense patch-token image features of a ViT `SpectralCLIP`, training-free (the ClearCLIP / SegEarth-OV family).

The last transformer block is run with self-self (query-query) attention, without its residual and its
feed-forward network, so each patch token keeps its local meaning; the tokens then go through `ln_post` and
the projection into the joint text-image space. Works for single-group models (patch embedding
`clip.visual.conv1`) and multi-group models (`patch_embeds[g]` feeding a trunk whose `conv1` is Identity;
the groups present are fused like image embeddings: mean of the normalised features).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from spectraclip.errors import SpectraclipError

ATTENTIONS: tuple[str, ...] = ("qq", "qq+kk", "vanilla")


class DenseUnsupportedError(SpectraclipError, ValueError):
    """A model whose image tower has no patch tokens this module knows how to read (not an open_clip ViT)."""


def _vit(model) -> nn.Module:
    visual = model.clip.visual
    needed = ("transformer", "class_embedding", "positional_embedding", "ln_pre", "ln_post")
    if not all(hasattr(visual, a) for a in needed) or not hasattr(visual.transformer, "resblocks"):
        raise DenseUnsupportedError(f"model {model.config.arch!r}: dense (patch-level) features need an open_clip "
                                    "VisionTransformer image tower; this one is "
                                    f"{type(visual).__name__}")
    if getattr(visual, "attn_pool", None) is not None:
        raise DenseUnsupportedError(f"model {model.config.arch!r}: attention-pooled ViTs are not supported for "
                                    "dense features")
    return visual


def patch_grid(model) -> int:
    """Patch tokens per side for the model's input size."""
    visual = _vit(model)
    ps = visual.patch_size
    return model.image_size // (ps[0] if isinstance(ps, tuple) else int(ps))


def _last_block(block: nn.Module, x: torch.Tensor, attention: str) -> torch.Tensor:
    """The last block's attention output alone (no residual, no FFN), with self-self attention."""
    attn: nn.MultiheadAttention = block.attn
    y = block.ln_1(x)
    b, n, d = y.shape
    h = attn.num_heads
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in (q, k, v))
    scale = (d // h) ** -0.5
    if attention == "qq":
        logits = q @ q.transpose(-2, -1) * scale
    elif attention == "qq+kk":
        logits = (q @ q.transpose(-2, -1) + k @ k.transpose(-2, -1)) * scale
    else:
        logits = q @ k.transpose(-2, -1) * scale
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
    out = attn.out_proj(out)
    ls = getattr(block, "ls_1", None)
    return ls(out) if ls is not None else out


def _tokens(model, visual: nn.Module, feats_or_pixels: torch.Tensor, attention: str) -> torch.Tensor:
    """Patch tokens `[B, N, D]` in the joint space, from pixels (single group) or patch features (multi)."""
    x = visual._embeds(feats_or_pixels)  # conv1 (or Identity), class token, positions, ln_pre
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for blk in blocks[:-1]:
        x = blk(x)
    if not batch_first:
        x = x.transpose(0, 1)
    x = _last_block(blocks[-1], x, attention)
    x = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x


def dense_features(model, x: torch.Tensor | Mapping[str, torch.Tensor], *, attention: str = "qq",
                   present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """L2-normalised patch features `[B, D, g, g]` of normalised model input (a tensor for single-group
    models, `{group: [B, C_g, S, S]}` otherwise), in the space of `model.encode_text`."""
    if attention not in ATTENTIONS:
        raise DenseUnsupportedError(f"attention {attention!r}: choose one of {', '.join(ATTENTIONS)}")
    visual = _vit(model)
    if isinstance(x, torch.Tensor):
        x = {model.groups[0]: x}
    feats: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for g, xg in x.items():
        inp = model.patch_embeds[g](xg) if model.patch_embeds is not None else xg
        feats.append(F.normalize(_tokens(model, visual, inp, attention), dim=-1))
        m = present[g] if present is not None and g in present else torch.ones(xg.shape[0], dtype=torch.bool)
        masks.append(m.to(feats[-1].device, feats[-1].dtype))
    stacked = torch.stack(feats)  # [G, B, N, D]
    w = torch.stack(masks)[:, :, None, None]
    fused = F.normalize((stacked * w).sum(0) / w.sum(0).clamp_min(1.0), dim=-1)
    b, n, d = fused.shape
    side = int(round(n ** 0.5))
    return fused.transpose(1, 2).reshape(b, d, side, side)


def dense_similarity(model, x: torch.Tensor | Mapping[str, torch.Tensor], text: torch.Tensor, *,
                     attention: str = "qq", cls_lambda: float = 0.0,
                     present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Cosine similarity `[B, Q, g, g]` of every patch to each L2-normalised text embedding `text` `[Q, D]`,
    minus `cls_lambda` x the window's global ([CLS]) similarity (SegEarth-OV's global-bias alleviation)."""
    feats = dense_features(model, x, attention=attention, present=present)
    sim = torch.einsum("bdhw,qd->bqhw", feats, text.to(feats.dtype))
    if cls_lambda:
        glob = model.encode_image(x, present=present) if isinstance(x, Mapping) else model.encode_image(x)
        sim = sim - cls_lambda * (glob @ text.T.to(glob.dtype))[:, :, None, None]
    return sim


__all__ = ["ATTENTIONS", "DenseUnsupportedError", "dense_features", "dense_similarity", "patch_grid"]
