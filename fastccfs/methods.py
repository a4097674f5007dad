"""The methods a run can use to build its final set (`--method`): CCFS, and the real-image baselines
(random, the hardest-first forgetting coreset, SelMatch's sliding window, the full train split). Each is
a Method record registered here (fastccfs.registry, kind "method"); the checks, the plan of the work
and the run's orchestration ask the record, never the method's name.

A user's method:

    @fastccfs.register("method", "first")
    def first(cfg, store): ...            # see Method: usually Method.of_real(fn)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fastccfs import registry, selection
from fastccfs.errors import UserError


@dataclass(frozen=True)
class Method:
    """build(ctx, scores, teacher, teacher_pred, run_dir) → the final SyntheticSet.
    real_per_class(cfg) → the real train images each class must hold for it (checked before any
    work), or None for the whole split; filter_sets(cfg, num_classes) → the sizes of the sets it trains
    a filter on, in order (the plan of the run's work); needs_scores: it orders samples by difficulty."""

    build: Callable
    real_per_class: Callable
    filter_sets: Callable = lambda cfg, num_classes: []
    needs_scores: bool = False
    check_config: Callable | None = None  # (cfg) → raises UserError: settings it cannot work with
    check_inputs: Callable | None = None  # (cfg, train store) → raises UserError: inputs it cannot use

    @classmethod
    def of_real(cls, pick: Callable, needs_scores: bool = False) -> "Method":
        """A method that picks IPC real images per class: pick(labels, scores, cfg, num_classes, seed) →
        store indices (the seed: the run's "init" stream)."""
        def build(ctx, scores, teacher, teacher_pred, run_dir):
            from fastccfs.synthetic import SyntheticSet

            if needs_scores and scores is None:
                raise UserError(f"--method {ctx.cfg.method} orders samples by difficulty: use --score forgetting "
                                "or cscore")
            real = np.asarray(pick(ctx.train.labels, scores, ctx.cfg, ctx.num_classes, ctx.seed("init")), np.int64)
            shape = ctx.train.images.shape[1:]
            return SyntheticSet(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), real)

        return cls(build, lambda cfg: cfg.ipc, needs_scores=needs_scores)


def _ccfs_build(ctx, scores, teacher, teacher_pred, run_dir):
    from fastccfs.curriculum import stage_curriculum, stage_start

    with run_dir.timed("distilled_part"):  # built-in CDA, a folder brought, or real images (--init)
        start = stage_start(ctx, scores, teacher)
    return stage_curriculum(ctx, start, teacher, teacher_pred, scores, run_dir)


def _ccfs_real(cfg) -> int:
    """Real images per class: the phases' picks, and the starting set's when it is real (--init)."""
    per_class, _ = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    return cfg.ipc - (per_class if cfg.init == "none" else 0)


def _ccfs_filter_sets(cfg, num_classes: int) -> list[int]:
    per_class, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    return [num_classes * (per_class + sum(budgets[:j])) for j in range(len(budgets))]


def _ccfs_check_config(cfg) -> None:
    if cfg.init == "window" and cfg.score == "logits":
        raise UserError("--init window orders samples by difficulty: it needs --score forgetting or cscore")
    per_class, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    if cfg.ipc == per_class:
        raise UserError(f"alpha {cfg.alpha:g} takes all {cfg.ipc} images per class from the distilled part, leaving no "
                        "real images for the curriculum's phases: lower --alpha below 1")
    if 0 in budgets:
        raise UserError(f"{cfg.phases} phases for {cfg.ipc - per_class} real images per class: phase "
                        f"{budgets.index(0) + 1} would add none; use --phases {cfg.ipc - per_class} or fewer")


def _ccfs_check_inputs(cfg, train) -> None:
    """A distilled set brought by the user is read (and so checked) now, before the teacher trains."""
    per_class, _ = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    if cfg.init == "none" and per_class and cfg.distilled:
        from fastccfs.distilled import read_distilled

        read_distilled(cfg.distilled, train.classes, per_class, train.images.shape[1:],
                       name_order="string" if cfg.semantics == "reference" else "numeric")


registry.register("method", "ccfs", Method(_ccfs_build, _ccfs_real, _ccfs_filter_sets,
                                           check_config=_ccfs_check_config, check_inputs=_ccfs_check_inputs))
registry.register("method", "random", Method.of_real(
    lambda labels, scores, cfg, num_classes, seed: selection.random_per_class(labels, cfg.ipc, seed, num_classes)))
registry.register("method", "coreset", Method.of_real(
    lambda labels, scores, cfg, num_classes, seed: selection.hardest_per_class(labels, scores, cfg.ipc, num_classes),
    needs_scores=True))
registry.register("method", "window", Method.of_real(
    lambda labels, scores, cfg, num_classes, seed: selection.window_per_class(labels, scores, cfg.ipc, cfg.beta,
                                                                              num_classes), needs_scores=True))
registry.register("method", "full", Method(Method.of_real(lambda labels, *_: np.arange(len(labels))).build,
                                           lambda cfg: None))
