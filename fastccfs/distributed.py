"""torch.distributed for every stage, launched by torchrun (`torchrun --nproc_per_node N -m fastccfs run …`).

A plain process is a world of one and every helper here is then a no-op. Under torchrun (WORLD_SIZE > 1
in the environment) the process joins the job once (NCCL on GPUs, gloo on CPUs, env:// rendezvous, so
multi-node and SLURM work through torchrun's own flags) and:
  - training (teacher, filters) is DistributedDataParallel, each rank a share of every epoch of the
    loaders' seeded order, the batch rule giving the global batch;
  - inference is sharded and gathered back into the unsharded order (trainer.predict);
  - the run directory is written by rank 0 only, through collective writes named as such at their call
    (`via=rank0_path`: all ranks reach the write, rank 0 writes, all ranks see it after), so the
    stages' "already done?" checks agree on every rank and resume works as in one process;
  - distillation batches and evaluation runs are dealt to the ranks (`deal`), each done whole, results
    gathered.
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
def rank0_path(path):
    """A collective write: every rank calls it at the same point of the program. Rank 0 writes PATH
    atomically (fastccfs.atomic.atomic_path); the other ranks write into a private temporary that is
    discarded; all continue once PATH is in place. Without torchrun it is atomic_path.
    Pass it as `via=` to the writers of fastccfs.atomic."""
    from fastccfs.atomic import atomic_path

    if not active():
        with atomic_path(path) as tmp:
            yield tmp
        return
    barrier()  # every rank has made its "is it done?" checks before the file appears
    if is_main():
        with atomic_path(path) as tmp:
            yield tmp
    else:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="fastccfs-rank-") as private:
            yield Path(private) / Path(path).name
    barrier()


def deal(jobs: list, work, per_rank: int = 1):
    """Independent JOBS dealt to the ranks in rounds of PER_RANK jobs each (under torchrun; one process:
    PER_RANK jobs per round); yields each round's results, in job order, on every rank. work(list of this
    rank's jobs in the round) → their results; each job's result must depend on the job alone, so that the
    results are those of one process."""
    size = per_rank * world_size()
    for first in range(0, len(jobs), size):
        mine = jobs[first:first + size][rank() * per_rank:(rank() + 1) * per_rank]
        yield [result for part in gather(work(mine) if mine else []) for result in part]


def describe() -> dict:
    """How the process ran, for timings.json and phases.json."""
    return {"world_size": world_size(), "backend": dist.get_backend() if active() else None}
def resolve_device(name: str | None) -> torch.device:
    """The device to run on (default: CUDA when present); a one-line error for one that is not there."""
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as e:
        raise UserError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device


