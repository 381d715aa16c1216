"""Models: `SpectralCLIP` (open_clip CLIP with named spectral bands), the registry of named models,
checkpoint formats, channel extension, text towers and the preprocessing transforms (`models.transforms`).

Import-light: open_clip/transformers load only when a model is built; names resolve lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpectralCLIP": "spectral_clip",
    "ModelConfig": "spectral_clip",
    "ModelConfigError": "spectral_clip",
    "load_model": "loading",
    "save_bundle": "checkpoints",
    "load_bundle": "checkpoints",
    "CheckpointError": "checkpoints",
    "ModelNotAvailableError": "checkpoints",
    "extend_channels": "channels",
    "get_patch_embed": "channels",
    "list_models": "registry",
    "model_config": "registry",
    "UnknownModelError": "registry",
    "minilm_path": "text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spectraclip.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"spectraclip.models.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
