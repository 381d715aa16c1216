"""A run SIGKILLed after a checkpoint and resumed reaches the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
import yaml
from fixtures_train import run_training, tiny_recipe, write_toy_set


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model" / "model.safetensors")


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    m = write_toy_set(tmp_path / "d", n=24)
    # augmentation on and 3 steps per epoch: the resumed run must restore RNG and the data position
    sections = dict(data={"augment": True}, run={"max_steps": 7, "checkpoint_every": 2})
    paths = {}
    for name in ("full", "killed"):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(tiny_recipe(m, tmp_path / name, **sections)))
        paths[name] = p
    from spectraclip.train.config import load_recipe
    from spectraclip.train.loop import train

    torch.set_num_threads(1)
    train(load_recipe(paths["full"]))  # the uninterrupted reference, in this process
    killed = run_training(paths["killed"], kill_after=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("step-*.pt"))
    assert ckpts[-1] == "step-00000004.pt" and not (tmp_path / "killed" / "model").exists()
    resumed = run_training(paths["killed"], resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == list(range(1, 8))  # no duplicated records from the killed attempt
