"""The evaluation stage: each evaluation model trained from scratch on the final set with KD, num_eval
seeds each, one file per run (a resumed run redoes only the runs that had not finished).

Runs go N at a time (`--eval-jobs`, fastccfs.eval_jobs), each with its share of the cores; under torchrun
the runs are dealt to the ranks and each rank runs its share N at a time. The KD targets are the
teacher's on each run's own crops (`--soft-labels online`) or the shared soft labels computed once
(`shared`, fastccfs.soft_labels).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from fastccfs import distributed, eval_jobs
from fastccfs.atomic import write_json
from fastccfs.context import Context, train_on
from fastccfs.distributed import rank0_path
from fastccfs.loaders.sets import synthetic_arrays
from fastccfs.plan import eval_jobs_for_run
from fastccfs.rundir import Layout, RunDir
from fastccfs.resources import human
from fastccfs.soft_labels import SharedLabels, generate, nbytes
from fastccfs.synthetic import SyntheticSet


@dataclass
class EvalState:
    """What an evaluation run needs, picklable: worker processes rebuild their Context from it."""

    cfg: object
    train_path: str
    test_path: str
    device: str
    progress: bool
    final: SyntheticSet
    teacher_state: dict | None  # the teacher's weights (online soft labels), else None
    shared: SharedLabels | None
    epochs: int


def live_state(state: EvalState):
    """(Context, final set, teacher, shared labels, epochs) in this process."""
    from fastccfs.models import create_model
    from fastccfs.store import Store

    train, test = Store.open(state.train_path), Store.open(state.test_path)
    ctx = Context(state.cfg, None, train, test, torch.device(state.device), state.progress)
    teacher = None
    if state.teacher_state is not None:
        teacher = create_model(state.cfg.teacher_model, train.num_classes, train.image_size[0])
        teacher.load_state_dict(state.teacher_state)
        teacher.eval()
    return ctx, state.final, teacher, state.shared, state.epochs


def evaluation_run(live, job, slot) -> tuple:
    """One evaluation run (model NAME, seed index R) → (name, r, wall seconds, its record)."""
    ctx, final, teacher, shared, epochs = live
    cfg = ctx.cfg
    name, r = job
    t = time.perf_counter()
    model, history = train_on(ctx, final, name, ctx.seed("eval", r), teacher, epochs, evaluate=True,
                              desc=f"eval {name} {r + 1}/{cfg.num_eval}", distributed=False, shared=shared,
                              position=slot)
    accs = history["test_acc"]
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return (name, r, time.perf_counter() - t,
            {"final_epoch_acc": accs[max(accs)], "max_last_20pct_acc": max(accs.values()),
             "test_acc_by_epoch": {str(e): a for e, a in accs.items()}, "loss_by_epoch": history["loss"],
             "weights_sha256": digest.hexdigest(), "seconds": history["seconds"], "batch_size": history["batch_size"],
             "threads": torch.get_num_threads()})


def shared_labels(ctx: Context, final: SyntheticSet, epochs: int) -> SharedLabels:
    cfg = ctx.cfg
    return SharedLabels(str(ctx.out), epochs, len(final), ctx.num_classes, cfg.soft_labels_topk,
                        ctx.seed("soft_labels"))


def soft_label_bytes(cfg, final_size: int, classes: int) -> int:
    """What `--soft-labels shared` stores in the run folder (0 for online)."""
    if cfg.soft_labels != "shared" or not cfg.num_eval:
        return 0
    return nbytes(cfg.eval_epochs or cfg.epochs, final_size, classes, cfg.soft_labels_topk)


def stage_eval(ctx: Context, final: SyntheticSet, teacher, run_dir: RunDir) -> dict:
    """Train each evaluation model from scratch on the final set with KD, num_eval seeds each."""
    cfg, out = ctx.cfg, ctx.out
    epochs = cfg.eval_epochs or cfg.epochs
    jobs = [(name, r) for name in cfg.eval_models for r in range(cfg.num_eval)
            if not run_dir.eval_done(name, r)]
    shared = None
    if cfg.soft_labels == "shared":
        shared = shared_labels(ctx, final, epochs)
        done = distributed.broadcast(shared.epochs_done() if distributed.is_main() else None) if jobs else epochs
        if done < epochs:  # rank 0 hashed the stored epochs once; every rank acts on its answer
            ctx.log(f"shared soft labels: the teacher on {epochs} epochs of crops of {len(final)} images "
                    f"({human(soft_label_bytes(cfg, len(final), ctx.num_classes))} in {Layout.SOFT_LABELS})")
            t = time.perf_counter()
            images, _, _ = synthetic_arrays(ctx.train, **final.loader_arguments())
            generate(shared, teacher, images, ctx.train.mean, ctx.train.std, ctx.device, cfg.amp,  # every rank
                     batch=ctx.eval_batch, progress=ctx.progress, done=done)  # its share of the epochs
            distributed.barrier()
            run_dir.timings["soft_labels"] = round(time.perf_counter() - t, 3)
    if jobs:
        per_rank = -(-len(jobs) // distributed.world_size())
        decision = distributed.broadcast(  # rank 0 decides, every rank runs its choice
            eval_jobs_for_run(cfg, ctx, len(final), per_rank) if distributed.is_main() else None)
        run_dir.decisions["eval_jobs"] = decision
        ctx.log(f"evaluation: {len(jobs)} run(s), {decision['jobs']} at a time per process "
                f"({decision['threads_per_job']} thread(s) each; {decision['source']})")
        state = EvalState(ctx.cfg, str(ctx.train.path), str(ctx.test.path), str(ctx.device), ctx.progress, final,
                          None if teacher is None or shared is not None
                          else {k: v.detach().cpu() for k, v in teacher.state_dict().items()}, shared, epochs)
        _run_jobs(ctx, jobs, state, decision, run_dir)
    results = {}
    for name in cfg.eval_models:
        runs = [json.loads(run_dir.eval_file(name, r).read_text()) for r in range(cfg.num_eval)]
        results[name] = {key: _mean_std([run[key] for run in runs]) for key in ("final_epoch_acc", "max_last_20pct_acc")}
        results[name]["runs"] = len(runs)
    summary = {"set_size": len(final), "ipc": cfg.ipc, "epochs": epochs, "soft_labels": cfg.soft_labels,
               "labels": {"final_epoch_acc": "test accuracy after the last epoch",
                          "max_last_20pct_acc": f"max test accuracy over epochs > {cfg.eval_from:g}·epochs (the "
                                                "reference's report with the default 0.8)"},
               "models": results}
    write_json(out / Layout.EVAL, summary, via=rank0_path)
    return summary


def _run_jobs(ctx: Context, jobs: list, state: EvalState, decision: dict, run_dir: RunDir) -> None:
    """The runs N at a time per process (and dealt to the ranks under torchrun); each round's records are
    written as it ends (collective writes), so a killed run redoes only the runs of its last round."""
    n = decision["jobs"]

    def run_mine(mine):  # this rank's runs of a round, side by side; each record says which rank ran it
        ctx.log("evaluation: " + ", ".join(f"{name} {r + 1}/{ctx.cfg.num_eval}" for name, r in mine) +
                f" on {len(state.final)} images for {state.epochs} epochs{ctx.work.left() if ctx.work else ''}")
        return [(name, r, wall, {**record, "rank": distributed.rank()}) for name, r, wall, record in workers.run(mine)]

    with eval_jobs.Workers(n, evaluation_run, state, live_state, decision["threads_per_job"]) as workers:
        t = time.perf_counter()
        for records in distributed.deal(jobs, run_mine, per_rank=n):
            for name, r, wall, record in records:
                write_json(run_dir.eval_file(name, r), {**record, "wall_s": round(wall, 3)}, via=rank0_path)
            wall, t = time.perf_counter() - t, time.perf_counter()
            # The stage's wall-clock, summed over its rounds (and the attempts of a resumed run); each run's
            # own time is in its record (runs side by side overlap: their sum is not the stage's time).
            run_dir.timings["evaluation"] = round(run_dir.timings.get("evaluation", 0.0) + wall, 3)
            if ctx.work:  # the rate of the rounds so far says how long the rest will take
                ctx.work.finished(len(records) * len(state.final) * state.epochs, wall)
            run_dir.save_timings()


def _mean_std(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None, "values": values.tolist()}
