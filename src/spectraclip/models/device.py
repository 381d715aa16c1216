"""Where a model runs and in which mode, without changing the caller's model: the device of its weights, and
evaluation mode for a block with the caller's mode restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Evaluation mode for the block, the caller's mode restored afterwards."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


__all__ = ["eval_mode", "model_device"]
