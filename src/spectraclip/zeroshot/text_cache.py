"""A disk cache of text embeddings: class prompts and queries are encoded once per model and prompt list.

A zero-shot run with 10 classes and 50 templates encodes 500 prompts before its first image; the
second run with the same model reads them back. Entries are keyed by the model fingerprint (weights +
architecture), the tokenizer and the exact prompt strings, so another model, tokenizer or template set
never hits. Files live under `~/.cache/spectraclip/text` (or `$SPECTRACLIP_CACHE/text`); setting
`SPECTRACLIP_CACHE=off` disables the cache. Writes are atomic, so concurrent runs never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.cache import CACHE_ENV, cache_root
from spectraclip.io.atomic import atomic_path

log = logging.getLogger(__name__)

FORMAT = 1


def tokenizer_id(model: Any) -> str:
    """What decides the token ids: the model's text/tokenizer settings as plain data."""
    cfg = getattr(model, "config", None)
    text = dict(getattr(cfg, "text", None) or {})
    text_cfg = dict((getattr(cfg, "arch_config", None) or {}).get("text_cfg", {}))
    keep = {k: text_cfg.get(k) for k in ("context_length", "vocab_size", "hf_tokenizer_name", "tokenizer_kwargs")}
    return json.dumps({"text": text, "text_cfg": keep}, sort_keys=True, default=str)


class TextEmbeddingCache:
    """Text embeddings on disk, one `.npy` per (model fingerprint, tokenizer, prompt list)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) / "text" if root is not None else None
        if self.root is None:
            base = cache_root()
            self.root = base / "text" if base is not None else None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def key(self, model: Any, prompts: Sequence[str]) -> tuple[str, str]:
        """(model fingerprint, entry digest) for these prompts encoded by this model."""
        from spectraclip.identity import model_fingerprint

        fp = model_fingerprint(model)
        h = hashlib.sha256()
        h.update(json.dumps({"format": FORMAT, "model": fp, "tokenizer": tokenizer_id(model),
                             "prompts": list(prompts)}, ensure_ascii=False).encode())
        return fp, h.hexdigest()[:32]

    def path(self, model: Any, prompts: Sequence[str]) -> Path:
        """Where the entry for these prompts lives (whether it exists or not)."""
        if self.root is None:
            raise RuntimeError("the text cache is disabled (SPECTRACLIP_CACHE=off)")
        fp, digest = self.key(model, prompts)
        return self.root / fp / f"{digest}.npy"

    def get(self, model: Any, prompts: Sequence[str]) -> np.ndarray | None:
        """The cached `[len(prompts), D]` float32 embeddings, or None on a miss or an unreadable entry."""
        if self.root is None:
            return None
        p = self.path(model, prompts)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable text-cache entry %s: %s", p, exc)
            return None
        if arr.ndim != 2 or arr.shape[0] != len(prompts):
            log.warning("ignoring text-cache entry %s of shape %s for %d prompts", p, arr.shape, len(prompts))
            return None
        return arr

    def put(self, model: Any, prompts: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Store the embeddings atomically; returns the file (None when disabled or not writable)."""
        if self.root is None:
            return None
        p = self.path(model, prompts)
        try:
            with atomic_path(p) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        except OSError as exc:  # a read-only home must not stop a classification
            log.warning("could not write the text cache %s: %s", p, exc)
            return None
        return p


def cached_text_embeddings(model: Any, prompts: Sequence[str], encode: Callable[[list[str]], np.ndarray], *,
                           cache: TextEmbeddingCache | None = None) -> np.ndarray:
    """`encode(prompts)` through the disk cache: read the entry when present, else encode and store it.

    Models without a config (test doubles, bare open_clip models) are encoded directly: nothing
    identifies them across runs.
    """
    prompts = list(prompts)
    if getattr(model, "config", None) is None or not hasattr(model, "state_dict"):
        return np.asarray(encode(prompts), dtype=np.float32)
    cache = cache or TextEmbeddingCache()
    hit = cache.get(model, prompts)
    if hit is not None:
        log.debug("text cache hit: %d prompts", len(prompts))
        return hit
    vectors = np.asarray(encode(prompts), dtype=np.float32)
    cache.put(model, prompts, vectors)
    return vectors


__all__ = ["CACHE_ENV", "TextEmbeddingCache", "cache_root", "cached_text_embeddings", "tokenizer_id"]
