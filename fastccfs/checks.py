"""Every check of a run that can be made before work, behind one entry, validate(cfg, train=None): each
setting's range and choices, the rules between settings (with the method's own and the backend's
library), and, given the train store, the inputs against it. A bad input is found in seconds, not after
a 200-epoch teacher; the run directory is not made until these pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fastccfs import registry, selection
from fastccfs.config import RANGES, RunConfig, choices_of, in_range, range_error
from fastccfs.errors import UserError
from fastccfs.models import create_model, load_checkpoint
from fastccfs.rundir import Layout
from fastccfs.scores import load_scores, score_kind
from fastccfs.store import Store

def validate(cfg: RunConfig, train: Store | None = None, test: Store | None = None) -> RunConfig:
    """Every check that can be made before work, in one place: each setting's range (config.RANGES) and
    choices, the rules between settings (check_config), and, given the TRAIN store, the inputs against it
    (check_inputs: class sizes, teacher checkpoint, scores, distilled set). One line naming what is
    wrong, its allowed values and the value given; nothing is written before this passes."""
    for name, rule in RANGES.items():
        value = getattr(cfg, name)
        if value is not None and not in_range(value, rule):
            raise UserError(range_error(name, rule, value))
    for name in ("model", "teacher_model", "eval_models", "coarse", "fine", "method", "loader", "amp", "semantics",
                 "teacher_augment", "score", "init", "inference", "soft_labels"):
        values = getattr(cfg, name)
        for v in values if isinstance(values, list) else [values]:
            if v not in choices_of(name):
                raise UserError(f"unknown {name} {v!r}: use one of {', '.join(choices_of(name))}")
    if cfg.eval_jobs != "auto" and not (cfg.eval_jobs.isdigit() and int(cfg.eval_jobs) >= 1):
        raise UserError(f"eval_jobs must be auto or a whole number ≥ 1; got {cfg.eval_jobs}")
    check_config(cfg)
    if test is not None and not len(test):
        raise UserError(f"the test split of {cfg.dataset} is empty (a train-only folder): a run tests its filters and "
                        "evaluation models on it; give the dataset a val/ or test/ folder")
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
    if cfg.num_eval and not cfg.eval_models:
        raise UserError("--eval-models is empty: name at least one model (e.g. resnet18), or pass --num-eval 0")
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
    if cfg.soft_labels_topk is not None and cfg.soft_labels_topk > num_classes:
        raise UserError(f"soft_labels_topk must be ≤ the number of classes ({num_classes}); got {cfg.soft_labels_topk}")
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


def check_resources(cfg: RunConfig, train: Store, test: Store, out, device="cpu") -> None:
    """What the run will write and hold, against the room it has, before any work (one line when it does
    not fit): on disk, the shared soft labels (memory-mapped in the run folder), a teacher checkpoint
    trained here, the distilled part made here (its batches, its arrays, its image folder, the starting
    and final sets that copy it) and the records; in memory, the tensor loader's splits on the device."""
    from fastccfs.evaluation import soft_label_bytes
    from fastccfs.resources import free_disk, human, require_disk, require_memory

    out = Path(out)
    real = registry.get("method", cfg.method).real_per_class(cfg)
    final = len(train) if real is None else cfg.ipc * train.num_classes
    labels = soft_label_bytes(cfg, final, train.num_classes)
    if (out / Layout.SOFT_LABELS).is_file() and (out / Layout.SOFT_LABELS).stat().st_size >= labels:
        labels = 0  # generated earlier
    free = free_disk(out)
    if labels > free:
        raise UserError(f"--soft-labels shared stores {human(labels)} of teacher logits ({cfg.eval_epochs or cfg.epochs} "
                        f"epochs × {final} images × {train.num_classes} classes, fp16) in {out}, but "
                        f"{human(free)} are free there: pass --soft-labels-topk K, fewer --eval-epochs, or "
                        "another --out")
    parts = {"shared soft labels": labels, "records": len(train) * 8 * 4 + (8 << 20)}
    if not cfg.teacher and not (out / Layout.TEACHER).is_file():
        model = create_model(cfg.teacher_model, train.num_classes, train.image_size[0])
        parts["teacher checkpoint"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    distilled = 0 if real is None else cfg.ipc - real  # synthetic images per class (the method's real ones aside)
    if distilled and not (out / Layout.START).is_file():
        copies = 2 if cfg.distilled else 5  # made here: batches, distilled.npz, image folder; then S0 and S
        parts["distilled part"] = copies * distilled * train.num_classes * int(np.prod(train.images.shape[1:]))
    require_disk(sum(parts.values()), out, "the run (" + ", ".join(f"{k} {human(v)}" for k, v in parts.items() if v)
                 + ")", "free some space or pass another --out")
    if cfg.loader == "tensor":  # the train and test splits, whole, as uint8 tensors on the device
        require_memory(train.images.nbytes + test.images.nbytes, device,
                       f"the tensor loader (the {cfg.dataset} train and test splits on the device)",
                       "pass --loader ffcv (images read from disk), or use a machine with more memory")
