"""Is a Hub file here, or can it be fetched? Answered in well under a second, before torch or a model loads.

`huggingface_hub` retries a download that cannot connect for about 30 s; a registry model whose weights are
neither in the local cache nor reachable (HF_HUB_OFFLINE set, or no route to the Hub) fails at once instead,
with a message naming the model, the repo and file, and the command that fetches them.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from spectraclip.errors import ModelNotAvailableError

CONNECT_TIMEOUT_S = 2.0


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "")).strip().lower() in {
        "1", "true", "yes", "on"}


def hf_cache_dir() -> str | None:
    """The hub cache per the current environment (HF_HUB_CACHE, then HF_HOME/hub; None: huggingface_hub's)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def cached_file(repo_id: str, filename: str, revision: str | None = None) -> str | None:
    """The local path of a Hub file in the HF cache, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir(), revision=revision)
    return found if isinstance(found, str) else None


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached right now (offline mode, no DNS, no route), or None when it answers a
    TCP connection within CONNECT_TIMEOUT_S."""
    if offline():
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or exc})"


def check_hub_file(repo_id: str, filename: str, revision: str | None = None, *, model: str | None = None) -> None:
    """Return when the file is cached or the Hub is reachable; else raise ModelNotAvailableError at once."""
    if cached_file(repo_id, filename, revision) is not None:
        return
    why = hub_unreachable()
    if why is None:
        return
    rev = f" --revision {revision}" if revision else ""
    who = f"model {model}: " if model else ""
    raise ModelNotAvailableError(
        f"{who}weights {repo_id}/{filename} are not in the local Hugging Face cache "
        f"({hf_cache_dir() or 'the default HF cache'}) and {why}. Fetch them where there is network with "
        f"`hf download {repo_id} {filename}{rev}` (older huggingface_hub: `huggingface-cli download {repo_id} "
        f"{filename}{rev}`) and copy the HF cache (HF_HOME) here, or pass the file with --checkpoint PATH.")
