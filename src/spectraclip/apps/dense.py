"""Dense patch-token image features of a ViT `SpectralCLIP`, training-free (the ClearCLIP / SegEarth-OV family).

The last transformer block is run with self-self (query-query) attention, without its residual and its
feed-forward network, so each patch token keeps its local meaning; the tokens then go through `ln_post` and
the projection into the joint text-image space. Works for single-group models (patch embedding
`clip.visual.conv1`) and multi-group models (`patch_embeds[g]` feeding a trunk whose `conv1` is Identity;
the groups present are fused like image embeddings: mean of the normalised features).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


Tokens = Callable[[torch.Tensor], torch.Tensor]


def dense_features(model, x: torch.Tensor | Mapping[str, torch.Tensor], *, attention: str = "qq",
                   present: Mapping[str, torch.Tensor] | None = None, tokens: Tokens | None = None) -> torch.Tensor:
    """L2-normalised patch features `[B, D, g, g]` of normalised model input (a tensor for single-group
    models, `{group: [B, C_g, S, S]}` otherwise), in the space of `model.encode_text`. `tokens` (patch input ->
    joint-space tokens) replaces the torch trunk, e.g. with an int8 session (`prepare_dense`)."""
    if attention not in ATTENTIONS:
        raise DenseUnsupportedError(f"attention {attention!r}: choose one of {', '.join(ATTENTIONS)}")
    visual = _vit(model)
    if tokens is None:
        def tokens(inp: torch.Tensor) -> torch.Tensor:
            return _tokens(model, visual, inp, attention)
    if isinstance(x, torch.Tensor):
        x = {model.groups[0]: x}
    feats: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for g, xg in x.items():
        inp = model.patch_embeds[g](xg) if model.patch_embeds is not None else xg
        feats.append(F.normalize(tokens(inp).float(), dim=-1))
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
    return DenseEncoder(model, "fp32", next(model.parameters()).device, attention).similarity(
        x, text, cls_lambda=cls_lambda, present=present)


class _TokenTrunk(nn.Module):
    """The dense path's trunk as one module (what int8 exports): patch input -> joint-space patch tokens."""

    def __init__(self, visual: nn.Module, attention: str) -> None:
        super().__init__()
        self.visual, self.attention = visual, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tokens(None, self.visual, x, self.attention)


@dataclass
class DenseEncoder:
    """Dense features of one model in one precision: fp32/bf16 in torch (autocast), int8 through an ONNX
    Runtime session of the token trunk (`models.precision`'s quantiser, cached per model and attention)."""

    model: Any
    mode: str
    device: torch.device
    attention: str = "qq"
    tokens: Tokens | None = None
    image: Any = None  # an ImageEncoder for the [CLS] term (cls_lambda)

    def features(self, x: torch.Tensor | Mapping[str, torch.Tensor],
                 present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """`dense_features` in this encoder's precision (float32 out)."""
        from spectraclip.models.precision import autocast_for

        with autocast_for(self.mode, self.device):
            return dense_features(self.model, x, attention=self.attention, present=present, tokens=self.tokens)

    def similarity(self, x: torch.Tensor | Mapping[str, torch.Tensor], text: torch.Tensor, *,
                   cls_lambda: float = 0.0, present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Patch-to-text cosine `[B, Q, g, g]`, minus `cls_lambda` x the window's global similarity."""
        feats = self.features(x, present)
        sim = torch.einsum("bdhw,qd->bqhw", feats, text.to(feats.device, feats.dtype))
        if cls_lambda:
            from spectraclip.models.precision import ImageEncoder

            enc = self.image or ImageEncoder(self.model, self.mode, self.device)
            glob = enc.encode_image(x, present=present)
            sim = sim - cls_lambda * (glob @ text.T.to(glob.device, glob.dtype))[:, :, None, None]
        return sim

    def _window_inputs(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> tuple[Any, Any]:
        """A scene job's batch (`{group: tensor}` and presence masks, on any device) as this model's input; the
        masks only count for multi-group models."""
        x = {g: t.to(self.device) for g, t in x.items()}
        if not self.model.config.multi:
            return x[self.model.groups[0]], None
        return x, {g: p.to(self.device) for g, p in present.items()}

    def window_features(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`features` of a scene job's batch."""
        return self.features(*self._window_inputs(x, present))

    def window_similarity(self, x: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                          text: torch.Tensor, *, cls_lambda: float = 0.0) -> torch.Tensor:
        """`similarity` of a scene job's batch."""
        inp, pres = self._window_inputs(x, present)
        return self.similarity(inp, text, cls_lambda=cls_lambda, present=pres)


def prepare_dense(model, mode: str | None = "auto", device: str | torch.device = "cpu", attention: str = "qq",
                  batch_size: int | None = None) -> DenseEncoder:
    """The `DenseEncoder` for `mode` (auto: the device's default, as for image embeddings)."""
    from spectraclip.models import precision as P

    if attention not in ATTENTIONS:
        raise DenseUnsupportedError(f"attention {attention!r}: choose one of {', '.join(ATTENTIONS)}")
    dev = torch.device(device)
    resolved = P.resolve_precision(mode, dev, batch_size, model=model)
    model.eval().to(dev)
    visual = _vit(model)
    if resolved != "int8":
        return DenseEncoder(model, resolved, dev, attention)
    tokens = P.int8_part(model, f"tokens-{attention.replace('+', '')}", _TokenTrunk(visual, attention),
                         P.trunk_example(model))
    image = P.prepare_for_inference(model, "int8", dev)
    return DenseEncoder(model, resolved, dev, attention, tokens=tokens, image=image)


__all__ = ["ATTENTIONS", "DenseEncoder", "DenseUnsupportedError", "dense_features", "dense_similarity", "patch_grid",
           "prepare_dense"]
