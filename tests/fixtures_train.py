"""Synthetic image–caption data for training tests: a learnable toy set of `.npy` rasters whose content
(which band is bright, and where) determines their caption, written with a JSONL manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

MSCLIP = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
WORDS = ["water", "forest", "desert", "city", "snow", "field", "road", "cloud"]


def write_toy_set(folder: Path, n: int = 32, n_classes: int = 4, size: int = 32, bands: list[str] | None = None,
                  seed: int = 0, val: int = 0, captions_per_image: int = 2) -> Path:
    """`n` rasters (+ `val` validation rows); class k brightens band k; returns the manifest path."""
    bands = bands or MSCLIP
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n + val):
        k = i % n_classes
        arr = rng.normal(1000, 100, size=(len(bands), size, size)).astype(np.float32)
        arr[k % len(bands)] += 3000
        name = f"img{i:03d}.npy"
        np.save(folder / name, arr)
        caps = [f"a satellite image of {WORDS[k]}", f"{WORDS[k]} seen from above"][:captions_per_image]
        rows.append({"id": f"img{i:03d}", "path": name, "bands": ",".join(bands), "captions": caps,
                     "split": "val" if i >= n else "train"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def tiny_recipe(manifest: Path, output: Path, **sections) -> dict:
    """A recipe dict for the `tiny-test` model on `manifest`; `sections` update recipe sections."""
    recipe = {
        "model": {"base": "tiny-test", "freeze": "all"},
        "data": {"train": str(manifest), "batch_size": 8, "augment": False},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "weight_decay": 0.0},
        "run": {"output": str(output), "max_steps": 6, "progress": False, "plot": False, "threads": 1,
                "log_every": 1},
    }
    for sec, values in sections.items():
        recipe.setdefault(sec, {}).update(values)
    return recipe


def run_training(recipe_path: Path, resume: bool = False, kill_after: int | None = None
                 ) -> subprocess.CompletedProcess:
    """Train `recipe_path` in a fresh process (one OpenMP thread), optionally SIGKILLed by the trainer's own fault
    hook after `kill_after` steps, or resuming from the run's last checkpoint."""
    from spectraclip.train.loop import FAULT_ENV

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop(FAULT_ENV, None)
    if kill_after:
        env[FAULT_ENV] = str(kill_after)
    code = ("import sys; from spectraclip.train.config import load_recipe; from spectraclip.train.loop import train; "
            "train(load_recipe(sys.argv[1]), resume=sys.argv[2] == '1')")
    return subprocess.run([sys.executable, "-c", code, str(recipe_path), "1" if resume else "0"], env=env,
                          capture_output=True, text=True, timeout=300)

