"""The teacher stage (loaded, resumed, or trained here with forgetting counts, and its predictions on the
train split) and the scores stage (the difficulties every later stage orders by)."""
from __future__ import annotations

import json

import numpy as np
import torch

from fastccfs.atomic import save_array, save_arrays, write_json
from fastccfs.distributed import rank0_path
from fastccfs.checks import scores_from_file
from fastccfs.context import Context
from fastccfs.models import load_checkpoint, save_checkpoint
from fastccfs.rundir import Layout
from fastccfs.scores import ForgettingCounter
from fastccfs.trainer import Recipe, accuracy, fit, predict

def train_teacher(ctx: Context) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """A teacher trained on the whole train split with CE by the dataset's teacher recipe (SRe²L's squeeze
    step: configs/<dataset>.yaml), counting every sample's forgetting events (Toneva et al.) over those
    presentations: (model, training history, forgetting scores)."""
    cfg = ctx.cfg
    teacher = ctx.model(cfg.teacher_model, ctx.seed("teacher"))
    ctx.log(f"teacher: training {cfg.teacher_model} on {len(ctx.train)} images for {cfg.teacher_epochs} epochs "
            f"({cfg.teacher_augment} crops, lr {cfg.teacher_lr:g}, batch {cfg.teacher_batch_size})"
            f"{ctx.work.left() if ctx.work else ''}")
    counter = ForgettingCounter(len(ctx.train), ctx.device)
    loader = ctx.loader(ctx.train, batch_size=cfg.teacher_batch_size, seed=ctx.seed("teacher"),
                        augment=cfg.teacher_augment)
    recipe = Recipe(cfg.teacher_epochs, cfg.teacher_lr, cfg.momentum, cfg.teacher_weight_decay,
                    min(cfg.teacher_warmup_epochs, cfg.teacher_epochs // 2))
    test_loader = ctx.eval_loader(ctx.test, shard=True) if cfg.teacher_test else None
    history = fit(teacher, loader, recipe, device=ctx.device, amp=cfg.amp, compile=cfg.compile,
                  evaluate=(lambda m: accuracy(m, test_loader, ctx.device, cfg.amp)) if test_loader else None,
                  evaluate_from=-1.0,  # every epoch: the curve that shows whether the teacher converged
                  on_batch=counter.update, progress=ctx.progress, desc="teacher", distributed=True)
    if ctx.work:
        ctx.work.finished(history["images"], history["seconds"])
    return teacher, history, counter.scores(cfg.teacher_epochs)


def stage_teacher(ctx: Context) -> tuple[torch.nn.Module, np.ndarray]:
    """The teacher (loaded, resumed, or trained here with forgetting counts) and its train predictions."""
    cfg, out = ctx.cfg, ctx.out
    teacher = ctx.model(cfg.teacher_model, ctx.seed("teacher"))
    if cfg.teacher:
        load_checkpoint(teacher, cfg.teacher)
    elif (out / Layout.TEACHER).is_file():
        load_checkpoint(teacher, out / Layout.TEACHER)
    else:
        teacher, history, forgetting = train_teacher(ctx)
        # Collective writes (rank0_path): under torchrun every rank reaches them, rank 0 writes.
        save_arrays(out / Layout.FORGETTING, via=rank0_path, scores=forgetting, kind="forgetting")
        write_json(out / Layout.TEACHER_TRAINING, via=rank0_path,
                   obj={key: history[key] for key in ("seconds", "images", "loss", "train_acc", "test_acc")})
        save_checkpoint(teacher, out / Layout.TEACHER, via=rank0_path)  # last: marks the stage finished
    if not (out / Layout.TEACHER_INFO).is_file():
        logits, labels, _ = predict(teacher, ctx.eval_loader(ctx.train), ctx.device, cfg.amp)
        pred = logits.argmax(1)
        test_acc = accuracy(teacher, ctx.eval_loader(ctx.test), ctx.device, cfg.amp)
        save_array(out / Layout.TEACHER_PRED, pred, via=rank0_path)
        write_json(out / Layout.TEACHER_INFO, via=rank0_path, obj={
            "train_acc": float((pred == labels).mean()), "test_acc": test_acc,
            "checkpoint": cfg.teacher or str(out / Layout.TEACHER)})
    info = json.loads((out / Layout.TEACHER_INFO).read_text())
    ctx.log(f"teacher: {cfg.teacher_model}, train accuracy {100 * info['train_acc']:.2f} %, test accuracy "
            f"{100 * info['test_acc']:.2f} % ({info['checkpoint']})")
    teacher.to(ctx.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, np.load(out / Layout.TEACHER_PRED)


def stage_scores(ctx: Context) -> np.ndarray | None:
    """Difficulties aligned to the train store (None: the `logits` score, computed per phase)."""
    cfg, out = ctx.cfg, ctx.out
    if cfg.score == "logits":
        return None
    if not (out / Layout.SCORES).is_file():
        scores = scores_from_file(cfg, ctx.train, teacher_trained_here=(out / Layout.FORGETTING).is_file())
        if scores is None:  # forgetting events counted while the teacher trained here
            scores = np.load(out / Layout.FORGETTING)["scores"].astype(np.float64)
        save_array(out / Layout.SCORES, scores, via=rank0_path)
    return np.load(out / Layout.SCORES)
