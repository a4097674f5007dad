"""`fastccfs bench curriculum`: one CCFS phase by fastccfs and by a reference-style path, same data,
settings and seed, wall-clock per stage and the ratios.

fastccfs's side is the very code `fastccfs run` executes (pipeline.curriculum_phase). The reference side is
benchmarks/reference_phase.py (a baseline that lives beside the benchmarks, never used by `run`), so
this command needs a source checkout. The teacher is an untrained network of the filter's
architecture unless --teacher is given (speed does not depend on its weights); its predictions are
then taken to be the labels, as a trained teacher's nearly are on its own train split (an untrained
one would rule out ~90 % of the samples and shrink both sides' work unrealistically). The starting
set is α·IPC random real images per class, and the scores are --scores or seeded random multiples of
0.2 shaped like the published forgetting scores. fastccfs's side predicts what `--inference` says
(default: only the samples the fine stage can reach, the same picks); the reference predicts the
whole split, as the paper's code does.
"""
from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

import numpy as np
import torch

from fastccfs.errors import UserError

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


def machine() -> dict:
    import os

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    from fastccfs.precision import cpu_has_native_bf16

    info["native_bf16"] = cpu_has_native_bf16()
    info["threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def bench_curriculum(dataset: str, ipc: int, model: str = "convnet", epochs: int = 10, root=".", cache=None,
                     alpha: float = 0.2, seed: int = 0, device=None, teacher_path=None, scores_path=None,
                     inference: str = "needed", progress: bool = True) -> dict:
    from fastccfs import selection
    from fastccfs.config import resolve_run_config
    from fastccfs.models import create_model, load_checkpoint
    from fastccfs.pipeline import Context, curriculum_phase, resolve_device
    from fastccfs.scores import load_scores
    from fastccfs.store import convert
    from fastccfs.synthetic import SyntheticSet
    from fastccfs.trainer import batch_size_for, predict

    reference = _reference_module()
    device = resolve_device(device)
    stores = convert(dataset, root, cache, progress=progress)
    train = stores["train"]
    cfg = resolve_run_config(dataset, ipc, None, {"model": model, "teacher_model": model, "epochs": epochs,
                                                  "alpha": alpha, "seed": seed, "inference": inference})
    per_class, budgets = selection.phase_budgets(ipc, alpha, cfg.phases, cfg.semantics)
    if not per_class:
        raise UserError("the benchmark trains a filter on the starting set: use α > 0")
    start = selection.random_per_class(train.labels, per_class, seed, train.num_classes)
    batch = cfg.batch_size or batch_size_for(len(start), len(train))
    cfg.batch_size = batch
    rng = np.random.default_rng(seed)
    scores = (load_scores(scores_path, train) if scores_path
              else rng.integers(0, 50, len(train)).astype(np.float64) * 0.2)

    def fresh(kind):
        torch.manual_seed(seed)
        net = create_model(model, train.num_classes, train.image_size[0])
        return load_checkpoint(net, teacher_path) if kind == "teacher" and teacher_path else net

    from fastccfs import kernels

    kernels.warm_up()  # numba's one-time start-up is per process, not per phase
    teacher = fresh("teacher").to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ctx = Context(cfg, None, train, stores["test"], device, progress)
    teacher_pred = (predict(teacher, ctx.eval_loader(train), device, cfg.amp)[0].argmax(1) if teacher_path
                    else train.labels.copy())  # setup, not timed
    current = SyntheticSet(np.zeros((0, *train.images.shape[1:]), np.uint8), np.zeros(0, np.int64), start)
    fast = curriculum_phase(ctx, 1, current, budgets[0], teacher, teacher_pred, scores).record

    images_og = reference.normalised_tensor(train)  # the reference builds this once at start-up (setup)
    teacher_correct = np.flatnonzero(teacher_pred == train.labels).tolist()
    _, ref = reference.phase(fresh("filter"), teacher, train, images_og, start, teacher_correct, scores, budgets[0],
                             epochs, cfg.lr, batch, seed, device)
    result = {"dataset": dataset, "ipc": ipc, "model": model, "epochs": epochs, "set_size": len(start),
              "batch_size": batch, "train_split": len(train), "inference": inference, "inferred": fast["inferred"],
              "device": str(device), "machine": machine(), "stages": {}}
    for stage in STAGES:
        f, r = fast["seconds"][stage], ref["seconds"][stage]
        result["stages"][stage] = {"fast_s": f, "reference_s": r, "ratio": r / f if f else None}
    f, r = (sum(x["seconds"][s] for s in STAGES) for x in (fast, ref))
    result["total"] = {"fast_s": f, "reference_s": r, "ratio": r / f}
    return result


def format_table(result: dict) -> str:
    lines = [f"{result['dataset']} IPC {result['ipc']}, {result['model']}, {result['epochs']} epochs on "
             f"{result['set_size']} images (batch {result['batch_size']}); inference over {result['inferred']} "
             f"(fastccfs, --inference {result['inference']}) and {result['train_split']} (reference) images; "
             f"{result['device']} — {result['machine'].get('gpu', result['machine']['cpu'])}",
             f"{'stage':<10} {'fastccfs s':>11} {'reference s':>12} {'ratio':>7}"]
    for stage, row in [*result["stages"].items(), ("total", result["total"])]:
        ratio = f"{row['ratio']:.1f}×" if row["ratio"] else "–"
        lines.append(f"{stage:<10} {row['fast_s']:>11.2f} {row['reference_s']:>12.2f} {ratio:>7}")
    return "\n".join(lines)
