"""`fastccfs bench whole`: the time a user waits for — every stage of a CCFS run at the preset's settings,
by fastccfs and by the reference's way, side by side in one run.

Stages: each curriculum phase with its real set size (the filter's training, inference, selection), then
the evaluation: num_eval runs of the evaluation model on the final set's size, with KD. The teacher is a
given checkpoint and the scores a file (the published kind), so teacher training is not in the totals.
  - fastccfs: the code `fastccfs run` executes (curriculum.curriculum_phase, evaluation.stage_eval) with
    its defaults: bf16 where measured faster, the tensor loader, inference of what the fine stage needs,
    `--eval-jobs auto`; the evaluation is measured with both `--soft-labels online` and `shared`.
  - the reference's way (benchmarks/reference_phase.py): fp32, per-sample PIL transforms, a DataLoader
    re-created every epoch with the worker count measured fastest here, the teacher on every batch
    (online), the full split inferred, the runs one after another.
Every training runs M measured epochs (`--measure-epochs`, the schedule compressed into M) and its time is
scaled by epochs / M (`"extrapolated": true`). Identical work is measured once and multiplied, and the
JSON says where: the reference's evaluation runs (one measured, × num_eval: they are the same job with
another seed) and its full-split inference (one measured, × J: the same model and split).

The measurements are kept in WORK/parts/*.json as they finish, so a killed benchmark resumes (a part cut
short is measured again whole).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastccfs.errors import UserError
from fastccfs.machine import cpu_peak_gflops, machine

SOFT_LABEL_MODES = ("online", "shared")


class Parts:
    """Measurements kept in a folder as they finish (the benchmark resumes from them)."""

    def __init__(self, folder: Path, settings: dict):
        from fastccfs.atomic import refuse_other_settings, write_json

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        recorded = folder / "settings.json"
        if recorded.is_file():
            refuse_other_settings(json.loads(recorded.read_text()), settings, f"{folder} holds a benchmark",
                                  "pass another --work")
        else:
            write_json(recorded, settings)
        self.done = {}
        for f in folder.glob("*.json"):
            if f.name != "settings.json":
                try:
                    self.done[f.stem] = json.loads(f.read_text())
                except ValueError:  # damaged: measured again
                    f.unlink()

    def get(self, name: str, measure):
        if name not in self.done:
            from fastccfs.atomic import write_json

            self.done[name] = measure()
            write_json(self.folder / f"{name}.json", self.done[name])
        return self.done[name]


def bench_whole(dataset: str, ipc: int, *, model: str | None = None, measure_epochs: int = 5, teacher_path=None,
                teacher_model: str | None = None, scores_path=None, root=".", cache=None, work=None, seed: int = 0,
                device=None, progress: bool = True, settings: dict | None = None) -> dict:
    """See the module's docstring. settings: run settings over the preset's (e.g. a smaller scale)."""
    from fastccfs import distributed, kernels, selection
    from fastccfs.bench import _bench_teacher, bench_setup
    from fastccfs.config import resolve_run_config
    from fastccfs.context import Context
    from fastccfs.trainer import batch_size_for

    if distributed.launched():
        raise UserError("bench whole compares one process with the reference's way: run it without torchrun")
    for flag, path in (("--teacher", teacher_path), ("--scores", scores_path)):
        if path is None or not Path(path).is_file():
            raise UserError(f"bench whole needs {flag} FILE (a teacher checkpoint and a score file, the published "
                            f"kind: teacher training is not part of the run it measures); {path} is not a file")
    settings = {**(settings or {}), "seed": seed, "filter_test": False, "soft_labels": "online"}
    for name, value in (("model", model), ("teacher_model", teacher_model)):
        if value is not None:
            settings[name] = value
    if model is not None:
        settings["eval_models"] = [model]
    cfg = resolve_run_config(dataset, ipc, None, settings)
    epochs, eval_epochs = cfg.epochs, cfg.eval_epochs or cfg.epochs
    if not 1 <= measure_epochs <= min(epochs, eval_epochs):
        raise UserError(f"--measure-epochs {measure_epochs}: between 1 and the preset's {epochs} epochs")
    per_class, budgets, reference, device, train, test = bench_setup(cfg, dataset, root, cache, device, progress)
    work = Path(work or Path(cache or ".") / f"bench-whole-{dataset}-{ipc}-{cfg.model}")
    parts = Parts(work / "parts", {"dataset": dataset, "ipc": ipc, "model": cfg.model, "measure_epochs": measure_epochs,
                                   "teacher": str(teacher_path), "scores": str(scores_path), "seed": seed,
                                   "device": str(device)})
    cfg.epochs = measure_epochs
    cfg.eval_epochs = measure_epochs
    ctx = Context(cfg, None, train, test, device, progress)
    teacher, teacher_pred, scores, teacher_info = _bench_teacher(ctx, dataset, ipc, teacher_path, None, scores_path)
    kernels.warm_up()
    say = (lambda m: print(f"bench whole: {m}", flush=True)) if progress else (lambda m: None)

    start = selection.random_per_class(train.labels, per_class, seed, train.num_classes)
    workers = parts.get("reference_workers", lambda: _reference_workers(reference, cfg, teacher, train, start, seed,
                                                                        device))
    best_workers = int(min(workers, key=workers.get))
    for j in range(1, cfg.phases + 1):
        set_per_class = per_class + sum(budgets[: j - 1])
        indices = selection.random_per_class(train.labels, set_per_class, seed, train.num_classes)
        batch = cfg.batch_size or batch_size_for(len(indices), len(train))
        say(f"phase {j}: {len(indices)} images, batch {batch}, {measure_epochs} epochs per side")
        parts.get(f"phase_{j}_fast", lambda: _fast_phase(ctx, j, indices, budgets[j - 1], teacher, teacher_pred, scores,
                                                         batch))
        wrong = None if j == 1 else parts.done["phase_1_reference"]["misclassified"]
        parts.get(f"phase_{j}_reference", lambda: _reference_phase(
            reference, cfg, teacher, train, indices, teacher_pred, scores, budgets[j - 1], batch, seed, device,
            best_workers, wrong))
    final = selection.random_per_class(train.labels, ipc, seed + 1, train.num_classes)
    eval_batch = cfg.batch_size or batch_size_for(len(final), len(train))
    for mode in SOFT_LABEL_MODES:
        say(f"evaluation ({mode} soft labels): {cfg.num_eval} runs on {len(final)} images, batch {eval_batch}")
        parts.get(f"eval_fast_{mode}", lambda: _fast_eval(ctx, final, teacher, mode, work / f"eval_{mode}"))
    say("evaluation, the reference's way: one run (the others are the same job)")
    parts.get("eval_reference", lambda: _reference_eval(reference, cfg, teacher, train, test, final, eval_batch, seed,
                                                        device, best_workers))
    return _result(cfg, parts.done, teacher, teacher_info, per_class, budgets, epochs, eval_epochs, measure_epochs,
                   len(final), eval_batch, workers, best_workers, train, device, dataset, ipc)


def _reference_workers(reference, cfg, teacher, train, start, seed, device) -> dict:
    from fastccfs.models import create_model
    from fastccfs.trainer import batch_size_for

    torch.manual_seed(seed)
    net = create_model(cfg.model, train.num_classes, train.image_size[0])
    measured = reference.fastest_workers(net, teacher, train, start, batch_size_for(len(start), len(train)), seed,
                                         device)
    return {str(k): round(v, 3) for k, v in measured.items()}


def _fast_phase(ctx, j, indices, k, teacher, teacher_pred, scores, batch) -> dict:
    from fastccfs.curriculum import curriculum_phase
    from fastccfs.synthetic import SyntheticSet

    train = ctx.train
    current = SyntheticSet(np.zeros((0, *train.images.shape[1:]), np.uint8), np.zeros(0, np.int64), indices)
    result = curriculum_phase(ctx, j, current, k, teacher, teacher_pred, scores)
    return {"seconds": {s: result.record["seconds"][s] for s in ("train", "inference", "selection")},
            "set_size": len(indices), "batch_size": batch, "dtype": result.record["train_dtype"],
            "inferred": result.record.get("inferred")}


def _reference_phase(reference, cfg, teacher, train, indices, teacher_pred, scores, k, batch, seed, device, workers,
                     misclassified: float | None) -> dict:
    """A phase the reference's way. misclassified None: infer the full split (phase 1; the same cost in every
    phase); else the share of phase 1's filter that was wrong stands in for this filter's predictions."""
    from fastccfs.models import create_model

    torch.manual_seed(seed)
    net = create_model(cfg.model, train.num_classes, train.image_size[0])
    t = time.perf_counter()
    reference.train(net, teacher, train, indices, cfg.epochs, cfg.lr, batch, seed, device, weight_decay=cfg.weight_decay,
                    num_workers=workers)
    seconds = {"train": time.perf_counter() - t}
    if misclassified is None:  # the full split through the filter in fp32
        images_og = reference.normalised_tensor(train)  # built once at the reference's start-up: not timed
        t = time.perf_counter()
        logits = reference.infer(net, images_og, device=device)
        seconds["inference"] = time.perf_counter() - t
        predicted = torch.argmax(logits, dim=1).cpu()
    else:  # selection's cost depends on how many are misclassified: phase 1's share, at random
        predicted = torch.as_tensor(train.labels)
        wrong = torch.rand(len(predicted), generator=torch.Generator().manual_seed(seed)) < misclassified
        predicted = torch.where(wrong, (predicted + 1) % train.num_classes, predicted)
    t = time.perf_counter()
    reference.select(predicted, train.labels, np.flatnonzero(teacher_pred == train.labels).tolist(), list(indices),
                     scores, k, train.num_classes)
    seconds["selection"] = time.perf_counter() - t
    return {"seconds": seconds, "set_size": len(indices), "batch_size": batch, "dataloader_workers": workers,
            "misclassified": float((predicted.numpy() != train.labels).mean())}


def _fast_eval(ctx, final, teacher, mode, folder: Path) -> dict:
    """stage_eval as `fastccfs run` calls it, in a fresh run folder (a part cut short starts again)."""
    import dataclasses

    from fastccfs.evaluation import stage_eval
    from fastccfs.rundir import RunDir
    from fastccfs.synthetic import SyntheticSet

    from fastccfs.plan import eval_jobs_for_run

    if folder.exists():
        shutil.rmtree(folder)
    cfg = dataclasses.replace(ctx.cfg, soft_labels=mode)
    eval_jobs_for_run(cfg, ctx, len(final), cfg.num_eval)  # auto's one-time measurement (kept per machine): not timed
    run_dir = RunDir(folder, cfg)
    run_dir.create({})
    try:
        sub = dataclasses.replace(ctx, cfg=cfg, out=folder)
        current = SyntheticSet(np.zeros((0, *ctx.train.images.shape[1:]), np.uint8), np.zeros(0, np.int64), final)
        t = time.perf_counter()
        summary = stage_eval(sub, current, teacher, run_dir)
        seconds = time.perf_counter() - t
    finally:
        run_dir.release()
    jobs = run_dir.decisions["eval_jobs"]["jobs"]
    runs = [json.loads(run_dir.eval_file(cfg.eval_models[0], r).read_text())["seconds"] for r in range(cfg.num_eval)]
    # The training (and test passes) of the runs: each round lasts as long as its slowest run. What is left
    # of the stage's wall-clock (worker start-up, models built) is paid once, not per epoch.
    training = sum(max(runs[i:i + jobs]) for i in range(0, len(runs), jobs))
    return {"seconds": seconds, "training_s": training, "soft_labels_s": run_dir.timings.get("soft_labels", 0.0),
            "eval_jobs": run_dir.decisions.get("eval_jobs"), "runs": cfg.num_eval, "run_seconds": runs,
            "accuracy": {name: m["final_epoch_acc"]["mean"] for name, m in summary["models"].items()}}


def _reference_eval(reference, cfg, teacher, train, test, final, batch, seed, device, workers) -> dict:
    from fastccfs.models import create_model

    torch.manual_seed(seed)
    net = create_model(cfg.eval_models[0], train.num_classes, train.image_size[0])
    t = time.perf_counter()
    reference.train(net, teacher, train, final, cfg.eval_epochs, cfg.lr, batch, seed, device,
                    weight_decay=cfg.weight_decay, num_workers=workers, test_store=test, evaluate_from=cfg.eval_from)
    return {"seconds_one_run": time.perf_counter() - t, "runs_measured": 1, "dataloader_workers": workers}


def _row(fast: float, ref: float) -> dict:
    return {"fast_s": round(fast, 2), "reference_s": round(ref, 2), "ratio": round(ref / fast, 3) if fast else None}


def _result(cfg, done, teacher, teacher_info, per_class, budgets, epochs, eval_epochs, measured, final_size,
            eval_batch, workers, best_workers, train, device, dataset, ipc) -> dict:
    from fastccfs.bench import flops_per_image
    from fastccfs.models import create_model

    scale, eval_scale = epochs / measured, eval_epochs / measured
    stages, image_epochs = {}, {}
    ref_inference = done["phase_1_reference"]["seconds"]["inference"]
    for j in range(1, cfg.phases + 1):
        fast, ref = done[f"phase_{j}_fast"]["seconds"], dict(done[f"phase_{j}_reference"]["seconds"])
        ref.setdefault("inference", ref_inference)
        parts = {"train": _row(fast["train"] * scale, ref["train"] * scale),
                 "inference": _row(fast["inference"], ref["inference"]),
                 "selection": _row(fast["selection"], ref["selection"])}
        stages[f"phase_{j}"] = {**_row(sum(p["fast_s"] for p in parts.values()), sum(p["reference_s"] for p in parts.values())),
                                "set_size": done[f"phase_{j}_fast"]["set_size"], "batch_size": done[f"phase_{j}_fast"]["batch_size"],
                                "dtype": done[f"phase_{j}_fast"]["dtype"], "parts": parts}
        image_epochs[f"phase_{j}"] = done[f"phase_{j}_fast"]["set_size"] * epochs
    ref_eval = done["eval_reference"]["seconds_one_run"] * eval_scale * cfg.num_eval
    for mode in SOFT_LABEL_MODES:
        fast = done[f"eval_fast_{mode}"]
        per_epoch = fast["training_s"] + fast["soft_labels_s"]  # scaled; the rest (start-up) is paid once
        stages[f"evaluation_{mode}"] = {**_row(per_epoch * eval_scale + fast["seconds"] - per_epoch, ref_eval),
                                        "runs": cfg.num_eval, "once_s": round(fast["seconds"] - per_epoch, 2),
                                        "eval_jobs": fast["eval_jobs"], "soft_labels_s": round(fast["soft_labels_s"] * eval_scale, 2),
                                        "accuracy_after_measured_epochs": fast["accuracy"]}
    image_epochs["evaluation"] = final_size * eval_epochs * cfg.num_eval
    phases = [f"phase_{j}" for j in range(1, cfg.phases + 1)]
    total, share = {}, {}
    for mode in SOFT_LABEL_MODES:
        names = [*phases, f"evaluation_{mode}"]
        f, r = sum(stages[n]["fast_s"] for n in names), sum(stages[n]["reference_s"] for n in names)
        total[mode] = _row(f, r)
        share[mode] = {n: {"fast": round(stages[n]["fast_s"] / f, 3), "reference": round(stages[n]["reference_s"] / r, 3)}
                       for n in names}
    net = create_model(cfg.model, train.num_classes, train.image_size[0])
    train_flops = flops_per_image(net, train.image_size[0], True, teacher)
    work_flops = train_flops * sum(image_epochs.values())
    peak = cpu_peak_gflops() if device.type == "cpu" else None
    dtype = done["phase_1_fast"]["dtype"]
    flops = {"train_gflop_per_image_with_teacher": round(train_flops / 1e9, 4), "image_epochs": image_epochs,
             "achieved_gflops": {mode: {"fast": round(work_flops / total[mode]["fast_s"] / 1e9, 1),
                                        "reference": round(work_flops / total[mode]["reference_s"] / 1e9, 1)}
                                 for mode in SOFT_LABEL_MODES}, "cpu_peak": peak}
    if peak:
        fast_peak = peak["bf16_gflops"] if dtype == "bf16" else peak["fp32_gflops"]
        flops["share_of_peak"] = {mode: {"fast": round(flops["achieved_gflops"][mode]["fast"] / fast_peak, 3),
                                         "reference": round(flops["achieved_gflops"][mode]["reference"] /
                                                            peak["fp32_gflops"], 3)} for mode in SOFT_LABEL_MODES}
        flops["note"] = ("training FLOPs (student forward + backward + the teacher's forward per image-epoch) over the "
                         "whole run's time: shared soft labels do fewer teacher forwards than counted here")
    return {"command": "fastccfs " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("fastccfs", "__main__.py")) else None,
            "dataset": dataset, "ipc": ipc, "model": cfg.model, "eval_model": cfg.eval_models[0],
            "settings": {"alpha": cfg.alpha, "phases": cfg.phases, "start_per_class": per_class, "budgets": budgets,
                         "epochs": epochs, "eval_epochs": eval_epochs, "num_eval": cfg.num_eval, "lr": cfg.lr,
                         "final_set": final_size, "eval_batch_size": eval_batch, "seed": cfg.seed},
            "measured_epochs": measured, "extrapolated": measured < max(epochs, eval_epochs),
            "teacher": teacher_info, "device": str(device), "machine": machine(),
            "reference": {"dataloader_workers": best_workers, "workers_measured_one_epoch_s": workers,
                          "eval_runs_measured": 1, "eval_runs_scaled_to": cfg.num_eval,
                          "inference_measured_in_phase": 1, "inference_scaled_to_phases": cfg.phases},
            "stages": stages, "total": total, "share": share, "flops": flops}


def format_whole(result: dict) -> str:
    lines = [f"{result['dataset']} IPC {result['ipc']}: {result['model']} filters and evaluation, "
             f"{result['settings']['epochs']} epochs (measured {result['measured_epochs']}, scaled), "
             f"{result['settings']['num_eval']} evaluation runs — {result['machine'].get('gpu', result['machine']['cpu'])}",
             f"{'stage':<22} {'fastccfs s':>11} {'reference s':>12} {'ratio':>7}"]
    for name, row in result["stages"].items():
        lines.append(f"{name:<22} {row['fast_s']:>11.0f} {row['reference_s']:>12.0f} {row['ratio']:>6.2f}×")
    for mode, row in result["total"].items():
        lines.append(f"{'total (' + mode + ')':<22} {row['fast_s']:>11.0f} {row['reference_s']:>12.0f} "
                     f"{row['ratio']:>6.2f}×")
    return "\n".join(lines)
