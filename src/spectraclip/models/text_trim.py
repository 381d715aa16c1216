"""Text encoding without the padding: open_clip's causal text tower run on the tokens up to the last EOT.

CLIP's text tower always runs its full context (77 tokens) although a prompt like "a satellite image of
Forest." is 8 tokens long. Its attention is causal and it pools the EOT token, so the positions after
the longest prompt's EOT never reach the output: cutting the batch (and the positional embedding and the
mask) there gives the same embeddings at a fraction of the cost. Towers that are not causal or pool
otherwise (HF text towers, e.g. MiniLM) are encoded as they are.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _trimmable(clip: Any) -> bool:
    need = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    return (all(hasattr(clip, a) for a in need) and isinstance(getattr(clip, "attn_mask", None), torch.Tensor)
            and getattr(clip, "text_pool_type", "argmax") in ("argmax", "eos"))


def pooled_length(clip: Any, tokens: torch.Tensor) -> int:
    """Tokens every prompt of the batch needs: up to and including its pooled (EOT) position."""
    if getattr(clip, "text_pool_type", "argmax") == "eos":
        idx = (tokens == clip.text_eos_id).int().argmax(dim=-1)
    else:
        idx = tokens.argmax(dim=-1)
    return int(idx.max()) + 1


def encode_text_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens)` (L2-normalised), computed on the tokens up to the batch's last EOT when the
    tower allows; other models are called as they are."""
    clip = getattr(model, "clip", None)
    if clip is None or not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or not _trimmable(clip):
        return model.encode_text(tokens)
    n = pooled_length(clip, tokens)
    if n >= tokens.shape[1]:
        return model.encode_text(tokens)
    text = tokens[:, :n]
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(text).to(cast) + clip.positional_embedding[:n].to(cast)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
    if getattr(clip, "text_pool_type", "argmax") == "eos":
        idx = (text == clip.text_eos_id).int().argmax(dim=-1)
    else:
        idx = text.argmax(dim=-1)
    x = x[torch.arange(x.shape[0], device=x.device), idx]
    proj = clip.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return F.normalize(x, dim=-1)


__all__ = ["encode_text_trimmed", "pooled_length"]
