"""Where this process stands in a torchrun job, and the process group it joins (training and derain).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them a process is rank 0 of 1 and no
group is created. The backend follows the device: NCCL for CUDA, gloo for CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["Placement", "gather_outcomes", "join_group", "leave_group", "placement"]


@dataclass(frozen=True)
class Placement:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def placement() -> Placement:
    """This process's rank, the number of processes and its rank on this machine (from torchrun's variables)."""
    return Placement(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                     int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip


def join_group(where: Placement, device: torch.device) -> None:
    """Join the job's process group (once), when there is more than one process."""
    if where.world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            # NCCL's object collectives (all_gather_object: validation, derain's summary) use the current
            # device: without this every rank would use GPU 0.
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def leave_group() -> None:
    """Leave the process group together: a rank that tears gloo down while a peer is still closing its
    side can abort at exit (SIGABRT, "terminate called without an active exception"), so wait for all first."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":  # bounded: a peer that died must not hang this one forever
                dist.monitored_barrier(timeout=timedelta(seconds=120))
            else:
                dist.barrier()
    except RuntimeError:
        pass  # a peer is gone: nothing left to wait for
    finally:
        dist.destroy_process_group()


def gather_outcomes(where: Placement, mine: dict) -> list[dict]:
    """Every process's report (a picklable dict), in rank order, on every process; just ``[mine]`` alone."""
    if where.world == 1 or not dist.is_initialized():
        return [mine]
    everyone: list = [None] * where.world
    dist.all_gather_object(everyone, mine)
    return everyone
