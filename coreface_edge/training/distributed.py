"""Process-group plumbing for ``torchrun``: NCCL on GPUs, gloo on CPU, rank 0 does the I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import CorefaceError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local GPU when CUDA is available, else the CPU."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise CorefaceError("device=cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_name: str) -> DistInfo:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1) or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over all ranks (identity when running alone)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values)
        values /= info.world_size
    return values


def sum_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks (identity when running alone)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
