"""Per-class top-k selection in tiers: the fine stage of CCFS as one O(N log N/C) numba pass.

Every sample has a tier (0 = candidate, 1 and 2 = fill sources in that order, 3 = never) and a key
(smaller = taken first). Class c takes k[c] samples, exhausting tier 0 before tier 1 before tier 2;
within a tier, by (key, index) ascending. fastccfs.selection.topk_numpy is the reference it is
tested against.
"""
import numpy as np
from numba import njit, prange

NEVER = 3


@njit(cache=True)
def _group_by_class(labels, num_classes):
    """Indices grouped by class, ascending within each class (a counting sort), and group offsets."""
    counts = np.zeros(num_classes + 1, np.int64)
    for i in range(labels.shape[0]):
        counts[labels[i] + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    grouped = np.empty(labels.shape[0], np.int64)
    for i in range(labels.shape[0]):
        c = labels[i]
        grouped[cursor[c]] = i
        cursor[c] += 1
    return grouped, offsets


@njit(parallel=True, cache=True)
def topk_per_class(labels, tier, key, k):
    """→ (taken, counts, from_tier): taken[c, :counts[c]] are class c's picks in order of preference;
    from_tier[c, t] counts the picks of tier t."""
    num_classes = k.shape[0]
    grouped, offsets = _group_by_class(labels, num_classes)
    width = max(1, k.max())
    taken = np.full((num_classes, width), -1, np.int64)
    counts = np.zeros(num_classes, np.int64)
    from_tier = np.zeros((num_classes, NEVER), np.int64)
    for c in prange(num_classes):
        members = grouped[offsets[c]:offsets[c + 1]]
        for t in range(NEVER):
            if counts[c] >= k[c]:
                break
            pool = members[tier[members] == t]  # still ascending by index
            # A stable sort by key keeps ties in index order: the (key, index) rule.
            order = np.argsort(key[pool], kind="mergesort")
            n = min(k[c] - counts[c], pool.shape[0])
            for j in range(n):
                taken[c, counts[c] + j] = pool[order[j]]
            counts[c] += n
            from_tier[c, t] = n
    return taken, counts, from_tier
