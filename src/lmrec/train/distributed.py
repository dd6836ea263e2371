"""Data-parallel training across processes with PyTorch's DistributedDataParallel: the one module that knows
about ranks.

``torchrun --nproc-per-node N -m lmrec train ...`` (or several nodes with torchrun's rendezvous flags) starts
N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. Each
process builds the same model and the same global batches (their order depends only on ``(seed, epoch)``),
trains on its share of every batch (rows ``rank::world``), and DDP averages the gradients, so every process
holds the same weights after every step. Only rank 0 validates (the others receive the monitored value),
writes checkpoints, logs and bundles. The backend is gloo on CPU and NCCL on GPU.

Without those variables (or with ``WORLD_SIZE=1``) nothing here does anything.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lmrec.data.batching import take_rows
from lmrec.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in the job, from torchrun's environment (one process when it is not set)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} is not within WORLD_SIZE={size}")
    return World(rank, size, local)


def is_main() -> bool:
    """True in the process that writes (rank 0), and in a run that is not distributed."""
    return world().is_main


def setup(device: torch.device) -> World:
    """Join the process group once per process (gloo on CPU, NCCL on GPU); returns this process's place."""
    w = world()
    if w.size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(w.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return w


def device_for(device: torch.device) -> torch.device:
    """A GPU run puts each process on its own GPU (``cuda:LOCAL_RANK``)."""
    w = world()
    if w.size > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", w.local_rank)
    return device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _LossModule(nn.Module):
    """``forward(batch)`` = ``loss(net, batch)``: DDP synchronises the gradients of what goes through its
    ``forward``, and the losses call the network's methods (``sequence_states``, ``item_table``), not its
    ``forward``."""

    def __init__(self, net: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss(self.net, batch)


def data_parallel_loss(module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor],
                       device: torch.device) -> Callable[[nn.Module, Any], torch.Tensor]:
    """The loss to call in a distributed run: ``(module, global batch) -> this rank's loss``, through DDP."""
    w = world()
    ddp = nn.parallel.DistributedDataParallel(
        _LossModule(module, loss), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True)  # e.g. a frozen-in-part model, or an ID table a batch does not touch

    def step(_: nn.Module, batch: Any) -> torch.Tensor:
        return ddp(take_rows(batch, slice(w.rank, None, w.size)))

    return step


def too_small(batch: Any, here: World) -> bool:
    """True for a batch too small to give every process a row (the epoch's last, at most): it is skipped
    in a distributed run, since a process with no rows has no loss to average. Never in one process (whose
    batches need not have a length)."""
    return here.size > 1 and len(batch) < here.size


def mean_over_processes(value: float) -> float:
    """The average of a number over all processes (the logged loss of a step)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def from_main(value: float | None) -> float:
    """Rank 0's number on every process (the validation metric only rank 0 computes)."""
    if not dist.is_initialized():
        assert value is not None
        return value
    t = torch.tensor([value if value is not None else 0.0], dtype=torch.float64, device=_collective_device())
    dist.broadcast(t, src=0)
    return float(t.item())


def _collective_device() -> torch.device:
    """NCCL exchanges GPU tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
