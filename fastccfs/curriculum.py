"""The CCFS method's own stages: the starting set (the distilled part: read, or distilled here with CDA;
or real images in its place) and the J curriculum phases (train a filter on the current set, predict
what the fine stage can reach, select k per class), each phase resumable from its files."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from fastccfs import distributed, registry, selection
from fastccfs.atomic import save_arrays, write_json
from fastccfs.distributed import rank0_path
from fastccfs.config import RunConfig
from fastccfs.context import Context, train_on
from fastccfs.errors import UserError
from fastccfs.models import folded
from fastccfs.rundir import Layout, RunDir
from fastccfs.scores import logit_difficulty
from fastccfs.synthetic import SyntheticSet
from fastccfs.trainer import accuracy, predict

def distill_config(cfg: RunConfig):
    from fastccfs.cda import dataset_defaults

    dc = dataset_defaults(cfg.dataset)
    for name in ("iterations", "lr", "r_bn"):
        if getattr(cfg, f"distill_{name}") is not None:
            setattr(dc, name, getattr(cfg, f"distill_{name}"))
    dc.seed = cfg.seed
    return dc


def stage_start(ctx: Context, scores: np.ndarray | None, teacher) -> SyntheticSet:
    """The starting set S0: the distilled part (α·IPC per class: read, or distilled here with the
    teacher), or real images in its place."""
    cfg, out = ctx.cfg, ctx.out
    path = out / Layout.START
    if not path.is_file():
        per_class, _ = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
        empty = np.zeros((0, *ctx.train.images.shape[1:]), np.uint8), np.zeros(0, np.int64)
        images, labels, real = *empty, np.zeros(0, np.int64)
        labels_all = ctx.train.labels
        if per_class and cfg.init == "none":
            from fastccfs.distilled import read_distilled

            source = cfg.distilled
            if not source:
                from fastccfs.cda import distill

                ctx.log(f"distilled part: recovering {per_class} images per class from the teacher (CDA)")
                source = distill(teacher, ctx.train.classes, per_class, ctx.train.image_size[0], ctx.train.mean,
                                 ctx.train.std, distill_config(cfg), out / Layout.DISTILLED, ctx.device, ctx.progress)
            images, labels = read_distilled(source, ctx.train.classes, per_class, ctx.train.images.shape[1:],
                                            name_order="string" if cfg.semantics == "reference" else "numeric")
        elif per_class and cfg.init == "random":
            real = selection.random_per_class(labels_all, per_class, ctx.seed("init"), ctx.num_classes)
        elif per_class and cfg.init == "window":
            if scores is None:
                raise UserError("--init window orders samples by difficulty: it needs --score forgetting or cscore")
            real = selection.window_per_class(labels_all, scores, per_class, cfg.beta, ctx.num_classes)
        save_arrays(path, via=rank0_path, distilled_images=images, distilled_labels=labels, real_indices=real)
    with np.load(path) as data:
        return SyntheticSet(data["distilled_images"], data["distilled_labels"], data["real_indices"])



@dataclass
class PhaseResult:
    indices: np.ndarray  # the picks, class by class, preferred first
    filled: np.ndarray  # per class: picks that were not coarse candidates
    difficulty: np.ndarray  # the picks' difficulties
    record: dict  # what phases.json keeps: sizes, accuracies, counts, seconds
    filter: torch.nn.Module | None = None  # the phase's trained filter (None without a starting set)


def curriculum_phase(ctx: Context, j: int, current: SyntheticSet, k: int, teacher, teacher_pred,
                     scores: np.ndarray | None) -> PhaseResult:
    """Phase j of CCFS: train a filter on the current set, predict the train samples the fine stage can
    reach (or all of them), select k per class. Writes nothing."""
    cfg = ctx.cfg
    labels = ctx.train.labels
    record = {"phase": j, "set_size": len(current), "k_per_class": k, "world_size": distributed.world_size()}
    selected = np.zeros(len(labels), bool)
    selected[current.real_indices] = True
    seconds = {}
    t = time.perf_counter()
    if len(current):
        ctx.log(f"phase {j}/{cfg.phases}: training a {cfg.model} filter on {len(current)} images for {cfg.epochs} "
                f"epochs{ctx.work.left() if ctx.work else ''}")
        filt, history = train_on(ctx, current, cfg.model, ctx.seed("filter", j), teacher, cfg.epochs,
                                  evaluate=False, desc=f"phase {j}/{cfg.phases} filter")
        seconds["train"], t = time.perf_counter() - t, time.perf_counter()
        logits = None
        # The reference's tie order reaches past the first k candidates in (key, index) order: it predicts all.
        lazy = registry.get("coarse", cfg.coarse).unpredicted(labels) is not None  # else every sample is needed
        if cfg.inference == "needed" and lazy and scores is not None and cfg.semantics == "fastccfs":
            eligible = selection.eligible_mask(labels, selected, teacher_pred if cfg.teacher_filter else None)
            key = selection.fine_keys(scores, cfg.fine, ctx.seed("fine", j))
            net = folded(filt.to(ctx.device).eval())  # fold once, not once per round
            pred, inferred = selection.predict_until_picked(lambda rows: _predict_rows(ctx, net, rows), labels, key,
                                                            eligible, k, cfg.coarse, ctx.num_classes)
            record.update(inferred=int(inferred.sum()),
                          inferred_misclassified=int((pred[inferred] != labels[inferred]).sum()))
        else:  # every sample: the full split's accuracy, and the `logits` score needs every logit
            logits, _, _ = predict(filt, ctx.eval_loader(ctx.train), ctx.device, cfg.amp)
            pred = logits.argmax(1)
            record.update(inferred=len(labels), filter_train_acc=float((pred == labels).mean()),
                          misclassified=int((pred != labels).sum()))
        seconds["inference"], t = time.perf_counter() - t, time.perf_counter()
        if cfg.filter_test:  # not part of CCFS's cost, but what Fig. 4a plots
            record["filter_test_acc"] = accuracy(filt, ctx.eval_loader(ctx.test), ctx.device, cfg.amp)
        record.update(batch_size=history["batch_size"],
                      train_images_per_s=history["images"] / max(history["seconds"], 1e-9), train_dtype=history["dtype"])
        seconds["test_eval"], t = time.perf_counter() - t, time.perf_counter()
        coarse = cfg.coarse
    else:  # nothing to train a filter on (α = 0 without --init): the coarse stage has no filter
        seconds.update(train=0.0, inference=0.0)
        logits, pred, coarse, filt = None, labels, "all", None
        record.update(note="empty starting set: no filter, every eligible sample is a candidate")
    difficulty = scores if scores is not None else logit_difficulty(logits, labels) if logits is not None \
        else np.zeros(len(labels))
    chosen = selection.coarse_to_fine(pred, labels, difficulty,
                                      current.real_indices if cfg.semantics == "reference" else selected, k,
                                      teacher_pred=teacher_pred if cfg.teacher_filter else None, coarse=coarse,
                                      fine=cfg.fine, seed=ctx.seed("fine", j), num_classes=ctx.num_classes,
                                      class_names=ctx.train.classes, semantics=cfg.semantics)
    chosen = distributed.broadcast(chosen)  # every rank continues from rank 0's picks
    seconds["selection"] = time.perf_counter() - t
    d = difficulty[chosen.indices]
    record.update(coarse=coarse, selected=len(chosen.indices), filled=int(chosen.filled.sum()),
                  short=int(k * ctx.num_classes - len(chosen.indices)),
                  difficulty={"min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}
                  if len(d) else None, seconds=seconds)
    return PhaseResult(chosen.indices, chosen.filled, d, record, filt)


def stage_phase(ctx: Context, run_dir: RunDir, j: int, current: SyntheticSet, k: int, teacher, teacher_pred,
                scores: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """Phase j, resumable: (its picks, its record), read back when the phase had finished, else computed
    and written (the record last: it marks the phase finished)."""
    if run_dir.phase_done(j):
        return np.load(run_dir.phase_file(j, "npz"))["indices"], json.loads(run_dir.phase_file(j, "json").read_text())
    result = curriculum_phase(ctx, j, current, k, teacher, teacher_pred, scores)
    record, seconds = result.record, result.record["seconds"]
    save_arrays(run_dir.phase_file(j, "npz"), via=rank0_path, indices=result.indices, filled=result.filled,
                difficulty=result.difficulty)
    write_json(run_dir.phase_file(j, "json"), record, via=rank0_path)
    test_acc = f", filter test accuracy {100 * record['filter_test_acc']:.2f} %" if "filter_test_acc" in record else ""
    ctx.log(f"phase {j}: set {len(current)} → +{len(result.indices)} (filled {record['filled']}){test_acc}; "
            f"train {seconds['train']:.1f} s, inference {seconds['inference']:.1f} s "
            f"({record.get('inferred', 0)} images), selection {1000 * seconds['selection']:.1f} ms")
    return result.indices, record


def _predict_rows(ctx: Context, model, rows: np.ndarray) -> np.ndarray:
    """The model's predicted labels for train samples `rows`, in that order."""
    logits, _, ids = predict(model, ctx.eval_loader(ctx.train, indices=rows), ctx.device, ctx.cfg.amp)
    by_id = dict(zip(ids.tolist(), logits.argmax(1).tolist()))
    return np.array([by_id[i] for i in rows.tolist()], np.int64)


def stage_curriculum(ctx: Context, start: SyntheticSet, teacher, teacher_pred, scores, run_dir: RunDir) -> SyntheticSet:
    cfg = ctx.cfg
    _, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    current, records = start, []
    for j, k in enumerate(budgets, 1):
        done = run_dir.phase_done(j)
        t = time.perf_counter()
        picked, record = stage_phase(ctx, run_dir, j, current, k, teacher, teacher_pred, scores)
        records.append(record)
        if not done:  # each part of the phase (a resumed run keeps the times of phases finished before)
            parts = record["seconds"]
            for part in ("train", "inference", "test_eval", "selection"):
                run_dir.timings[f"phase_{j}.{part}"] = round(parts.get(part, 0.0), 3)
            run_dir.timings[f"phase_{j}.other"] = round(time.perf_counter() - t - sum(parts.values()), 3)
            run_dir.save_timings()
        current = SyntheticSet(current.distilled_images, current.distilled_labels,
                               np.concatenate([current.real_indices, picked]))
    write_json(run_dir.path / Layout.PHASES, records, via=rank0_path)
    return current
