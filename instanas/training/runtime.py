"""Where training runs: one process, or data-parallel workers under ``torchrun`` (gloo on CPU, NCCL on CUDA)."""


from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Workers:
    """This process's place among the data-parallel workers (one process when not under ``torchrun``)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP when distributed; unused parameters are expected, since each batch runs only selected modules."""
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def total(self, values: list[float]) -> list[float]:
        """Sum over workers."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def union(self, items: set) -> set:
        """The union over workers of a set of picklable items."""
        if self.world == 1:
            return items
        gathered: list[set | None] = [None] * self.world
        dist.all_gather_object(gathered, items)
        return set().union(*gathered)


@contextmanager
def workers_for(device: str) -> Iterator[Workers]:
    """Join the ``torchrun`` process group if there is one; leave it at the end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Workers(device=torch.device(device))
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Workers(dist.get_rank(), world, torch.device(f"cuda:{local}" if cuda else "cpu"))
    finally:
        dist.destroy_process_group()
