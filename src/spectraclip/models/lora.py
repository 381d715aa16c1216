"""LoRA adapters (peft) on the attention and MLP layers of both open_clip towers.

Targets: open_clip `nn.MultiheadAttention` blocks (`attn`, q/k/v and output projection) and MLP
`c_fc`/`c_proj` linears; HF text towers' `query`/`key`/`value`/`dense` linears; timm `qkv`/`proj`/`fc1`/
`fc2`. The adapters are injected in place, so the model keeps its own class and parameter names
gain `lora_A`/`lora_B` entries; `merge_lora` folds them back for export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

_LINEAR_SUFFIXES = ("mlp.c_fc", "mlp.c_proj", "attention.self.query", "attention.self.key",
                    "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense",
                    "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass
class LoraHandle:
    """The peft `LoraModel` that owns the injected adapters (kept outside the module tree)."""

    lora_model: Any
    targets: list[str]


def lora_targets(model: nn.Module) -> list[str]:
    """Module names of `model` that get LoRA adapters (attention and MLP layers of both towers)."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.MultiheadAttention):
            out.append(name)
        elif isinstance(mod, nn.Linear) and name.endswith(_LINEAR_SUFFIXES) and ".attn.out_proj" not in name:
            out.append(name)
    return out


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> LoraHandle:
    """Inject LoRA adapters of `rank`/`alpha` into `model.clip` (or `model`) in place.

    Only the adapters are trainable afterwards; use `freeze.apply_freeze(model, "lora")` to also train
    the patch embedding and the temperature.
    """
    from peft import LoraConfig, LoraModel

    target_root = getattr(model, "clip", model)
    targets = lora_targets(target_root)
    if not targets:
        raise ValueError(f"no attention/MLP layers found for LoRA in {type(target_root).__name__}")
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    lora_model = LoraModel(target_root, cfg, "default")  # injects into target_root in place
    return LoraHandle(lora_model, targets)


def merge_lora(model: nn.Module, handle: LoraHandle) -> nn.Module:
    """Fold the adapters into the base weights and remove them; returns `model` with plain layers."""
    merged = handle.lora_model.merge_and_unload()
    if hasattr(model, "clip"):
        model.clip = merged
        return model
    return merged
