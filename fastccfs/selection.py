"""Selection rules as pure functions over arrays: CCFS's coarse-to-fine step, the per-phase budgets, and
the real-image baselines (random, hardest-first coreset, SelMatch's sliding window).

Conventions: `scores` are difficulties — higher = harder (forgetting counts as published; c-scores and
true-class logits are negated before they get here). fastccfs breaks ties by sample index. The
reference code builds its candidates as `list(set(teacher_correct) & set(misclassified) -
set(selected))` and sorts them stably by score, so its ties follow the iteration order of a CPython set
of ints: deterministic across runs and hash seeds (an int hashes to itself) but not ascending once
indices exceed the set's table size. semantics="reference" (coarse_to_fine_reference) replays it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from fastccfs import registry
from fastccfs.errors import UserError

SEMANTICS = ("fastccfs", "reference")
# Tiers of the fine stage: candidates first, then the fill sources in order.
CANDIDATE, ELIGIBLE_REST, UNSELECTED_REST, NEVER = 0, 1, 2, 3


class Selection(NamedTuple):
    indices: np.ndarray  # int64: class by class, the preferred sample first
    filled: np.ndarray  # int64 per class: picks that were not coarse candidates (shortfall fill)


def phase_budgets(ipc: int, alpha: float, phases: int, semantics: str = "fastccfs") -> tuple[int, list[int]]:
    """(distilled images per class, real images per class for each phase).

    ⌊α·IPC⌋ distilled; the rest split evenly over the phases, the remainder to the first ones
    (IPC 100, α 0.2, J 3 → 20, [27, 27, 26]). semantics="reference" computes the distilled count as the
    reference does, int(IPC·α) in floating point (IPC 90, α 0.7 → 62, where ⌊α·IPC⌋ = 63; the published
    settings give the same counts either way).
    """
    if ipc < 1 or not 0 <= alpha <= 1 or phases < 1:
        raise UserError(f"need IPC ≥ 1, 0 ≤ α ≤ 1 and phases ≥ 1; got IPC {ipc}, α {alpha}, phases {phases}")
    if semantics == "reference":
        distilled = int(ipc * alpha)
    else:
        distilled = math.floor(alpha * ipc + 1e-9)  # 1e-9: α·IPC such as 0.7·90 is 62.99… in floating point
    real = ipc - distilled
    base, extra = divmod(real, phases)
    return distilled, [base + (1 if j < extra else 0) for j in range(phases)]


def _mask(selected, n: int) -> np.ndarray:
    if selected is None:
        return np.zeros(n, bool)
    selected = np.asarray(selected)
    if selected.dtype == bool:
        if selected.shape != (n,):
            raise UserError(f"the selected mask has shape {selected.shape}, expected ({n},)")
        return selected
    mask = np.zeros(n, bool)
    mask[selected.astype(np.int64)] = True
    return mask


def fine_keys(scores: np.ndarray, fine: str, seed: int) -> np.ndarray:
    """Sort keys (smaller = preferred) of the registered fine rule FINE; ties fall to the smaller index."""
    return np.asarray(registry.get("fine", fine)(np.asarray(scores, np.float64), seed), np.float64)


# Built-in fine rules: an entry is f(scores as float64, seed) → one sort key per sample, smaller taken first.
registry.register("fine", "simple", lambda scores, seed: scores)
registry.register("fine", "hard", lambda scores, seed: -scores)
registry.register("fine", "random",
                  lambda scores, seed: np.random.default_rng(seed).permutation(len(scores)).astype(np.float64))


@dataclass(frozen=True)
class CoarseRule:
    """A coarse rule: which samples the filter's predictions make candidates.

    candidates(pred, labels) → bool mask. needs_predictions=False: the mask does not depend on the
    predictions (every sample qualifies), so no inference is needed. not_candidate(labels) → a
    prediction for each sample that makes it no candidate: the value of a sample the lazy inference
    (predict_until_picked) did not predict; by default the true label or -1, whichever qualifies. A rule
    with no such prediction (unpredicted() is None) is inferred over the whole split."""

    candidates: Callable[[np.ndarray, np.ndarray], np.ndarray]
    needs_predictions: bool = True
    not_candidate: Callable[[np.ndarray], np.ndarray] | None = None

    def unpredicted(self, labels: np.ndarray) -> np.ndarray | None:
        if self.not_candidate is not None:
            return np.asarray(self.not_candidate(labels), np.int64)
        labels = np.asarray(labels, np.int64)
        for guess in (labels.copy(), np.full(len(labels), -1, np.int64)):
            if not np.asarray(self.candidates(guess, labels), bool).any():
                return guess
        return None


registry.register("coarse", "misclassified", CoarseRule(lambda pred, labels: pred != labels))
registry.register("coarse", "classified", CoarseRule(lambda pred, labels: pred == labels))
registry.register("coarse", "all", CoarseRule(lambda pred, labels: np.ones(len(labels), bool), needs_predictions=False,
                                             not_candidate=lambda labels: np.full(len(labels), -1, np.int64)))


def eligible_mask(labels, selected, teacher_pred=None) -> np.ndarray:
    """Samples the fine stage may take first: not selected and, with a teacher, classified correctly by it."""
    labels = np.asarray(labels)
    unselected = ~_mask(selected, len(labels))
    return unselected if teacher_pred is None else unselected & (np.asarray(teacher_pred) == labels)


def coarse_candidates(pred, labels, coarse: str) -> np.ndarray:
    """The registered coarse rule COARSE on the filter's predictions (misclassified, classified, all, …)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    return np.asarray(registry.get("coarse", coarse).candidates(pred, labels), bool)


def tiers(pred, labels, selected, teacher_pred=None, coarse="misclassified") -> np.ndarray:
    """Each sample's tier: 0 coarse candidate, 1 other eligible, 2 other unselected, 3 selected."""
    labels = np.asarray(labels)
    n = len(labels)
    unselected = ~_mask(selected, n)
    eligible = eligible_mask(labels, selected, teacher_pred)
    t = np.full(n, NEVER, np.int8)
    t[unselected] = UNSELECTED_REST
    t[eligible] = ELIGIBLE_REST
    t[eligible & coarse_candidates(pred, labels, coarse)] = CANDIDATE
    return t


def coarse_to_fine(pred, labels, scores, selected, k_per_class, teacher_pred=None, coarse: str = "misclassified",
                   fine: str = "simple", seed: int = 0, num_classes: int | None = None, class_names=None,
                   kernel: bool = True, semantics: str = "fastccfs") -> Selection:
    """One CCFS selection step: the new indices, k per class.

    Eligible: not selected and, when teacher_pred is given, classified correctly by the teacher.
    Coarse: candidates are the eligible samples the filter `pred` gets wrong ("misclassified"), right
    ("classified"), or all of them ("all"). Fine, per class: "simple" = ascending difficulty,
    "hard" = descending, "random" = a seeded shuffle; ties by index. A class with fewer candidates
    than k takes them all, then fills from its other eligible samples, then from its other
    unselected samples, in the same fine order; `filled` counts those. A class that still falls
    short is an error naming it. semantics="reference": the reference code's picks exactly
    (coarse_to_fine_reference; `selected` then in the order chosen).
    """
    if semantics == "reference":
        return coarse_to_fine_reference(pred, labels, scores, selected, k_per_class, teacher_pred, coarse, fine, seed,
                                        num_classes)
    if semantics != "fastccfs":
        raise UserError(f"unknown semantics {semantics!r}: use one of {', '.join(SEMANTICS)}")
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    scores = np.asarray(scores, np.float64)
    for name, arr in (("pred", pred), ("scores", scores), ("teacher_pred", teacher_pred)):
        if arr is not None and len(arr) != n:
            raise UserError(f"{name} has {len(arr)} entries but there are {n} labels")
    if np.isnan(scores).any():
        raise UserError(f"scores hold {int(np.isnan(scores).sum())} NaN values: difficulty scores must be numbers")
    num_classes = num_classes or int(labels.max()) + 1
    k = np.broadcast_to(np.asarray(k_per_class, np.int64), (num_classes,)).copy()
    if (k < 0).any():
        raise UserError("k_per_class must be ≥ 0")
    key = fine_keys(scores, fine, seed)
    try:
        from fastccfs.kernels import topk as kernels_topk
    except ImportError:  # no numba (e.g. a bare GPU image): the numpy reference gives the same picks
        kernel = False
    if kernel:
        use_teacher = teacher_pred is not None
        t = kernels_topk.tiers(labels, coarse_candidates(pred, labels, coarse),
                               np.asarray(teacher_pred if use_teacher else labels, np.int64), _mask(selected, n),
                               use_teacher)
        taken, counts, from_tier = kernels_topk.topk_per_class(labels, t, key, k)
    else:
        t = tiers(pred, labels, selected, teacher_pred, coarse)
        taken, counts, from_tier = topk_numpy(labels, t, key, k)
    short = np.flatnonzero(counts < k)
    if len(short):
        c = int(short[0])
        name = f" ({class_names[c]})" if class_names is not None else ""
        raise UserError(f"class {c}{name} has only {int(counts[c])} unselected samples left but needs {int(k[c])}: "
                        "lower the IPC or the number of phases")
    indices = taken[taken >= 0]  # row-major: class by class, preferred first
    return Selection(indices.astype(np.int64), from_tier[:, ELIGIBLE_REST:].sum(axis=1).astype(np.int64))


def coarse_to_fine_reference(pred, labels, scores, selected, k_per_class, teacher_pred=None,
                             coarse: str = "misclassified", fine: str = "simple", seed: int = 0,
                             num_classes: int | None = None) -> Selection:
    """The reference code's selection step (ccfs_*.py: coarse_filtering, selection_score), replayed.

    Its steps, with the same Python objects built the same way, so that ties keep the iteration order
    of its sets: the coarse list is `torch.where(...)[0].tolist()` (ascending); the candidates are
    `list(set(teacher_correct) & set(coarse) - set(selected))` (`-` binds first); per class, in that
    list's order; `sorted(key=score)` (stable) takes the first k. No fill: a class with fewer candidates
    gives fewer (`filled` is 0). fine "random" samples with random.Random(seed) (the reference draws from
    Python's unseeded global generator, which no run can replay). `selected`: indices in the order chosen.
    """
    import random

    labels = np.asarray(labels, np.int64)
    num_classes = num_classes or int(labels.max()) + 1
    k = np.broadcast_to(np.asarray(k_per_class, np.int64), (num_classes,))
    key = fine_keys(scores, fine, seed) if fine != "random" else None
    coarse_list = np.flatnonzero(coarse_candidates(pred, labels, coarse)).tolist()
    selected_idx = (np.flatnonzero(selected) if np.asarray(selected).dtype == bool
                    else np.asarray(selected, np.int64)).tolist() if selected is not None else []
    if teacher_pred is not None:
        teacher_correct = np.flatnonzero(np.asarray(teacher_pred) == labels).tolist()
        target = list(set(teacher_correct) & set(coarse_list) - set(selected_idx))
    else:
        target = list(set(coarse_list) - set(selected_idx))
    per_class = [[] for _ in range(num_classes)]
    for i in target:
        per_class[labels[i]].append(i)
    rng = random.Random(seed)
    picks = []
    for c in range(num_classes):
        if fine == "random":
            picks += rng.sample(per_class[c], min(int(k[c]), len(per_class[c])))
        else:
            picks += sorted(per_class[c], key=lambda i: key[i])[: int(k[c])]
    return Selection(np.asarray(picks, np.int64), np.zeros(num_classes, np.int64))


def predict_until_picked(predict, labels, key, eligible, k_per_class, coarse: str = "misclassified",
                         num_classes: int | None = None, min_round: int = 8):
    """The filter's predictions on just the samples the fine stage can reach: → (pred, inferred).

    Per class, the fine stage takes the first k candidates in fine order (key, then index) among the
    eligible samples (not selected; teacher-correct where the teacher filters), so no sample later in
    that order than the k-th candidate can be picked. This asks `predict` (int64 indices → predicted
    labels, in the same order) about eligible samples class by class in fine order, in rounds sized
    from each class's candidate rate so far, and stops a class once it has k candidates or has none
    left. `pred` holds the predictions where `inferred`, and elsewhere a label that makes the sample no
    candidate, so coarse_to_fine(pred, …) picks exactly what it picks with every sample predicted (a
    class that runs short was predicted whole, so its fill order is the same too). coarse "all" needs
    no predictions at all.
    """
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    num_classes = num_classes or int(labels.max()) + 1
    k = np.broadcast_to(np.asarray(k_per_class, np.int64), (num_classes,))
    rule = registry.get("coarse", coarse)
    pred = rule.unpredicted(labels)  # not predicted = not a candidate
    if pred is None:
        raise UserError(f"the coarse rule {coarse!r} has no prediction that rules a sample out: infer every sample "
                        "(--inference all)")
    inferred = np.zeros(n, bool)
    if not rule.needs_predictions:
        return pred, inferred
    members = np.flatnonzero(np.asarray(eligible, bool))  # ascending: positions tie-break as indices do
    queues = [members[g] for g in _per_class_order(labels[members], np.asarray(key, np.float64)[members],
                                                   num_classes)]
    size = np.array([len(q) for q in queues], np.int64)
    seen = np.zeros(num_classes, np.int64)
    found = np.zeros(num_classes, np.int64)
    while True:
        open_ = (found < k) & (seen < size)
        if not open_.any():
            return pred, inferred
        rate = (found + 1) / (seen + 2)  # Laplace: ½ before anything is seen
        take = np.minimum(np.maximum(np.ceil(1.25 * (k - found) / rate), min_round).astype(np.int64), size - seen)
        rows = np.concatenate([queues[c][seen[c]:seen[c] + take[c]] for c in np.flatnonzero(open_)])
        seen[open_] += take[open_]
        got = np.asarray(predict(rows), np.int64)
        pred[rows], inferred[rows] = got, True
        found += np.bincount(labels[rows][coarse_candidates(got, labels[rows], coarse)], minlength=num_classes)


def topk_numpy(labels, tier, key, k):
    """The reference for kernels.topk.topk_per_class: one lexsort by (class, tier, key, index)."""
    labels, tier, key, k = (np.asarray(a) for a in (labels, tier, key, k))
    num_classes = len(k)
    order = np.lexsort((np.arange(len(labels)), key, tier, labels))
    taken = np.full((num_classes, max(1, int(k.max(initial=0)))), -1, np.int64)
    counts = np.zeros(num_classes, np.int64)
    from_tier = np.zeros((num_classes, NEVER), np.int64)
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    for c in range(num_classes):
        group = order[starts[c]:starts[c + 1]]
        group = group[tier[group] < NEVER][: k[c]]
        taken[c, : len(group)] = group
        counts[c] = len(group)
        from_tier[c] = np.bincount(tier[group], minlength=NEVER)[:NEVER]
    return taken, counts, from_tier


# --------------------------------------------------------------------------------- baselines


def _per_class_order(labels, keys, num_classes):
    """For each class, its indices by (key, index) ascending."""
    order = np.lexsort((np.arange(len(labels)), keys, labels))
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    return [order[starts[c]:starts[c + 1]] for c in range(num_classes)]


def _check_enough(groups, k, what):
    for c, g in enumerate(groups):
        if len(g) < k:
            raise UserError(f"class {c} has {len(g)} samples but {what} needs {k} per class")


def random_per_class(labels, k: int, seed: int = 0, num_classes: int | None = None) -> np.ndarray:
    """k samples of each class, uniformly at random (seeded)."""
    labels = np.asarray(labels, np.int64)
    groups = _per_class_order(labels, fine_keys(np.zeros(len(labels)), "random", seed), num_classes or labels.max() + 1)
    _check_enough(groups, k, "random selection")
    return np.concatenate([g[:k] for g in groups]).astype(np.int64)


def hardest_per_class(labels, scores, k: int, num_classes: int | None = None) -> np.ndarray:
    """The forgetting coreset: the k highest-difficulty samples of each class (ties by index)."""
    labels = np.asarray(labels, np.int64)
    groups = _per_class_order(labels, -np.asarray(scores, np.float64), num_classes or labels.max() + 1)
    _check_enough(groups, k, "the hardest-first coreset")
    return np.concatenate([g[:k] for g in groups]).astype(np.int64)


def window_per_class(labels, scores, k: int, beta: float, num_classes: int | None = None) -> np.ndarray:
    """SelMatch's sliding window: per class, samples by descending difficulty; skip the hardest β
    fraction and take the next k (the window is moved back where it would run past the end)."""
    if not 0 <= beta <= 1:
        raise UserError(f"the window start β must lie in [0, 1], got {beta}")
    labels = np.asarray(labels, np.int64)
    groups = _per_class_order(labels, -np.asarray(scores, np.float64), num_classes or labels.max() + 1)
    _check_enough(groups, k, "the window selection")
    out = []
    for g in groups:
        start = min(int(math.floor(beta * len(g))), len(g) - k)
        out.append(g[start:start + k])
    return np.concatenate(out).astype(np.int64)
