"""`fastccfs bench`: wall-clock of fastccfs against a reference-style baseline, at the settings users run.

`bench curriculum`: one CCFS phase by fastccfs and by the reference's way, same data, teacher, settings
and seed. fastccfs's side is the very code `fastccfs run` executes (pipeline.curriculum_phase); the
reference side is benchmarks/reference_phase.py (a baseline beside the benchmarks, never used by `run`),
so this command needs a source checkout.
  - The teacher is real: a checkpoint (--teacher) or one trained here by the dataset's teacher recipe
    (--teacher-epochs; its accuracies go into the JSON). Both sides distil from it, and its train
    predictions are the teacher filter; the scores are a file or the forgetting counted while training it.
  - The filter trains at the preset's IPC, α, batch rule, learning rate and epochs; `--measure-epochs M`
    trains M of them (the schedule compressed into M) and scales both sides' training time by
    epochs / M, marked `"extrapolated": true`.
  - The starting set of phase j holds as many images per class as that phase's set has in a run
    (⌊α·IPC⌋ plus the earlier phases' budgets); random real images stand in for them.
  - Both inference modes in one run: the default (`needed`: only what the fine stage can reach) and
    the whole split (`all`, the reference's way) with the same filter, the picks checked identical.
  - FLOPs per image (torch.utils.flop_counter) turn every time into GFLOP/s, stated against the CPU's
    peak (cores × clock × FMA lanes; the JSON names its assumptions).

`bench run`: the whole pipeline at given settings, its timings.json as a table.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastccfs.errors import UserError
from fastccfs.machine import cpu_peak_gflops, machine

STAGES = ("train", "inference", "selection")


def _reference_module():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "reference_phase.py"
    if not path.is_file():
        raise UserError("fastccfs bench needs a source checkout: benchmarks/reference_phase.py (the baseline) "
                        "is not installed with the package")
    spec = importlib.util.spec_from_file_location("reference_phase", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flops_per_image(model: torch.nn.Module, image_size: int, train: bool, teacher=None) -> float:
    """FLOPs of one image through MODEL: forward (+ backward when training, + the teacher's forward)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).cpu().train(train)
    x = torch.randn(2, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        if train:
            net(x).sum().backward()
            if teacher is not None:
                with torch.no_grad():
                    copy.deepcopy(teacher).cpu().eval()(x)
        else:
            with torch.no_grad():
                net(x)
    return counter.get_total_flops() / 2


def bench_curriculum(dataset: str, ipc: int, *, model: str | None = None, phase: int = 1, epochs: int | None = None,
                     measure_epochs: int | None = None, teacher_path=None, teacher_model: str | None = None,
                     teacher_epochs: int | None = None, save_teacher=None, scores_path=None, root=".", cache=None,
                     seed: int = 0, device=None, amp: str = "auto", progress: bool = True) -> dict:
    """One CCFS phase at the preset's settings, by fastccfs and by benchmarks/reference_phase.py, side by
    side: per-stage seconds and ratios, FLOPs and the share of the CPU's peak (`fastccfs bench curriculum`)."""
    from fastccfs import distributed, kernels, selection
    from fastccfs.config import resolve_run_config

    if distributed.launched():
        raise UserError("bench curriculum compares one process with the reference's way: run it without torchrun "
                        "(under torchrun, `bench run … --out DIR` times the whole pipeline on N processes)")
    from fastccfs.context import Context
    from fastccfs.curriculum import curriculum_phase
    from fastccfs.models import create_model
    from fastccfs.synthetic import SyntheticSet
    from fastccfs.trainer import batch_size_for, predict

    settings = {"seed": seed, "amp": amp, "filter_test": False}
    for name, value in (("model", model), ("teacher_model", teacher_model), ("teacher_epochs", teacher_epochs)):
        if value is not None:
            settings[name] = value
    cfg = resolve_run_config(dataset, ipc, None, settings)
    epochs = epochs or cfg.epochs
    measured = measure_epochs or epochs
    if not 1 <= measured <= epochs:
        raise UserError(f"--measure-epochs {measured}: measure between 1 and the {epochs} epochs it stands for")
    if measured < epochs and measured < 5:
        raise UserError(f"--measure-epochs {measured}: measure at least 5 epochs to scale to {epochs}")
    if not 1 <= phase <= cfg.phases:
        raise UserError(f"--phase {phase}: the preset runs phases 1 to {cfg.phases}")
    for flag, path in (("--teacher", teacher_path), ("--scores", scores_path)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} {path}: no such file")
    if teacher_path and not scores_path:
        raise UserError("--teacher PATH: give --scores FILE too (a teacher trained here counts forgetting itself)")
    per_class, budgets, reference, device, train, test = bench_setup(cfg, dataset, root, cache, device, progress)
    set_per_class = per_class + sum(budgets[: phase - 1])
    start = selection.random_per_class(train.labels, set_per_class, seed, train.num_classes)
    batch = cfg.batch_size or batch_size_for(len(start), len(train))
    cfg.batch_size, cfg.epochs = batch, measured
    ctx = Context(cfg, None, train, test, device, progress)

    teacher, teacher_pred, scores, teacher_info = _bench_teacher(ctx, dataset, ipc, teacher_path, save_teacher,
                                                                 scores_path)
    kernels.warm_up()  # numba's one-time start-up is per process, not per phase
    k = budgets[phase - 1]
    current = SyntheticSet(np.zeros((0, *train.images.shape[1:]), np.uint8), np.zeros(0, np.int64), start)
    fast = curriculum_phase(ctx, phase, current, k, teacher, teacher_pred, scores)
    # the same filter over the whole split (--inference all), and its picks: the same as predicting only
    # what the fine stage reaches
    t = time.perf_counter()
    logits = predict(fast.filter, ctx.eval_loader(train), device, amp)[0]
    all_inference_s, t = time.perf_counter() - t, time.perf_counter()
    selected = np.zeros(len(train), bool)
    selected[start] = True
    picks_all = selection.coarse_to_fine(logits.argmax(1), train.labels, scores, selected, k, teacher_pred=teacher_pred,
                                         coarse=cfg.coarse, fine=cfg.fine, seed=ctx.seed("fine", phase),
                                         num_classes=train.num_classes, semantics=cfg.semantics).indices
    all_selection_s = time.perf_counter() - t

    torch.manual_seed(ctx.seed("filter", phase))
    ref_filter = create_model(cfg.model, train.num_classes, train.image_size[0])
    images_og = reference.normalised_tensor(train)  # the reference builds this once at start-up (setup)
    _, ref = reference.phase(ref_filter, teacher, train, images_og, start, np.flatnonzero(teacher_pred == train.labels)
                             .tolist(), scores, k, measured, cfg.lr, batch, seed, device, cfg.weight_decay)

    return _bench_result(ctx, fast, ref, teacher, teacher_info, start, k, epochs, measured, all_inference_s,
                         all_selection_s, picks_all, dataset, ipc, phase)


def bench_setup(cfg, dataset: str, root, cache, device, progress: bool) -> tuple:
    """What both side-by-side benchmarks start from, after their own checks: (the starting set per class, the
    phases' budgets, the reference module, the device, the train and test stores)."""
    from fastccfs import selection
    from fastccfs.distributed import resolve_device
    from fastccfs.store import convert

    per_class, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    if not per_class:
        raise UserError("the benchmark trains a filter on the starting set: use a preset with α > 0")
    reference = _reference_module()
    device = resolve_device(device)
    stores = convert(dataset, root, cache, progress=progress)
    return per_class, budgets, reference, device, stores["train"], stores["test"]


def _bench_teacher(ctx, dataset, ipc, teacher_path, save_teacher, scores_path):
    """The benchmark's teacher (loaded, or trained here by the teacher recipe), its train predictions, the
    scores and what the JSON says of it. Setup: not part of the timed phase."""
    from fastccfs.config import resolve_run_config
    from fastccfs.models import create_model, load_checkpoint, save_checkpoint
    from fastccfs.scores import load_scores
    from fastccfs.teacher import train_teacher
    from fastccfs.trainer import accuracy, predict

    cfg, train, test, device, amp = ctx.cfg, ctx.train, ctx.test, ctx.device, ctx.cfg.amp
    t = time.perf_counter()
    if teacher_path:
        teacher = load_checkpoint(create_model(cfg.teacher_model, train.num_classes, train.image_size[0]), teacher_path)
        history, scores = None, None
    else:
        teacher, history, scores = train_teacher(ctx)
        if save_teacher:
            save_checkpoint(teacher, save_teacher)
    teacher_s = time.perf_counter() - t
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher_pred = predict(teacher, ctx.eval_loader(train), device, amp)[0].argmax(1)  # setup, not timed
    if scores_path:
        scores = load_scores(scores_path, train)
    teacher_info = {"model": cfg.teacher_model, "source": str(teacher_path) if teacher_path else "trained here",
                    "train_acc": float((teacher_pred == train.labels).mean()),
                    "test_acc": accuracy(teacher, ctx.eval_loader(test), device, amp)}
    if history is not None:
        teacher_info.update(epochs=cfg.teacher_epochs, seconds=round(teacher_s, 1),
                            train_acc_augmented_last_epoch=history["train_acc"][-1])
        if save_teacher:  # how it was trained travels with it, for the JSONs of later benchmarks
            from fastccfs.atomic import write_json

            write_json(f"{save_teacher}.json", teacher_info)
    elif Path(f"{teacher_path}.json").is_file():
        import json

        trained = json.loads(Path(f"{teacher_path}.json").read_text())
        teacher_info["training"] = {k: trained[k] for k in ("epochs", "seconds", "train_acc_augmented_last_epoch")
                                    if k in trained}
    if cfg.teacher_model != resolve_run_config(dataset, ipc, None, {}, quiet=True).teacher_model:
        teacher_info["stands_in_for"] = resolve_run_config(dataset, ipc, None, {}, quiet=True).teacher_model

    return teacher, teacher_pred, scores, teacher_info


def _bench_result(ctx, fast, ref, teacher, teacher_info, start, k, epochs, measured, all_inference_s, all_selection_s,
                  picks_all, dataset, ipc, phase) -> dict:
    """The benchmark's JSON: both sides' seconds per stage (training scaled to the preset's epochs), ratios,
    the inference modes, FLOPs and the share of the peak."""
    cfg, train, device, batch = ctx.cfg, ctx.train, ctx.device, ctx.cfg.batch_size
    scale = epochs / measured
    f_sec, r_sec = dict(fast.record["seconds"]), dict(ref["seconds"])
    f_sec["train"] *= scale
    r_sec["train"] *= scale
    train_images = len(start) * epochs
    result = {"command": "fastccfs " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("fastccfs", "__main__.py"))
              else None, "dataset": dataset, "ipc": ipc, "phase": phase, "model": cfg.model, "alpha": cfg.alpha,
              "set_size": len(start), "k_per_class": k, "batch_size": batch, "lr": cfg.lr, "epochs": epochs,
              "measured_epochs": measured, "extrapolated": measured < epochs, "train_split": len(train),
              "teacher": teacher_info, "filter_dtype": fast.record["train_dtype"], "device": str(device),
              "machine": machine(), "stages": {},
              "inference": {"needed": {"images": fast.record["inferred"], "fast_s": f_sec["inference"]},
                            "all": {"images": len(train), "fast_s": all_inference_s,
                                    "same_picks": bool(np.array_equal(np.sort(picks_all), np.sort(fast.indices)))},
                            "reference": {"images": len(train), "s": r_sec["inference"]}}}
    for stage in STAGES:
        f, r = f_sec[stage], r_sec[stage]
        result["stages"][stage] = {"fast_s": f, "reference_s": r, "ratio": r / f if f else None}
    f, r = sum(f_sec[s] for s in STAGES), sum(r_sec[s] for s in STAGES)
    result["total"] = {"fast_s": f, "reference_s": r, "ratio": r / f}
    f_all = f_sec["train"] + all_inference_s + all_selection_s
    result["total_inference_all"] = {"fast_s": f_all, "reference_s": r, "ratio": r / f_all}
    train_flops = flops_per_image(fast.filter, train.image_size[0], True, teacher)
    infer_flops = flops_per_image(fast.filter, train.image_size[0], False)
    peak = cpu_peak_gflops() if device.type == "cpu" else None
    rates = {"fast_train": train_flops * train_images / f_sec["train"] / 1e9,
             "reference_train": train_flops * train_images / r_sec["train"] / 1e9,
             "fast_inference_all": infer_flops * len(train) / all_inference_s / 1e9,
             "reference_inference": infer_flops * len(train) / r_sec["inference"] / 1e9}
    result["flops"] = {"train_gflop_per_image": train_flops / 1e9, "inference_gflop_per_image": infer_flops / 1e9,
                       "achieved_gflops": rates, "cpu_peak": peak}
    if peak:
        fast_peak = peak["bf16_gflops"] if fast.record["train_dtype"] == "bf16" else peak["fp32_gflops"]
        result["flops"]["share_of_peak"] = {"fast_train": rates["fast_train"] / fast_peak,
                                            "reference_train": rates["reference_train"] / peak["fp32_gflops"]}
    return result




def format_table(result: dict) -> str:
    inf = result["inference"]
    teacher = result["teacher"]
    epochs = (f"{result['epochs']} epochs (measured {result['measured_epochs']}, scaled)" if result["extrapolated"]
              else f"{result['epochs']} epochs")
    lines = [f"{result['dataset']} IPC {result['ipc']}, phase {result['phase']}: {result['model']} filter "
             f"({result['filter_dtype']}), {epochs} on {result['set_size']} images (batch {result['batch_size']}); "
             f"teacher {teacher['model']} ({teacher['source']}, train {100 * teacher['train_acc']:.1f} %, "
             f"test {100 * teacher['test_acc']:.1f} %) — {result['machine'].get('gpu', result['machine']['cpu'])}",
             f"{'stage':<10} {'fastccfs s':>11} {'reference s':>12} {'ratio':>7}"]
    for stage, row in [*result["stages"].items(), ("total", result["total"])]:
        ratio = f"{row['ratio']:.1f}×" if row["ratio"] else "–"
        lines.append(f"{stage:<10} {row['fast_s']:>11.2f} {row['reference_s']:>12.2f} {ratio:>7}")
    lines.append(f"inference: {inf['needed']['images']} images (needed) {inf['needed']['fast_s']:.2f} s; all "
                 f"{inf['all']['images']} {inf['all']['fast_s']:.2f} s (same picks: {inf['all']['same_picks']}); "
                 f"total with --inference all {result['total_inference_all']['fast_s']:.2f} s = "
                 f"{result['total_inference_all']['ratio']:.1f}×")
    flops = result["flops"]
    if flops.get("share_of_peak"):
        lines.append(f"training {flops['achieved_gflops']['fast_train']:.0f} GFLOP/s "
                     f"({100 * flops['share_of_peak']['fast_train']:.0f} % of the CPU's {result['filter_dtype']} peak); "
                     f"reference {flops['achieved_gflops']['reference_train']:.0f} GFLOP/s "
                     f"({100 * flops['share_of_peak']['reference_train']:.0f} % of the fp32 peak)")
    return "\n".join(lines)


def format_timings(timings: dict) -> str:
    """timings.json of a run as a table: stage, seconds, share of the total."""
    stages, total = timings.get("stages", {}), timings.get("total_s") or 0.0
    lines = [f"{'stage':<28} {'seconds':>9} {'share':>6}"]
    for stage, s in stages.items():
        lines.append(f"{stage:<28} {s:>9.2f} {100 * s / total if total else 0:>5.1f}%")
    lines.append(f"{'total':<28} {total:>9.2f}")
    return "\n".join(lines)
