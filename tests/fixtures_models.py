"""Helpers for model tests: tiny models, Llama3-MS-CLIP-layout state dicts, a fake Hugging Face cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from spectraclip.models.checkpoints import LLAMA3_PREFIXES
from spectraclip.models.loading import load_model
from spectraclip.models.spectral_clip import SpectralCLIP


def tiny(bands: str = "msclip", name: str = "tiny-test") -> SpectralCLIP:
    """The registry's tiny test model (deterministic random weights) for `bands`."""
    return load_model(name, bands=bands)


def randomize(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Overwrite every parameter with seeded noise (so zero-initialised tensors are not special)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def llama3_layout(clip_state: dict[str, torch.Tensor], temperature: float = 0.05,
                  copies: tuple[str, ...] = LLAMA3_PREFIXES) -> dict[str, torch.Tensor]:
    """The published Llama3-MS-CLIP file layout: the same open_clip tensors under three prefixes
    plus a scalar `temperature` (the CLIP tau: logits = cosine / tau)."""
    out = {f"{prefix}{k}": v for prefix in copies for k, v in clip_state.items()}
    out["temperature"] = torch.tensor(temperature)
    return out


def images(model: SpectralCLIP, n: int = 2, seed: int = 0) -> torch.Tensor:
    """Normalised random inputs `[n, C, S, S]` for `model`."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(model.bands), model.image_size, model.image_size, generator=g)


def fake_hf_cache(hf_home: Path, repo_id: str, files: dict[str, Path], commit: str = "0" * 40) -> Path:
    """Lay files out as huggingface_hub's cache does (models--org--repo/snapshots/<commit>, refs/main)."""
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, src in files.items():
        dst = snap / name
        try:
            dst.hardlink_to(src)
        except OSError:
            shutil.copy2(src, dst)
    return snap
