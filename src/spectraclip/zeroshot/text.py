"""The one text encoder of the package: prompts -> L2-normalised embeddings, trimmed and cached.

Every command that encodes text (class prompts, search queries, heatmap queries, the service) calls
`encode_texts`, so a prompt gets the same vector everywhere: tokenised by the model's tokenizer, encoded by
`models.text_trim.encode_text_trimmed` (padding trimmed, bit-identical to the full context), normalised, and
kept in the disk cache keyed by the model fingerprint (`zeroshot.text_cache`). It runs on the device the model
is on and never moves the caller's model; a model in training mode is put in eval mode for the call and put
back afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spectraclip.models.device import eval_mode, model_device
from spectraclip.models.text_trim import encode_text_trimmed
from spectraclip.zeroshot.text_cache import cached_text_embeddings


def encode_texts(model: Any, texts: Sequence[str], *, batch_size: int = 64, cache: bool = True) -> np.ndarray:
    """L2-normalised float32 text embeddings `[len(texts), D]` on the CPU, through the disk cache.

    `cache=False` encodes afresh (a model whose weights are changing, e.g. during training).
    """
    texts = [str(t) for t in texts]

    def encode(chunk_texts: list[str]) -> np.ndarray:  # only on a cache miss: a deferred model is built here
        device = model_device(model)
        out: list[np.ndarray] = []
        with eval_mode(model), torch.inference_mode():
            for i in range(0, len(chunk_texts), batch_size):
                tokens = model.tokenize(chunk_texts[i:i + batch_size])
                if isinstance(tokens, torch.Tensor):
                    tokens = tokens.to(device)
                emb = encode_text_trimmed(model, tokens)
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        dim = int(getattr(model, "embed_dim", 0) or 0)
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    if not texts:
        return encode([])
    if not cache:
        return np.asarray(encode(texts), dtype=np.float32)
    return cached_text_embeddings(model, texts, encode)


__all__ = ["encode_texts"]
