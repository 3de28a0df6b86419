"""Multi-process training with PyTorch's DistributedDataParallel, launched by `torchrun`.

`torchrun --nproc-per-node N -m audioscene train ...` sets `RANK`, `WORLD_SIZE` and `LOCAL_RANK`;
`setup` then joins the process group (NCCL on GPUs, gloo on CPU) and picks this rank's device.
Without those variables everything runs as one process. Multi-node: `torchrun --nnodes M
--rdzv-backend c10d --rdzv-endpoint HOST:PORT --nproc-per-node N -m audioscene train ...`.

How the work is split between ranks is planned in `batches`. The rank is known in one place: the
`Context` that `setup` returns (and, before `setup`, `launch_rank()`, which reads torchrun's
variables).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: torch.device, timeout_s: float = 600.0) -> Context:
    """Join the process group when launched by torchrun (a no-op context otherwise). A rank that
    dies makes the others' next collective fail; `timeout_s` bounds how long they wait."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(device=device)
    rank, local_rank = launch_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    log.debug("rank %d of %d on %s", rank, world_size, device)
    return Context(rank, world_size, local_rank, device)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def gather_rows(context: Context, indices: np.ndarray, rows: np.ndarray, n_total: int) -> np.ndarray | None:
    """Rows computed on each rank for `indices`, assembled in index order on rank 0 (None elsewhere)."""
    if not context.distributed:
        out = np.empty((n_total, *rows.shape[1:]), rows.dtype)
        out[indices] = rows
        return out
    parts = [None] * context.world_size if context.is_main else None
    dist.gather_object((indices, rows), parts, dst=0)
    if not context.is_main:
        return None
    out = np.empty((n_total, *rows.shape[1:]), rows.dtype)
    for part_indices, part_rows in parts:
        out[part_indices] = part_rows
    return out


def coverage_of(seen: list, expected: int, context: Context) -> dict | None:
    """Clips trained on in the epoch over all ranks: how many, how many distinct, and how many of
    the `expected` were missed (corrupt shard clips skipped in any worker); rank 0 only."""
    if context.distributed:
        parts = [None] * context.world_size if context.is_main else None
        dist.gather_object(seen, parts, dst=0)
        if not context.is_main:
            return None
        seen = [item for part in parts for item in part]
    missed = max(expected - len(seen), 0)
    if missed:
        log.warning("%d of %d clips were skipped this epoch (corrupt clips, see the warnings above)", missed, expected)
    return {"clips": len(seen), "distinct": len(set(seen)), "missed": missed}


def sum_over_ranks(value: float, context: Context) -> float:
    """`value` summed over all ranks (every rank gets the sum)."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item())
