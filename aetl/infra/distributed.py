"""Where a job runs: the device (`pick_device`), and data-parallel training with PyTorch's
DistributedDataParallel, one process per device.

`torchrun --nproc_per_node=N -m aetl train ...` (also under SLURM's srun) sets RANK,
WORLD_SIZE and LOCAL_RANK; aetl then joins the process group (NCCL on CUDA, gloo on
the CPU). Every rank draws the same shuffled batches and trains on its own slice of
each, DDP averages the gradients, and only rank 0 writes the run dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aetl.errors import AetlError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a batch every rank drew alike."""
        if not self.distributed:
            return batch
        if len(batch) % self.size:
            raise AetlError(f"batch size {len(batch)} does not split over {self.size} processes; "
                            f"use a multiple of {self.size}")
        return batch.chunk(self.size)[self.rank]

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean over ranks of each (scalar) value."""
        if not self.distributed:
            return values
        stacked = torch.stack(list(values.values()))
        dist.all_reduce(stacked)
        return dict(zip(values, stacked / self.size))

    def broadcast(self, value: object) -> object:
        """Rank 0's value, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first(self, value: object) -> object:
        """The first value that is not None over the ranks (rank order), on every rank."""
        if not self.distributed:
            return value
        values: list = [None] * self.size
        dist.all_gather_object(values, value)
        return next((v for v in values if v is not None), None)


SINGLE = World()


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def join(device_name: str) -> tuple[World, torch.device | None]:
    """Join the process group torchrun set up; (SINGLE, None) when there is none."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE, None
    world = World(launched_rank(), size, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(world.local_rank)
        return world, torch.device("cuda", world.local_rank)
    return world, torch.device("cpu")


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when a device is visible, else the CPU; `mps` is Apple's GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AetlError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AetlError("trainer.device=mps but PyTorch's MPS backend is not available here (it needs Apple "
                        "silicon and macOS); use trainer.device=auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise AetlError(f"unknown trainer.device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)
