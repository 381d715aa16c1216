"""Process-group setup for `torchrun` and SLURM (`srun`): one process per device, NCCL on GPUs and
gloo on CPU. Rank/world size come from the environment via open_clip's `world_info_from_env`."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process sits: global rank, local rank on its node, number of processes, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _slurm_master_env() -> None:
    """Under `srun` without torchrun, derive MASTER_ADDR/PORT from the SLURM node list."""
    if "SLURM_PROCID" in os.environ and "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "127.0.0.1")
        try:
            host = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                  check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            host = nodes.split(",")[0]
        os.environ["MASTER_ADDR"] = host
        os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000))


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """`auto` picks this process's GPU when there is one, else the CPU."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(spec)


def init_distributed(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun/srun with more than one process."""
    from open_clip_train.distributed import world_info_from_env

    local_rank, rank, world_size = world_info_from_env()
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        _slurm_master_env()
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"),
                                rank=rank, world_size=world_size)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistInfo(rank, local_rank, world_size, dev)


def cleanup_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a scalar over processes (for logged metrics)."""
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def all_reduce_sum(value: int, info: DistInfo) -> int:
    """Sum of an integer over processes (e.g. skipped-item counts)."""
    if not info.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=info.device)
    dist.all_reduce(t)
    return int(t.item())
