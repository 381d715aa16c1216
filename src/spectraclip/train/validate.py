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
def validate(model: Any, batches: Iterable[dict[str, Any]], objective: Callable[..., Any],
             device: torch.device) -> dict[str, float]:
    """Validation of any model on the trainer's batches (single process, eval mode, no input dropout): the
    objective's mean per-batch loss, image↔text recall@1/5 over all captioned items, and for a model with
    several input groups the cross-group recall@1/5 of every pair over the items that have both."""
    from spectraclip.train.objective import concat, forward_features

    was_training = model.training
    model.eval()
    feats, losses, n = [], [], 0
    for batch in batches:
        b = len(batch["ids"])
        text = model.tokenize(batch["captions"]).to(device) if bool(batch["has_caption"].any()) else None
        micro = {"x": {g: t.to(device) for g, t in batch["x"].items()},
                 "present": {g: p.to(device) for g, p in batch["present"].items()},
                 "text": text, "text_present": batch["has_caption"].to(device)}
        f = forward_features(model, micro)
        losses.append(float(objective(f)[0]) * b)
        feats.append(f)
        n += b
    model.train(was_training)
    if not n:
        return {}
    from spectraclip.bands import GROUP_ORDER

    seen = {g for f in feats for g in f.emb}
    groups = [g for g in GROUP_ORDER if g in seen] + sorted(seen - set(GROUP_ORDER))
    for f in feats:  # a batch may lack a group every item of it lacks: pad so batches concatenate
        for g in groups:
            if g not in f.emb:
                f.emb[g] = torch.zeros_like(f.fused)
                f.present[g] = torch.zeros(len(f.fused), dtype=torch.bool, device=f.fused.device)
    if any(f.text is None for f in feats):
        for f in feats:
            if f.text is None:
                f.text = torch.zeros_like(f.fused)
                f.text_present = torch.zeros(len(f.fused), dtype=torch.bool, device=f.fused.device)
    every = concat(feats)
    out = {"val_loss": sum(losses) / n, "val_items": float(n)}
    captioned = every.text_present.bool().cpu() if every.text_present is not None else torch.ones(n, dtype=torch.bool)
    if every.text is not None and int(captioned.sum()) >= 2:
        i, t = every.fused.float().cpu()[captioned], every.text.float().cpu()[captioned]
        out.update({"val_pairs": float(int(captioned.sum())), **recall_at_k(i @ t.T)})
    if len(groups) > 1:
        import itertools

        for a, b in itertools.combinations(groups, 2):
            both = (every.present[a] & every.present[b]).cpu()
            if int(both.sum()) >= 2:
                r = recall_at_k(every.emb[a].float().cpu()[both] @ every.emb[b].float().cpu()[both].T)
                out.update({f"{a}-{b}_r1": r["i2t_r1"], f"{a}-{b}_r5": r["i2t_r5"]})
    return out


def zeroshot_hook(dataset: str, templates: str = "default", root: str | None = None) -> Hook:
    """A hook running the evaluation package's zero-shot classification on `dataset` (top-1, balanced)."""

    def run(model: Any, step: int) -> dict[str, float]:
        from spectraclip.evaluate.zeroshot import evaluate_zeroshot

        device = str(next(model.parameters()).device)
        metrics = evaluate_zeroshot(model, dataset, "msclip" if templates == "default" else templates,
                                    root=root, device=device)
        return {f"zeroshot/{k}": float(metrics[k]) for k in ("top1", "balanced_accuracy") if k in metrics}

    return run
