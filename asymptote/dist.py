"""Who am I in a data-parallel job, and the few collectives the training code needs.

Works under Ray Train (which initialises torch.distributed), under torchrun, or alone (world 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @classmethod
    def detect(cls, use_gpu: bool | None = None) -> "DistEnv":
        rank = tdist.get_rank() if tdist.is_initialized() else 0
        world = tdist.get_world_size() if tdist.is_initialized() else 1
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
        if gpu:
            # Ray sets CUDA_VISIBLE_DEVICES per worker; LOCAL_RANK indexes what remains visible.
            index = local_rank % max(1, torch.cuda.device_count())
            torch.cuda.set_device(index)
            device = torch.device("cuda", index)
        else:
            device = torch.device("cpu")
        return cls(rank, world, local_rank, device)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """All-reduced mean across ranks (identity on one rank)."""
        if self.distributed:
            value = value.clone()
            tdist.all_reduce(value, op=tdist.ReduceOp.SUM)
            value /= self.world
        return value

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            value = value.clone()
            tdist.all_reduce(value, op=tdist.ReduceOp.SUM)
        return value

    def broadcast(self, obj):
        """rank 0's Python object on every rank (decisions made once, applied everywhere)."""
        if not self.distributed:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            tdist.barrier()
