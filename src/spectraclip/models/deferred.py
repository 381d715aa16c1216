"""Models whose weights load on first use: a warm run that finds everything it needs in the caches never builds them.

A run of `classify` with warm caches needs no torch weights at all: the class text embeddings come from the text
cache and the image trunk from the int8 cache, both keyed by the model fingerprint. Loading still cost ~4 s of a
~25 s run (importing open_clip and torchvision, building the ViT, reading the file, hashing it for the
fingerprint), the difference between 3.2x and 3.5x the published code (issue #29).

So a model loaded from a local file or bundle leaves a *record* in the cache folder (`models/`): its config and
fingerprint, keyed by what was asked (name, checkpoint, bands), the file(s) it came from (real path, size,
modification time, inode) and the loading code itself (a hash of the modules that turn a file into weights). The
next load with the same key returns a `SpectralCLIP.deferred` model: config, preprocessing and fingerprint as
before, weights built by the same loader the moment anything reaches for them (`model.clip`, parameters,
`state_dict`, `.to()`, `.eval()`, pickling). When they are built their fingerprint is checked against the record's;
a mismatch is an error naming the file, never a silent mix of two models. Changing the file (size, time or
inode), the spectraclip code or the request makes another key; `SPECTRACLIP_CACHE=off` turns records off.
Only single-group models on the CPU are deferred: the multi-group image path runs torch patch embeddings first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_VERSION = 1
# The modules that turn a file into weights: a change to any of them makes every record stale.
_LOADING_CODE = ("loading.py", "checkpoints.py", "registry.py", "registry.json", "channels.py", "spectral_clip.py",
                 "text.py", "deferred.py")


@functools.cache
def _code_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _LOADING_CODE:
        p = here / name
        h.update(name.encode() + (p.read_bytes() if p.is_file() else b"-"))
    return h.hexdigest()[:16]


def source_files(checkpoint: str | os.PathLike[str]) -> list[Path] | None:
    """The local files a checkpoint argument loads from (a bundle: its config and weights), or None when it is not
    a local file or bundle (Hub ids, registry downloads: those are not deferred)."""
    from spectraclip.models.checkpoints import BUNDLE_CONFIG, BUNDLE_WEIGHTS, HF_PREFIX

    text = str(checkpoint)
    if text.startswith(HF_PREFIX):
        return None
    path = Path(text).expanduser()
    if path.is_dir():
        files = [path / BUNDLE_CONFIG, path / BUNDLE_WEIGHTS]
        return files if all(f.is_file() for f in files) else None
    return [path] if path.is_file() else None


def record_key(name: str | None, checkpoint: str | os.PathLike[str], bands: Any) -> dict[str, Any] | None:
    """What a record is kept under (module doc), or None when `checkpoint` is not a local file or bundle."""
    from importlib.metadata import version

    import torch

    files = source_files(checkpoint)
    if files is None:
        return None
    stats = []
    for f in files:
        st = f.stat()
        stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ino])
    bands_key = bands if bands is None or isinstance(bands, (str, list)) else str(bands)
    return {"v": RECORD_VERSION, "name": name, "bands": bands_key, "files": stats, "code": _code_digest(),
            "torch": torch.__version__, "open_clip": version("open_clip_torch")}


def _record_path(key: dict[str, Any]) -> Path | None:
    from spectraclip.cache import cache_root

    root = cache_root()
    if root is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return root / "models" / f"{digest}.json"


def remember(model: Any, key: dict[str, Any] | None) -> None:
    """Write the record of a fully loaded `model` under `key` (no-op without a key, a cache, or for a model that
    is not deferrable)."""
    path = None if key is None else _record_path(key)
    if path is None or model.config.multi:
        return
    from spectraclip.identity import model_fingerprint
    from spectraclip.io.atomic import atomic_open

    record = {"key": key, "fingerprint": model_fingerprint(model), "config": model.config.to_dict(),
              "extras": {"logit_scale": model.learned_logit_scale}}
    try:
        with atomic_open(path) as fh:
            fh.write(json.dumps(record, sort_keys=True, default=str))
    except OSError as exc:  # a read-only cache folder costs speed, not correctness
        log.debug("model record not written (%s)", exc)


def deferred_model(key: dict[str, Any] | None, load: Callable[[], Any]) -> Any | None:
    """A `SpectralCLIP.deferred` model from the record under `key` (None when there is none): `load()` builds the
    real weights on first use."""
    path = None if key is None else _record_path(key)
    if path is None or not path.is_file():
        return None
    from spectraclip.models.spectral_clip import ModelConfig, SpectralCLIP

    try:
        record = json.loads(path.read_text())
        config = ModelConfig.from_dict(record["config"])
        fingerprint = str(record["fingerprint"])
        extras = dict(record["extras"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("model record %s unreadable (%s): loading the weights now", path, exc)
        return None
    if record.get("key") != json.loads(json.dumps(key, default=str)) or config.multi:
        return None
    return SpectralCLIP.deferred(config, load, fingerprint, where=str(key["files"][-1][0]), extras=extras)


__all__ = ["RECORD_VERSION", "deferred_model", "record_key", "remember", "source_files"]
