"""Where spectraclip keeps its caches (text embeddings, int8 encoders): one folder, one switch.

`$SPECTRACLIP_CACHE` names the folder (default `$XDG_CACHE_HOME/spectraclip` or `~/.cache/spectraclip`);
`SPECTRACLIP_CACHE=off` disables every cache. It lives in the lowest layer because both the model layer (the
int8 encoder cache) and the zero-shot layer (the text cache) use it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SPECTRACLIP_CACHE"
_OFF = {"off", "none", "0", "false", "no"}


def cache_root() -> Path | None:
    """The spectraclip cache folder (`$SPECTRACLIP_CACHE` or `~/.cache/spectraclip`); None when disabled."""
    env = os.environ.get(CACHE_ENV)
    if env is not None and env.strip().lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spectraclip"


__all__ = ["CACHE_ENV", "cache_root"]
