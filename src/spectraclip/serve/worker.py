"""The app factory of `spectraclip serve --workers N`: uvicorn starts N processes that each import the app
afresh, so the service's settings travel in an environment variable and every worker opens the (memory-mapped)
index and loads the model itself. Several workers let Python request handling use several cores."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "SPECTRACLIP_SERVE"


def settings_env(index_dir: str | Path, *, model: str | None = None, checkpoint: str | None = None,
                 model_bands: str | None = None, device: str = "cpu", force: bool = False,
                 workers: int = 1, layers: list[str] | None = None, labels: str | None = None) -> str:
    """The JSON the workers read from `SPECTRACLIP_SERVE`."""
    return json.dumps({"index_dir": str(index_dir), "model": model, "checkpoint": checkpoint,
                       "model_bands": model_bands, "device": device, "force": force, "workers": workers,
                       "layers": [str(p) for p in layers or []], "labels": labels})


def app() -> Any:
    """One worker's app (uvicorn `factory=True`); torch threads are the cores shared out among the workers."""
    import torch

    from spectraclip.models.loading import load_model
    from spectraclip.serve.app import create_app, settle_heap

    cfg = json.loads(os.environ[ENV])
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(cfg.get("workers", 1)))))
    net = None
    if cfg.get("model") or cfg.get("checkpoint"):
        net = load_model(cfg.get("model"), cfg.get("checkpoint"), device=cfg.get("device", "cpu"),
                         bands=cfg.get("model_bands"))
    served = create_app(cfg["index_dir"], net, force=bool(cfg.get("force")), layers=cfg.get("layers") or [],
                        labels=cfg.get("labels"))
    settle_heap()
    return served


__all__ = ["ENV", "app", "settings_env"]
