"""Two processes (gloo, CPU) reach the same loss and weights as one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from fixtures_train import tiny_recipe, write_toy_set


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, recipe: dict) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from spectraclip.train.config import recipe_from_dict
    from spectraclip.train.loop import train

    train(recipe_from_dict(recipe))


def _losses(run) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["kind"] == "train"]


def _same_as_one_process(tmp_path, single: dict, ddp: dict) -> dict:
    """Train `single` in this process and `ddp` in two gloo processes; same losses and final weights."""
    from safetensors.torch import load_file

    from spectraclip.train.config import recipe_from_dict
    from spectraclip.train.loop import train

    torch.set_num_threads(1)
    train(recipe_from_dict(single))
    mp.spawn(_worker, args=(2, _free_port(), ddp), nprocs=2, join=True)
    l1, l2 = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert len(l1) == len(l2) == 3
    assert all(abs(a - b) < 1e-5 for a, b in zip(l1, l2, strict=True)), (l1, l2)
    w1 = load_file(tmp_path / "single" / "model" / "model.safetensors")
    w2 = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5, rtol=1e-4), k
    return w1


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    m = write_toy_set(tmp_path / "d", n=16)
    sections = dict(run={"max_steps": 3}, optim={"accum_steps": 2})
    single = tiny_recipe(m, tmp_path / "single", **sections)
    ddp = tiny_recipe(m, tmp_path / "ddp", **sections)
    w1 = _same_as_one_process(tmp_path, single, ddp)
    assert "visual.conv1.weight" in w1  # a single-group bundle keeps open_clip's own patch embedding


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_for_a_multigroup_model(tmp_path):
    """S2 + S1 items (two with one modality only), group and channel dropout, gradient accumulation: two
    processes give the losses and weights of one, so negatives cross ranks."""
    from fixtures_multisensor import multisensor_recipe, write_multisensor_set

    m = write_multisensor_set(tmp_path / "d", n=8, val=0, s1_only=1, s2_only=1)
    sections = dict(run={"max_steps": 3, "checkpoint_every": 0}, optim={"accum_steps": 2})
    single = multisensor_recipe(m, tmp_path / "single", **sections)
    ddp = multisensor_recipe(m, tmp_path / "ddp", **sections)
    w1 = _same_as_one_process(tmp_path, single, ddp)
    assert any(k.startswith("patch_embeds.") for k in w1)
