"""Selection on hand-made cases (exact picks), the numba kernel against numpy, and the baselines."""
import time

import numpy as np
import pytest

from fastccfs.errors import UserError
from fastccfs.selection import (coarse_to_fine, fine_keys, hardest_per_class, phase_budgets, predict_until_picked,
                                random_per_class, topk_numpy, window_per_class)
from fastccfs.kernels.topk import topk_per_class

#                 0  1  2  3  4  5  6  7  8  9
LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
PRED = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 1])  # filter gets 0, 1, 3, 4 wrong (class 0); all of class 1 right
SCORES = np.array([5.0, 1.0, 0.0, 1.0, 3.0, 2.0, 2.0, 0.4, 9.0, 1.0])


def pick(**kw):
    args = dict(pred=PRED, labels=LABELS, scores=SCORES, selected=None, k_per_class=2)
    args.update(kw)
    return coarse_to_fine(**args)


@pytest.mark.parametrize("kernel", [True, False])
def test_simple_misclassified_takes_lowest_scores_ties_by_index(kernel):
    # Class 0 candidates 0,1,3,4 with scores 5,1,1,3: the tie 1.0 goes to index 1 before 3.
    # Class 1 has no misclassified sample: filled in simple order, 7 (0.4) then 9 (1.0).
    sel = pick(kernel=kernel)
    assert sel.indices.tolist() == [1, 3, 7, 9]
    assert sel.filled.tolist() == [0, 2]


@pytest.mark.parametrize("kernel", [True, False])
def test_hard_takes_highest_scores_ties_by_index(kernel):
    assert pick(fine="hard", k_per_class=3, kernel=kernel).indices.tolist() == [0, 4, 1, 8, 5, 6]


@pytest.mark.parametrize("kernel", [True, False])
def test_classified_and_all(kernel):
    # classified: class 0's only candidate is 2; fill from 1 (score 1, index 1 < 3).
    sel = pick(coarse="classified", kernel=kernel)
    assert sel.indices.tolist() == [2, 1, 7, 9] and sel.filled.tolist() == [1, 0]
    assert pick(coarse="all", kernel=kernel).indices.tolist() == [2, 1, 7, 9]
    assert pick(coarse="all", kernel=kernel).filled.tolist() == [0, 0]


def test_already_selected_are_excluded_as_mask_or_indices():
    by_mask = pick(selected=np.isin(np.arange(10), [1, 7]))
    by_index = pick(selected=np.array([1, 7]))
    assert by_mask.indices.tolist() == by_index.indices.tolist() == [3, 4, 9, 5]


def test_teacher_filter_and_fill_order():
    # The teacher is wrong on 1 and 3: class 0 candidates are 0 and 4 (scores 5, 3) → 4, 0; then
    # with k = 4 the fill comes from eligible non-candidates (2), then teacher-wrong samples (1, 3).
    teacher = LABELS.copy()
    teacher[[1, 3]] = 1
    sel = pick(teacher_pred=teacher, k_per_class=np.array([4, 1]))
    assert sel.indices.tolist() == [4, 0, 2, 1, 7]
    assert sel.filled.tolist() == [2, 1]


def test_balance_exact_count_per_class_on_random_data():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 5000)
    sel = coarse_to_fine(rng.integers(0, 7, 5000), labels, rng.integers(0, 10, 5000) * 0.2, None, 13,
                         teacher_pred=np.where(rng.random(5000) < 0.9, labels, -1))
    assert np.bincount(labels[sel.indices], minlength=7).tolist() == [13] * 7
    assert len(set(sel.indices.tolist())) == len(sel.indices)


def test_random_fine_is_seeded_and_within_candidates():
    a, b, c = pick(fine="random", seed=3), pick(fine="random", seed=3), pick(fine="random", seed=4, k_per_class=1)
    assert a.indices.tolist() == b.indices.tolist()
    assert set(a.indices[:2].tolist()) <= {0, 1, 3, 4}
    many = {tuple(pick(fine="random", seed=s).indices[:2].tolist()) for s in range(30)}
    assert len(many) > 3, "different seeds give different picks"
    assert c.indices[0] in (0, 1, 3, 4)


def test_shortfall_beyond_the_class_is_an_error_naming_it():
    with pytest.raises(UserError, match=r"class 1 \(dog\) has only 3 unselected samples left but needs 4"):
        pick(selected=np.array([5, 6]), k_per_class=np.array([1, 4]), class_names=["cat", "dog"])


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown coarse rule"):
        pick(coarse="wrong")
    with pytest.raises(UserError, match="unknown fine rule"):
        pick(fine="easiest")
    with pytest.raises(UserError, match="scores has 3 entries"):
        pick(scores=SCORES[:3])
    with pytest.raises(UserError, match="NaN"):
        pick(scores=np.where(LABELS == 0, np.nan, 1.0))


@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_numpy_reference_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(50, 3000)), int(rng.integers(1, 30))
    labels = rng.integers(0, c, n)
    tier = rng.integers(0, 4, n).astype(np.int8)
    key = rng.integers(0, 6, n).astype(np.float64)  # many ties
    k = rng.integers(0, 40, c)
    for got, want in zip(topk_per_class(labels, tier, key, k), topk_numpy(labels, tier, key, k)):
        np.testing.assert_array_equal(got, want)


class Oracle:
    """A filter whose predictions are known in advance; records which samples it was asked about."""

    def __init__(self, pred):
        self.pred, self.asked = np.asarray(pred), []

    def __call__(self, rows):
        self.asked.append(np.asarray(rows).copy())
        return self.pred[rows]


def test_predict_until_picked_asks_in_fine_order_and_stops_at_k():
    # Simple order, class 0: 2 (0.0), 1 (1.0), 3 (1.0), 4 (3.0), 0 (5.0); misclassified: 0, 1, 3, 4.
    # k = 2 → the picks are 1 and 3; with min_round 1 and a first round of 2.5·k = 5 it asks all of class 0
    # at once, so take k = 1 (first round 3: 2, 1, 3 — ties by index) to see the stop.
    oracle = Oracle(PRED)
    pred, inferred = predict_until_picked(oracle, LABELS, SCORES, np.ones(10, bool), [1, 0], min_round=1)
    assert [a.tolist() for a in oracle.asked] == [[2, 1, 3]]
    assert np.flatnonzero(inferred).tolist() == [1, 2, 3]
    assert (pred[~inferred] == LABELS[~inferred]).all()  # not asked → no candidate
    sel = coarse_to_fine(pred, LABELS, SCORES, None, [1, 0])
    assert sel.indices.tolist() == coarse_to_fine(PRED, LABELS, SCORES, None, [1, 0]).indices.tolist() == [1]


def test_predict_until_picked_goes_on_in_rounds_and_predicts_a_short_class_whole():
    # Class 1 has no misclassified sample: every eligible one is asked, so the fill matches.
    oracle = Oracle(PRED)
    eligible = np.ones(10, bool)
    eligible[[4, 8]] = False  # e.g. the teacher gets 4 and 8 wrong
    pred, inferred = predict_until_picked(oracle, LABELS, SCORES, eligible, 2, min_round=1)
    assert np.flatnonzero(inferred).tolist() == [0, 1, 2, 3, 5, 6, 7, 9]
    assert [a.tolist() for a in oracle.asked] == [[2, 1, 3, 0, 7, 9, 5, 6]]  # first round 2.5·k: all there is
    sel = coarse_to_fine(pred, LABELS, SCORES, None, 2, teacher_pred=np.where(eligible, LABELS, 9))
    assert sel.indices.tolist() == [1, 3, 7, 9] and sel.filled.tolist() == [0, 2]


def test_predict_until_picked_sizes_later_rounds_by_the_rate_seen():
    labels = np.zeros(12, np.int64)
    pred = np.zeros(12, np.int64)
    pred[[8, 10]] = 1  # the only misclassified ones, deep in the (index) order
    oracle = Oracle(pred)
    _, inferred = predict_until_picked(oracle, labels, np.arange(12.0), np.ones(12, bool), 2, min_round=1)
    # Round 1: ⌈1.25·2 / ½⌉ = 5 samples, no candidate; rate (0+1)/(5+2) → ⌈17.5⌉, capped at the 7 left.
    assert [a.tolist() for a in oracle.asked] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]
    assert inferred.all()


@pytest.mark.parametrize("coarse", ["misclassified", "classified"])
@pytest.mark.parametrize("fine", ["simple", "hard", "random"])
@pytest.mark.parametrize("seed", range(3))
def test_predict_until_picked_gives_the_picks_of_full_inference(coarse, fine, seed):
    rng = np.random.default_rng(seed)
    n, c = 3000, 7
    labels = rng.integers(0, c, n)
    full = np.where(rng.random(n) < rng.choice([0.3, 0.9, 0.99]), labels, rng.integers(0, c, n))
    teacher = np.where(rng.random(n) < 0.9, labels, (labels + 1) % c)
    scores = rng.integers(0, 20, n) * 0.2
    selected = rng.random(n) < 0.1
    k = rng.integers(0, 60, c)
    key = fine_keys(scores, fine, seed)
    oracle = Oracle(full)
    pred, inferred = predict_until_picked(oracle, labels, key, ~selected & (teacher == labels), k, coarse, c)
    args = dict(labels=labels, scores=scores, selected=selected, k_per_class=k, teacher_pred=teacher, coarse=coarse,
                fine=fine, seed=seed, num_classes=c)
    lazy, every = coarse_to_fine(pred, **args), coarse_to_fine(full, **args)
    np.testing.assert_array_equal(lazy.indices, every.indices)
    np.testing.assert_array_equal(lazy.filled, every.filled)
    asked = np.concatenate(oracle.asked)
    assert len(asked) == len(set(asked.tolist())) == inferred.sum()  # nobody asked twice
    assert not selected[asked].any() and (teacher[asked] == labels[asked]).all()  # only eligible samples


def test_predict_until_picked_needs_nothing_for_coarse_all():
    oracle = Oracle(PRED)
    _, inferred = predict_until_picked(oracle, LABELS, SCORES, np.ones(10, bool), 2, "all")
    assert not oracle.asked and not inferred.any()
    with pytest.raises(UserError, match="unknown coarse"):
        predict_until_picked(oracle, LABELS, SCORES, np.ones(10, bool), 2, "wrong")


def test_selection_scales_linearly():
    """A guard against an accidental O(N²), not a speed target (that lives in benchmarks/): 10× the samples
    (same k) may cost at most 50× the time (linear ≈ 10–20× with cache effects, quadratic ≈ 100×). Both
    sizes are timed in this test, best of 5, on one numba thread (a parallel region's thread wake-ups on a
    loaded machine cost milliseconds that have nothing to do with N), at sizes well above that noise."""
    import numba

    def best_of_5(n):
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 200, n)
        args = (rng.integers(0, 200, n), labels, rng.integers(0, 50, n) * 0.2, None, 27)
        coarse_to_fine(*args)  # compile, warm caches
        times = []
        for _ in range(5):
            t = time.perf_counter()
            coarse_to_fine(*args)
            times.append(time.perf_counter() - t)
        return min(times)

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        small, large = best_of_5(100_000), best_of_5(1_000_000)
    finally:
        numba.set_num_threads(threads)
    assert large / small < 50, (small, large)


def test_phase_budgets():
    assert phase_budgets(100, 0.2, 3) == (20, [27, 27, 26])
    assert phase_budgets(10, 0.3, 3) == (3, [3, 2, 2])  # 0.3·10 is 2.9999… in floating point
    assert phase_budgets(50, 0.0, 4) == (0, [13, 13, 12, 12])
    assert phase_budgets(7, 1.0, 2) == (7, [0, 0])
    with pytest.raises(UserError):
        phase_budgets(10, 1.5, 3)


def test_baselines():
    assert random_per_class(LABELS, 2, seed=0).tolist() == random_per_class(LABELS, 2, seed=0).tolist()
    assert hardest_per_class(LABELS, SCORES, 2).tolist() == [0, 4, 8, 5]
    # Descending difficulty, class 0: 0 (5), 4 (3), 1 (1), 3 (1), 2 (0). β = 0.4 skips two.
    assert window_per_class(LABELS, SCORES, 2, 0.4).tolist() == [1, 3, 6, 9]
    assert window_per_class(LABELS, SCORES, 2, 1.0).tolist() == [3, 2, 9, 7]  # clamped to the end
    with pytest.raises(UserError, match="needs 6 per class"):
        random_per_class(LABELS, 6)


@pytest.mark.parametrize("coarse", ["misclassified", "classified", "all"])
@pytest.mark.parametrize("teacher", [True, False])
def test_tier_kernel_equals_numpy_tiers(coarse, teacher):
    from fastccfs.selection import coarse_candidates, tiers
    from fastccfs.kernels.topk import tiers as tiers_kernel

    rng = np.random.default_rng(7)
    labels, pred, teach = (rng.integers(0, 5, 4000) for _ in range(3))
    selected = rng.random(4000) < 0.2
    want = tiers(pred, labels, selected, teach if teacher else None, coarse)
    got = tiers_kernel(labels, coarse_candidates(pred, labels, coarse), teach, selected, teacher)
    np.testing.assert_array_equal(got, want)
