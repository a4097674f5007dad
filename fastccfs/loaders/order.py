"""Epoch orders and random streams shared by every backend: a (seed, epoch) pair fixes an epoch exactly,
so a resumed run or another backend sees the same order, and DDP ranks agree on it."""
from __future__ import annotations

import numpy as np
import torch


def epoch_generator(seed: int, epoch: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """An independent CPU generator for (seed, epoch, rank, stream)."""
    child = np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(child) & ((1 << 63) - 1))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                pad: bool = False) -> torch.Tensor:
    """Positions 0..n-1 this rank visits in this epoch (CPU int64).

    Every rank draws the same permutation and takes every world_size-th position from its rank on.
    pad=True repeats the first positions so that all ranks get ceil(n / world_size) (training);
    pad=False leaves the last ranks one short (evaluation, where each sample must count once).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    if pad and n % world_size:
        extra = world_size - n % world_size
        order = torch.cat([order, order[:extra].repeat(-(-extra // n))[:extra]])
    return order[rank::world_size]
