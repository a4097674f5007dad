"""torch.distributed for every stage, launched by torchrun (`torchrun --nproc_per_node N -m fastccfs run …`).

A plain process is a world of one and every helper here is then a no-op. Under torchrun (WORLD_SIZE > 1
in the environment) the process joins the job once (NCCL on GPUs, gloo on CPUs, env:// rendezvous, so
multi-node and SLURM work through torchrun's own flags) and:
  - training (teacher, filters) is DistributedDataParallel, each rank a share of every epoch of the
    loaders' seeded order, the batch rule giving the global batch;
  - inference is sharded and gathered back into the unsharded order (trainer.predict);
  - the run directory is written by rank 0 only: `writes_by_rank0(folder)` makes every atomic write
    under that folder a collective step (all ranks reach it, rank 0 writes, all ranks see it after),
    so the stages' "already done?" checks agree on every rank and resume works as in one process;
  - distillation batches and evaluation runs are spread over ranks, each done whole, results gathered.
Collectives time out after $FASTCCFS_DIST_TIMEOUT seconds (default 1800): a rank that died leaves the
others with a clear error instead of a hang (torchrun also stops them when one rank fails).
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from fastccfs.errors import UserError


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def timeout_s() -> float:
    return float(os.environ.get("FASTCCFS_DIST_TIMEOUT", "1800"))


def init(device: str | None = None) -> str | None:
    """Join the torchrun job (once); returns the device this rank uses ("cuda:<local rank>" on GPUs),
    or DEVICE unchanged in a plain process."""
    if not launched():
        return device
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if not dist.is_initialized():
        for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise UserError(f"WORLD_SIZE is set but {name} is not: start distributed runs with torchrun "
                                "(torchrun --nproc_per_node N -m fastccfs run …)")
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s()))
    if cuda:
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj):
    """Rank 0's OBJ on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's OBJ, in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t)
    return t


@contextmanager
def rank0_first():
    """Rank 0 runs the block first (e.g. decoding a dataset into the shared cache), the others after it,
    finding its result."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


@contextmanager
def writes_by_rank0(folder):
    """Within the block, atomic writes under FOLDER are made by rank 0 only (fastccfs.atomic)."""
    from fastccfs import atomic

    if not active():
        yield
        return
    atomic.GATES.append((os.path.abspath(folder), is_main, barrier))
    try:
        yield
    finally:
        atomic.GATES.pop()


def mine(items: list) -> list:
    """This rank's share of a list of independent jobs (round-robin)."""
    return items[rank()::world_size()]


def describe() -> dict:
    """How the process ran, for timings.json and phases.json."""
    return {"world_size": world_size(), "backend": dist.get_backend() if active() else None}
