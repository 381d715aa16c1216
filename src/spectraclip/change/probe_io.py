"""Which change probes exist, and writing/reading a trained one (`--save-probe`, `--load-probe`): its own module,
because it knows both the pixel probe (`change.probe`) and the change network (`change.cnn`), which itself
uses the pixel probe's threshold search."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from spectraclip.change.cnn import CnnProbe
from spectraclip.change.grid import ChangeInputError

PROBES: tuple[str, ...] = ("gbm", "cnn")
DEFAULT_PROBE = "cnn"  # the one with the better leave-one-city-out F1 on OSCD (docs/change.md)


def save_probe(probe: Any, path: str | Path) -> Path:
    """Write a trained probe (the change network or the pixel probe) to `path` (a torch file), atomically."""
    import torch

    from spectraclip.io.atomic import atomic_path

    path = Path(path)
    if getattr(probe, "kind", None) == "cnn":
        state = probe.to_state()
    else:
        state = {"kind": "gbm", "pickle": pickle.dumps(probe)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_probe(path: str | Path, *, trust_pickle: bool = True) -> Any:
    """A probe written by `save_probe`. The change network loads as plain tensors (`weights_only`); the pixel
    probe is a pickle (scikit-learn), loaded only with `trust_pickle`: load only probes you wrote yourself."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ChangeInputError(f"{path}: no such probe file (write one with --save-probe)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a file that is not its own
        raise ChangeInputError(f"{path}: not a saved change probe ({exc})") from exc
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "cnn":
        return CnnProbe.from_state(state)
    if kind == "gbm":
        if not trust_pickle:
            raise ChangeInputError(f"{path}: a pixel probe is a pickle; refusing to load it untrusted")
        return pickle.loads(state["pickle"])  # noqa: S301 - the user's own file, said in the docstring
    raise ChangeInputError(f"{path}: not a saved change probe (kind {kind!r})")


__all__ = ["DEFAULT_PROBE", "PROBES", "load_probe", "save_probe"]
