"""The wait, known up front: every stage a run still has to do, its image-epochs, and its estimated
wall-clock on this machine, from a short measurement of each model at its batch shape.

A training job costs epochs × batches per epoch × the measured seconds of one step (the loader's crop,
the student's forward and backward, the teacher's forward under KD, the optimiser), in the dtype the run
will use (precision.autocast_dtype decides the same way); inference costs images × the measured seconds
per image at the inference batch. Evaluation runs side by side use the step time measured beside the
other jobs (eval_jobs.decide), in rounds. `fastccfs run --plan` prints the plan and exits; every run
prints it before the first expensive step and keeps it in timings.json (`plan`) next to the real times.

What it leaves out: start-up, the report, and, under `--inference needed`, the share of the split the
fine stage never reaches (the plan counts the whole split: an upper bound). One process is assumed
(under torchrun each rank does about 1/N of the training).
"""
from __future__ import annotations

import math
import time

import torch

from fastccfs import registry
from fastccfs.rundir import Layout

_measured: dict = {}  # (kind, settings) → seconds, this process


def train_step_seconds(model_name: str, teacher_name: str | None, classes: int, size: int, batch: int, amp: str,
                       device: str, barrier=None, kd: bool = True, steps: int = 6) -> float:
    """Seconds of one training step: crop + forward/backward (+ the teacher's forward when TEACHER_NAME)
    + SGD. kd False: cross-entropy (a teacher being trained). With a barrier (eval_jobs' probe processes),
    timing starts in every process together. steps: timed steps (the median is kept), after two warm-up ones."""
    from fastccfs import augment as aug
    from fastccfs.models import create_model, folded, memory_format
    from fastccfs.precision import autocast_dtype
    from fastccfs.trainer import kd_loss

    device = torch.device(device)
    torch.manual_seed(0)
    model = create_model(model_name, classes, size)
    fmt = memory_format(model, device)
    model.to(device, memory_format=fmt).train()
    teacher = None
    if teacher_name is not None:
        teacher = create_model(teacher_name, classes, size)
        teacher = folded(teacher.to(device, memory_format=fmt).eval()).to(memory_format=fmt)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8).to(device)
    rows = torch.arange(batch)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (batch,), device=device)
    target = torch.randn(batch, classes, device=device)
    dtype = autocast_dtype(device, amp, model, (batch, 3, size, size), train=True, teacher=teacher)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        boxes, flips = aug.sample_crop_boxes(batch, size, size, gen), aug.sample_flips(batch, gen)
        x = aug.crop_flip_normalize(images, rows, boxes, flips, (0.5,) * 3, (0.25,) * 3, memory_format=fmt)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
            if not kd:
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
            else:
                if teacher is not None:
                    with torch.no_grad():
                        goal = teacher(x)
                else:
                    goal = target
                loss = kd_loss(logits, goal, 4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return time_steps(step, steps=steps, barrier=barrier)


def infer_seconds_per_image(model_name: str, classes: int, size: int, batch: int, amp: str, device: str) -> float:
    from fastccfs.models import create_model, folded, memory_format
    from fastccfs.precision import autocast_dtype

    device = torch.device(device)
    model = create_model(model_name, classes, size)
    fmt = memory_format(model, device)
    net = folded(model.to(device, memory_format=fmt).eval()).to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    dtype = autocast_dtype(device, amp, net, tuple(x.shape), train=False)

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            net(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return time_steps(step, steps=3, warmup=1) / batch


def time_steps(step, steps: int = 6, warmup: int = 2, barrier=None) -> float:
    """Seconds per call of STEP (the median), after WARMUP calls; with a barrier, every probe process
    starts timing together."""
    for _ in range(warmup):
        step()
    if barrier is not None:
        barrier.wait()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def eval_jobs_for_run(cfg, ctx, final_size: int, runs: int) -> dict:
    """eval_jobs.decide() for a run's evaluation: RUNS runs of the first evaluation model on FINAL_SIZE images, at the
    run's batch, with the teacher's forward in each step unless the soft labels are shared."""
    from fastccfs.eval_jobs import decide
    from fastccfs.trainer import batch_size_for

    batch = min(cfg.batch_size or batch_size_for(final_size, len(ctx.train)), final_size)
    teacher = None if cfg.soft_labels == "shared" else cfg.teacher_model
    size = ctx.train.image_size[0]
    probe = (train_step_seconds, (cfg.eval_models[0], teacher, ctx.num_classes, size, batch, cfg.amp, str(ctx.device)))
    return decide(cfg.eval_jobs, runs, ctx.device, probe,
                  f"{cfg.eval_models[0]}|batch {batch}|{size} px|{ctx.num_classes} classes|{cfg.soft_labels}")


def _cached(key: tuple, measure) -> float:
    """A measurement made once per process. Not kept on disk: a step timed while the machine was busy would
    mislead every later plan, and a few steps per model and batch cost seconds against a run's minutes."""
    if key not in _measured:
        _measured[key] = measure()
    return _measured[key]


def build_plan(ctx, run_dir=None) -> dict:
    """The stages still to do (all of them without RUN_DIR), each with its image-epochs and estimated
    seconds: {"stages": {name: {...}}, "estimate_s", "measure_s"}."""
    from fastccfs import selection
    from fastccfs.trainer import batch_size_for

    start = time.perf_counter()
    cfg, train, test = ctx.cfg, ctx.train, ctx.test
    n, c, size, device = len(train), ctx.num_classes, train.image_size[0], str(ctx.device)
    infer_batch = ctx.eval_batch
    method = registry.get("method", cfg.method)
    stages = {}

    def step(model, teacher, batch, kd=True):
        return _cached(("train", model, teacher, batch, kd, cfg.amp, device, torch.get_num_threads()),
                       lambda: train_step_seconds(model, teacher, c, size, batch, cfg.amp, device, kd=kd, steps=3))

    def infer(model):
        return _cached(("infer", model, cfg.amp, device, torch.get_num_threads()),
                       lambda: infer_seconds_per_image(model, c, size, infer_batch, cfg.amp, device))

    if not cfg.teacher and not (run_dir and run_dir.teacher_trained()):
        b = cfg.teacher_batch_size
        seconds = cfg.teacher_epochs * math.ceil(n / b) * step(cfg.teacher_model, None, b, kd=False)
        seconds += (n + (cfg.teacher_epochs * len(test) if cfg.teacher_test else 0)) * infer(cfg.teacher_model)
        stages["teacher"] = {"image_epochs": cfg.teacher_epochs * n, "estimate_s": seconds}
    per_class, _ = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    distilled_here = (cfg.method == "ccfs" and cfg.distilled is None and cfg.init == "none" and per_class
                      and not (run_dir and (run_dir.path / Layout.START).is_file()))
    if distilled_here:  # CDA: each batch of images optimised for `iterations` teacher forward/backward steps
        from fastccfs.curriculum import distill_config

        dcfg = distill_config(cfg)
        iterations = dcfg.iterations
        images = per_class * c
        seconds = iterations * math.ceil(images / dcfg.batch_size) * step(cfg.teacher_model, None, dcfg.batch_size,
                                                                         kd=False)
        stages["distilled_part"] = {"image_epochs": iterations * images, "estimate_s": seconds}
    for j, set_size in enumerate(method.filter_sets(cfg, c), 1):
        if not set_size or (run_dir and run_dir.phase_done(j)):
            continue
        b = cfg.batch_size or batch_size_for(set_size, n)
        seconds = cfg.epochs * math.ceil(set_size / b) * step(cfg.model, cfg.teacher_model, b)
        seconds += (n + (len(test) if cfg.filter_test else 0)) * infer(cfg.model)
        stages[f"phase_{j}"] = {"image_epochs": cfg.epochs * set_size, "set_size": set_size, "batch_size": b,
                                "estimate_s": seconds}
    real = method.real_per_class(cfg)
    final = n if real is None else c * cfg.ipc
    epochs = cfg.eval_epochs or cfg.epochs
    runs = [(m, r) for m in cfg.eval_models for r in range(cfg.num_eval) if not (run_dir and run_dir.eval_done(m, r))]
    if runs:
        b = min(cfg.batch_size or batch_size_for(final, n), final)
        shared = cfg.soft_labels == "shared"
        teacher = None if shared else cfg.teacher_model
        seconds, image_epochs = 0.0, 0
        if shared:
            seconds += epochs * final * infer(cfg.teacher_model)
        decision = eval_jobs_for_run(cfg, ctx, final, len(runs))
        jobs, threads = decision["jobs"], decision["threads_per_job"]
        for model in cfg.eval_models:
            left = sum(1 for m, _ in runs if m == model)
            beside = (decision.get("measured_s_per_step") or {}).get(str(jobs)) if model == cfg.eval_models[0] else None
            if beside is None:  # measured in this process with a run's share of the threads
                from fastccfs.eval_jobs import set_threads

                previous = set_threads(threads)
                try:
                    beside = step(model, teacher, b)
                    per_image = infer(model)
                finally:
                    set_threads(previous)
            else:
                per_image = infer(model) * jobs  # a test pass beside the other jobs: its share of the cores
            passes = sum(1 for e in range(epochs) if e > cfg.eval_from * epochs or e == epochs - 1)
            one_run = epochs * math.ceil(final / b) * beside + passes * len(test) * per_image
            seconds += math.ceil(left / jobs) * one_run
            image_epochs += left * epochs * final
        stages["evaluation"] = {"image_epochs": image_epochs, "runs": len(runs), "estimate_s": seconds,
                                "soft_labels": cfg.soft_labels}
    for row in stages.values():
        row["estimate_s"] = round(row["estimate_s"], 1)
    return {"stages": stages, "estimate_s": round(sum(r["estimate_s"] for r in stages.values()), 1),
            "measure_s": round(time.perf_counter() - start, 1)}


def format_plan(plan: dict, cfg) -> str:
    lines = [f"plan: {cfg.dataset} IPC {cfg.ipc}, {cfg.method} (estimated on this machine; measured in "
             f"{plan['measure_s']:.0f} s)", f"  {'stage':<16} {'image-epochs':>14} {'estimate':>10}"]
    for name, row in plan["stages"].items():
        lines.append(f"  {name:<16} {row['image_epochs']:>14,} {_duration(row['estimate_s']):>10}")
    lines.append(f"  {'total':<16} {sum(r['image_epochs'] for r in plan['stages'].values()):>14,} "
                 f"{_duration(plan['estimate_s']):>10}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def with_measured(plan: dict, timings: dict) -> dict:
    """PLAN with each stage's measured seconds (timings.json's stages) beside its estimate."""
    def measured(stage: str) -> float | None:
        if stage.startswith("phase_"):
            parts = [s for k, s in timings.items() if k.startswith(f"{stage}.")]
            return sum(parts) if parts else None
        if stage == "evaluation":
            return timings.get("evaluation", 0.0) + timings.get("soft_labels", 0.0) if "evaluation" in timings else None
        return timings.get(stage)

    stages = {name: {**row, "measured_s": None if measured(name) is None else round(measured(name), 1)}
              for name, row in plan["stages"].items()}
    done = [row["measured_s"] for row in stages.values()]
    total = round(sum(done), 1) if all(s is not None for s in done) else None
    return {**plan, "stages": stages, "measured_s": total,
            "estimate_over_measured": round(plan["estimate_s"] / total, 3) if total else None}

