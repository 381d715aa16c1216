"""Synthetic co-registered S2 (RGB) + S1 (VV, VH) items as .npy files with a multi-sensor manifest: the
S1 and S2 views of item i share a bright square at an item-specific place, so the views can be matched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["water", "forest", "city", "field"]


def write_multisensor_set(folder: Path, n: int = 8, val: int = 2, size: int = 32, seed: int = 0,
                          captions: bool = True, s1_only: int = 0, s2_only: int = 0) -> Path:
    """`n` train items (+ `val` with split val); the last `s1_only` / `s2_only` train items lack a modality."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n + val):
        mask = np.zeros((size, size), np.float32)
        r, c = rng.integers(0, size - 8, 2)
        mask[r:r + 8, c:c + 8] = 1
        s2 = (rng.normal(1500, 200, (3, size, size)) + 3000 * mask).astype(np.float32)
        s1 = (rng.normal(-15, 2, (2, size, size)) + 8 * mask).astype(np.float32)
        row: dict = {"id": f"p{i:02d}", "split": "val" if i >= n else "train"}
        if not (n - s1_only <= i < n):
            np.save(folder / f"p{i:02d}_s2.npy", s2)
            row.update({"s2": f"p{i:02d}_s2.npy", "s2_bands": "B04,B03,B02"})
        if not (n - s1_only - s2_only <= i < n - s1_only):
            np.save(folder / f"p{i:02d}_s1.npy", s1)
            row.update({"s1": f"p{i:02d}_s1.npy", "s1_bands": "VV,VH"})
        if captions:
            row["captions"] = [f"a satellite image of {WORDS[i % len(WORDS)]}"]
        rows.append(row)
    manifest = folder / "multisensor.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


NORMALIZATION = {"s2": {"mean": {"B02": 1800.0, "B03": 1800.0, "B04": 1800.0},
                        "std": {"B02": 900.0, "B03": 900.0, "B04": 900.0}},
                 "s1": {"mean": {"VV": -13.0, "VH": -13.0}, "std": {"VV": 4.0, "VH": 4.0}}}


def multisensor_recipe(manifest: Path, output: Path, **sections) -> dict:
    """A tiny `kind: multisensor` recipe dict on `manifest` (update sections with keyword dicts)."""
    recipe = {
        "model": {"kind": "multisensor", "base": "tiny-test", "modalities": {"s2": "rgb", "s1": "s1"},
                  "modality_dropout": 0.2, "channel_dropout": 0.1, "freeze": "all"},
        "data": {"layout": "manifest", "train": str(manifest), "batch_size": 4, "augment": True},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0},
        "run": {"output": str(output), "max_steps": 4, "progress": False, "plot": False, "threads": 1,
                "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 5},
        "normalization": json.loads(json.dumps(NORMALIZATION)),
    }
    for sec, values in sections.items():
        recipe.setdefault(sec, {}).update(values)
    return recipe
