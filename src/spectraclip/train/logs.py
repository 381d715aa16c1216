"""Training logs: an append-only JSONL metrics file (trimmed back to the checkpoint on resume), optional
TensorBoard, and a plot of the loss and validation curves at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spectraclip.io.atomic import append_line, atomic_open


class MetricsLog:
    """`metrics.jsonl` lines `{"step", "kind": "train"|"val", ...}`; mirrors scalars to TensorBoard if asked."""

    def __init__(self, folder: str | Path, tensorboard: bool = False, enabled: bool = True) -> None:
        self.path = Path(folder) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(folder) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records newer than `step` (written after the checkpoint a resumed run restarts from)."""
        if not (self.enabled and self.path.exists()):
            return
        keep = [ln for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        with atomic_open(self.path) as fh:
            fh.write("".join(ln + "\n" for ln in keep))

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps({"kind": kind, "step": step, **values}))
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def plot_curves(metrics_path: str | Path, output: str | Path) -> Path:
    """Training loss, validation loss and validation recall against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_metrics(metrics_path)
    train = [r for r in recs if r["kind"] == "train"]
    val = [r for r in recs if r["kind"] == "val" and "val_loss" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    for key in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"):
        if val and key in val[0]:
            ax.plot([r["step"] for r in val], [r[key] for r in val], "o-", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("validation recall")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if val:
        ax.legend()
    fig.tight_layout()
    out = Path(output)
    from spectraclip.io.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
