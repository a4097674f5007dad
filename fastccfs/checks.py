"""Every check of a run that can be made before work, behind one entry, validate(cfg, train=None): each
setting's range and choices, the rules between settings (with the method's own and the backend's
library), and, given the train store, the inputs against it. A bad input is found in seconds, not after
a 200-epoch teacher; the run directory is not made until these pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fastccfs import registry, selection
from fastccfs.config import RANGES, RunConfig, choices_of, in_range
from fastccfs.errors import UserError
from fastccfs.models import create_model, load_checkpoint
from fastccfs.rundir import Layout
from fastccfs.scores import load_scores, score_kind
from fastccfs.store import Store

def validate(cfg: RunConfig, train: Store | None = None) -> RunConfig:
    """Every check that can be made before work, in one place: each setting's range (config.RANGES) and
    choices, the rules between settings (check_config), and, given the TRAIN store, the inputs against it
    (check_inputs: class sizes, teacher checkpoint, scores, distilled set). One line naming what is
    wrong, its allowed values and the value given; nothing is written before this passes."""
    for name, rule in RANGES.items():
        value = getattr(cfg, name)
        if value is not None and not in_range(value, rule):
            raise UserError(f"{name} must be {rule}; got {value}")
    for name in ("model", "teacher_model", "eval_models", "coarse", "fine", "method", "loader", "amp", "semantics",
                 "teacher_augment", "score", "init", "inference", "soft_labels"):
        values = getattr(cfg, name)
        for v in values if isinstance(values, list) else [values]:
            if v not in choices_of(name):
                raise UserError(f"unknown {name} {v!r}: use one of {', '.join(choices_of(name))}")
    if cfg.eval_jobs != "auto" and not (cfg.eval_jobs.isdigit() and int(cfg.eval_jobs) >= 1):
        raise UserError(f"eval_jobs must be auto or a whole number ≥ 1; got {cfg.eval_jobs}")
    check_config(cfg)
    if train is not None:
        check_inputs(cfg, train)
    return cfg


def check_config(cfg: RunConfig) -> None:
    """Rules between settings (each setting's own range and choices were checked by validate)."""
    method = registry.get("method", cfg.method)
    if method.needs_scores and cfg.score == "logits":  # the logits score exists only per phase, after training
        raise UserError(f"--method {cfg.method} orders samples by difficulty: use --score forgetting or cscore")
    if cfg.soft_labels_topk is not None and cfg.soft_labels != "shared":
        raise UserError("--soft-labels-topk keeps part of the shared soft labels: add --soft-labels shared")
    if cfg.distilled and cfg.init != "none":
        raise UserError(f"--distilled and --init {cfg.init} both give the starting set: choose one")
    if registry.get("backend", cfg.loader).form is not None:  # its library must be installed
        from fastccfs.formats import require

        require(cfg.loader)
    selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)  # raises on bad IPC / α / J
    if method.check_config is not None:
        method.check_config(cfg)


def check_inputs(cfg: RunConfig, train: Store) -> None:
    """Every input checked against the train store before any training: a bad one is found in seconds,
    not after a 200-epoch teacher (the run directory is not made until these pass)."""
    num_classes = train.num_classes
    method = registry.get("method", cfg.method)
    real = method.real_per_class(cfg) or 0  # None: the whole split, which every class has
    counts = np.bincount(train.labels, minlength=num_classes)
    c = int(counts.argmin())
    if counts[c] < real:
        raise UserError(f"class {c} ({train.classes[c]}) has {counts[c]} train images, but IPC {cfg.ipc} takes {real} "
                        "real ones per class: lower --ipc (or raise --alpha)")
    if cfg.teacher:
        load_checkpoint(create_model(cfg.teacher_model, num_classes, train.image_size[0]), cfg.teacher)
    scores_from_file(cfg, train, teacher_trained_here=not cfg.teacher)
    if method.check_inputs is not None:
        method.check_inputs(cfg, train)


def scores_from_file(cfg: RunConfig, train: Store, teacher_trained_here: bool) -> np.ndarray | None:
    """The --scores file's difficulties for the train store (length, values and kind checked); None when
    the run computes its scores (forgetting counted by its own teacher, or the filter's logits)."""
    if cfg.score == "logits":
        return None
    if cfg.scores:
        kind = score_kind(cfg.scores)
        if kind != cfg.score:
            raise UserError(f"--scores {cfg.scores} holds {kind} scores but --score is {cfg.score}: "
                            f"pass --score {kind}")
        return load_scores(cfg.scores, train)
    if cfg.score == "forgetting" and teacher_trained_here:
        return None
    raise UserError(f"the {cfg.score} score needs --scores FILE (e.g. the published scores), or, for "
                    "forgetting, a teacher trained by this run (omit --teacher); or use --score logits")


def check_resources(cfg: RunConfig, train: Store, out) -> None:
    """What the run will store, against the room it has, before any work: the shared soft labels
    (memory-mapped in the run folder, so the disk holds them; one epoch at a time is read into memory)."""
    from fastccfs.evaluation import soft_label_bytes
    from fastccfs.soft_labels import describe, free_bytes

    real = registry.get("method", cfg.method).real_per_class(cfg)
    final = len(train) if real is None else cfg.ipc * train.num_classes
    need = soft_label_bytes(cfg, final, train.num_classes)
    if not need:
        return
    have = free_bytes(out)
    labels = Path(out) / Layout.SOFT_LABELS
    if (labels.is_file() and labels.stat().st_size >= need) or need <= have:  # generated earlier, or room
        return
    raise UserError(f"--soft-labels shared stores {describe(need)} of teacher logits ({cfg.eval_epochs or cfg.epochs} "
                    f"epochs × {final} images × {train.num_classes} classes, fp16) in {out}, but {describe(have)} "
                    "are free there: pass --soft-labels-topk K, fewer --eval-epochs, or another --out")

