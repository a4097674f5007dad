"""Per-class top-k selection in tiers: the fine stage of CCFS in numba (a parallel tier pass, then one
insertion pass over each class).

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
def tiers(labels, candidate, teacher_pred, selected, use_teacher):
    """fastccfs.selection.tiers in one parallel pass; candidate: the coarse rule's mask."""
    n = labels.shape[0]
    out = np.empty(n, np.int8)
    for i in prange(n):
        if selected[i]:
            out[i] = NEVER
        elif use_teacher and teacher_pred[i] != labels[i]:
            out[i] = 2
        elif candidate[i]:
            out[i] = 0
        else:
            out[i] = 1
    return out


@njit(parallel=True, cache=True)
def topk_per_class(labels, tier, key, k):
    """→ (taken, counts, from_tier): taken[c, :counts[c]] are class c's picks in order of preference;
    from_tier[c, t] counts the picks of tier t.

    One pass over each class's members (ascending index) keeps its best k in a sorted buffer by
    insertion: O(n + accepted·k) per class, no per-class sort and no temporary arrays per tier.
    Ties in (tier, key) keep index order: members arrive ascending and an equal pair never moves
    ahead of one already kept.
    """
    num_classes = k.shape[0]
    grouped, offsets = _group_by_class(labels, num_classes)
    width = max(1, k.max())
    taken = np.full((num_classes, width), -1, np.int64)
    counts = np.zeros(num_classes, np.int64)
    from_tier = np.zeros((num_classes, NEVER), np.int64)
    for c in prange(num_classes):
        need = k[c]
        if need == 0:
            continue
        best = taken[c]
        best_tier = np.empty(need, np.int8)
        best_key = np.empty(need, np.float64)
        n = 0
        for m in range(offsets[c], offsets[c + 1]):
            i = grouped[m]
            t = tier[i]
            if t >= NEVER:
                continue
            v = key[i]
            if n == need:
                if not (t < best_tier[n - 1] or (t == best_tier[n - 1] and v < best_key[n - 1])):
                    continue
                n -= 1  # the last one drops out
            pos = n
            while pos > 0 and (t < best_tier[pos - 1] or (t == best_tier[pos - 1] and v < best_key[pos - 1])):
                best[pos] = best[pos - 1]
                best_tier[pos] = best_tier[pos - 1]
                best_key[pos] = best_key[pos - 1]
                pos -= 1
            best[pos] = i
            best_tier[pos] = t
            best_key[pos] = v
            n += 1
        counts[c] = n
        for j in range(n):
            from_tier[c, best_tier[j]] += 1
    return taken, counts, from_tier
