"""Splitting work over processes launched by torchrun (or any launcher that sets the torch.distributed variables).

Each process reads its rank and the world size from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, as
set by ``torchrun --nproc-per-node N``, also across nodes) or from an already initialised process group. Items are
sharded deterministically: sort them, and item ``i`` goes to rank ``i % world_size``. The process group is only used
to exchange small Python objects (per-rank summaries) and for the final barrier, so the CPU backend ``gloo`` is the
default even on GPU nodes; each process still runs its model on its own device (``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, TypeVar

import torch

from .. import devices

__all__ = ["DistContext", "init_distributed", "resolve_device", "shard"]

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from e


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items of `rank`: every `world_size`-th item starting at `rank` (items are used in the given order)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not within world size {world_size}")
    return list(items[rank::world_size])


def resolve_device(device: str, local_rank: int, world_size: int) -> str:
    """The device of this process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` when several processes run (modulo
    the node's GPU count, so that more processes than GPUs share them)."""
    dev = str(device)
    devices.resolve_device(dev)  # a readable error for a device this machine does not have
    if dev == "cuda" and world_size > 1:
        # More processes than GPUs on a node share them round-robin.
        dev = f"cuda:{local_rank % torch.cuda.device_count()}"
    return dev


@dataclass
class DistContext:
    """Rank, world size and local rank of this process; collective helpers that are no-ops in a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False
    backend: Optional[str] = None
    _active: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self._active

    def shard(self, items: Sequence[T]) -> list[T]:
        return shard(items, self.rank, self.world_size)

    def barrier(self) -> None:
        if self._active:
            torch.distributed.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (pickled; keep it small)."""
        if not self._active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self._active and self.initialized_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self._active = False


def init_distributed(backend: str = "gloo", timeout_minutes: float = 24 * 60) -> DistContext:
    """Rank and world size of this process, initialising the process group when the launcher asks for one.

    Single process (no ``WORLD_SIZE`` > 1 in the environment and no initialised group): rank 0 of 1, nothing is
    initialised. `timeout_minutes` bounds how long a rank waits for the others at the final barrier (ranks may
    finish their shares at very different times).
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), False,
                           dist.get_backend(), _active=dist.get_world_size() > 1)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistContext(0, 1, 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}")
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun (or set the "
                               "torch.distributed environment variables)")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("the nccl backend needs CUDA; use --dist-backend gloo")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistContext(rank, world, local_rank, True, backend, _active=True)
