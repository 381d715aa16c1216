"""`spectraclip train --dry-run`: the effective settings of a recipe for a world size (batches per process and
micro-batch, optimizer steps, schedule) and a check of them against the Llama3-MS-CLIP recipe.

Nothing is loaded but the recipe and, when the data is there, its item count (SSL4EO-S12 v1.1: zarr metadata only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectraclip.bands import BandSet
from spectraclip.train.config import Recipe, RecipeError

# Llama3-MS-CLIP continual pre-training (Marimo et al. 2025, arXiv:2503.15969; IBM/MS-CLIP), as issue #32 states it
PAPER: dict[str, Any] = {
    "model.base": "ViT-B-16",
    "model.pretrained": "laion2b_s34b_b88k",
    "model.bands": ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"],
    "model.init_new_bands": "zero",
    "model.freeze": "all",  # multispectral: all layers trained (the RGB baseline: projection)
    "optim.lr": 4e-5,
    "optim.warmup_steps": 50,
    "schedule": "warm-up + cosine, per step",
    "global batch": 1200,
}


@dataclass
class Plan:
    """Effective settings (`rows`: setting, value, paper value or None, matches or None) and step counts."""

    world_size: int
    samples: int | None
    steps_per_epoch: int | None
    total_steps: int | None
    per_process: int
    micro_batch: int
    rows: list[tuple[str, Any, Any, bool | None]] = field(default_factory=list)

    @property
    def mismatches(self) -> list[str]:
        return [r[0] for r in self.rows if r[3] is False]


def count_samples(recipe: Recipe) -> int | None:
    """Items per epoch: SSL4EO-S12 v1.1 locations (from the zarr files when present), else `samples_per_epoch`."""
    d = recipe.data
    if d.layout == "ssl4eo-v1.1" and Path(d.train).is_dir():
        from spectraclip.data.ssl4eo_v11 import open_group, zarr_files

        return sum(int(open_group(f)["sample"].shape[0]) for f in zarr_files(d.train, d.level))
    return d.samples_per_epoch


def plan(recipe: Recipe, world_size: int = 1, samples: int | None = None) -> Plan:
    """What a launch on `world_size` processes would do, and how it compares with the paper."""
    if world_size < 1:
        raise RecipeError(f"--world-size {world_size} must be at least 1")
    d, o = recipe.data, recipe.optim
    if d.batch_size % (world_size * o.accum_steps):
        raise RecipeError(f"data.batch_size={d.batch_size} is not divisible by processes × optim.accum_steps = "
                          f"{world_size} × {o.accum_steps}")
    n = samples if samples is not None else count_samples(recipe)
    per_epoch = n // d.batch_size if n is not None else None
    if recipe.run.max_steps is not None:
        total = recipe.run.max_steps
    else:
        total = per_epoch * recipe.run.epochs if per_epoch is not None else None
    bands = list(BandSet.parse(recipe.model.bands).names) if recipe.model.bands is not None else None
    per_process = d.batch_size // world_size
    eff = {
        "model.base": recipe.model.base, "model.pretrained": recipe.model.pretrained, "model.bands": bands,
        "model.init_new_bands": recipe.model.init_new_bands, "model.freeze": recipe.model.freeze,
        "optim.lr": o.lr, "optim.warmup_steps": o.warmup_steps, "schedule": "warm-up + cosine, per step",
        "global batch": per_process * world_size,
    }
    rows: list[tuple[str, Any, Any, bool | None]] = []
    for key, value in eff.items():
        want = PAPER[key]
        ok = math.isclose(value, want) if isinstance(want, float) else value == want
        rows.append((key, value, want, ok))
    rows += [
        ("processes (world size)", world_size, None, None),
        ("per process batch", per_process, None, None),
        ("accumulation steps", o.accum_steps, None, None),
        ("micro-batch", per_process // o.accum_steps, None, None),
        ("samples per epoch", n, None, None),
        ("optimizer steps per epoch", per_epoch, None, None),
        ("epochs", recipe.run.epochs if recipe.run.max_steps is None else None, None, None),
        ("optimizer steps (total)", total, None, None),
        ("cosine decays to", o.min_lr, None, None),
    ]
    return Plan(world_size, n, per_epoch, total, per_process, per_process // o.accum_steps, rows)


__all__ = ["PAPER", "Plan", "count_samples", "plan"]
