"""Validation during training: contrastive loss and image↔text retrieval recall@1/5 on held-out pairs,
plus an optional zero-shot hook backed by the evaluation package."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

Hook = Callable[[Any, int], dict[str, float]]


def recall_at_k(sim: torch.Tensor, ks: Iterable[int] = (1, 5)) -> dict[str, float]:
    """Image→text and text→image recall@k for a square similarity matrix whose diagonal holds the pairs."""
    n = sim.shape[0]
    target = torch.arange(n)
    out = {}
    for name, s in (("i2t", sim), ("t2i", sim.T)):
        rank = (s > s[target, target][:, None]).sum(1)  # how many candidates beat the true pair
        for k in ks:
            out[f"{name}_r{k}"] = float((rank < k).float().mean())
    return out


@torch.inference_mode()
def validate(model: Any, batches: Iterable[dict[str, Any]], loss_fn: torch.nn.Module,
             device: torch.device) -> dict[str, float]:
    """Mean per-batch loss and recall@1/5 over all validation pairs (single process, eval mode)."""
    was_training = model.training
    model.eval()
    img, txt, losses, n = [], [], [], 0
    for batch in batches:
        tokens = model.tokenize(batch["captions"]).to(device)
        out = model(batch["pixels"].to(device), tokens)
        losses.append(float(loss_fn(*out)) * len(tokens))
        n += len(tokens)
        img.append(out[0].float().cpu())
        txt.append(out[1].float().cpu())
    model.train(was_training)
    if not n:
        return {}
    i, t = torch.cat(img), torch.cat(txt)
    return {"val_loss": sum(losses) / n, "val_pairs": float(n), **recall_at_k(i @ t.T)}


def zeroshot_hook(dataset: str, templates: str = "default", root: str | None = None) -> Hook:
    """A hook running the evaluation package's zero-shot classification on `dataset` (top-1, balanced)."""

    def run(model: Any, step: int) -> dict[str, float]:
        from spectraclip.evaluate.zeroshot import evaluate_zeroshot

        device = str(next(model.parameters()).device)
        metrics = evaluate_zeroshot(model, dataset, "msclip" if templates == "default" else templates,
                                    root=root, device=device)
        return {f"zeroshot/{k}": float(metrics[k]) for k in ("top1", "balanced_accuracy") if k in metrics}

    return run
