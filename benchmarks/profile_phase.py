"""Where a phase's time goes: torch.profiler over the filter's KD training and the full-split inference,
at a preset's settings (phase 1's set size and batch), written as a plain-text summary.

    .venv/bin/python benchmarks/profile_phase.py cifar10 --ipc 500 --model resnet18 --teacher-model convnet_bn --root DIR \
        --out benchmarks/results/profile_resnet18.txt

The teacher is an untrained network of the teacher's architecture (--teacher-model: the benchmarks use
convnet_bn, as benchmarks/curriculum.sh): the cost of its forward does not depend on its weights (the operator mix is what is profiled, not the selection). The operators are
grouped (convolution, normalisation, optimizer, augmentation, …) so the summary says which part of
the step a speed-up has to come from.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

GROUPS = [  # (group, substrings of operator names), first match wins
    ("convolution", ("conv", "mkldnn_convolution", "onednn")),
    ("normalisation", ("batch_norm", "group_norm", "native_norm")),
    ("matmul / linear", ("addmm", "mm", "linear")),
    ("optimizer (SGD)", ("_foreach", "sgd", "add_", "mul_", "lerp")),
    ("augmentation (loader)", ("grid_sample", "interpolate", "upsample", "flip", "index", "gather", "affine_grid")),
    ("activations / pooling", ("relu", "threshold", "pool")),
    ("loss / softmax", ("softmax", "kl_div", "cross_entropy", "nll")),
    ("dtype casts / copies", ("to", "copy_", "clone", "contiguous", "_to_copy")),
]


def group_of(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS:
        if any(k in low for k in keys):
            return group
    return "other"


def summary(prof, title: str, seconds: float, images: int) -> str:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    groups = defaultdict(float)
    for e in events:
        groups[group_of(e.key)] += e.self_cpu_time_total
    lines = [f"## {title}: {seconds:.2f} s wall-clock, {images} images, {images / seconds:.0f} img/s", "",
             "share of operator self-time by group:"]
    for group, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {group:<24} {100 * t / total:5.1f} %")
    lines += ["", "top operators by self CPU time:"]
    lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=42))
    return "\n".join(lines)


def main() -> None:
    from fastccfs import selection
    from fastccfs.config import resolve_run_config
    from fastccfs.loaders import make_loader
    from fastccfs.models import create_model
    from fastccfs.context import EVAL_BATCH
    from fastccfs.store import convert
    from fastccfs.trainer import Recipe, batch_size_for, fit, predict

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("--ipc", type=int, required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--teacher-model", default=None, help="[default: the preset's]")
    p.add_argument("--epochs", type=int, default=3, help="profiled training epochs (after one unprofiled)")
    p.add_argument("--inference-images", type=int, default=5000)
    p.add_argument("--root", default=".")
    p.add_argument("--cache", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    overrides = {k: v for k, v in (("model", args.model), ("teacher_model", args.teacher_model)) if v}
    cfg = resolve_run_config(args.dataset, args.ipc, None, overrides, quiet=True)
    stores = convert(args.dataset, args.root, args.cache, progress=False)
    train = stores["train"]
    per_class, _ = selection.phase_budgets(args.ipc, cfg.alpha, cfg.phases)
    start = selection.random_per_class(train.labels, per_class, 0, train.num_classes)
    batch = cfg.batch_size or batch_size_for(len(start), len(train))
    torch.manual_seed(0)
    model = create_model(cfg.model, train.num_classes, train.image_size[0])
    teacher = create_model(cfg.teacher_model, train.num_classes, train.image_size[0]).eval()
    loader = make_loader(train, batch_size=batch, device="cpu", indices=start, seed=0)
    recipe = Recipe(1, cfg.lr, cfg.momentum, cfg.weight_decay, 0, temperature=cfg.temperature)
    history = fit(model, loader, recipe, teacher=teacher, amp=cfg.amp, progress=False)  # warm-up, dtype decided
    recipe.epochs = args.epochs
    with profile(activities=[ProfilerActivity.CPU]) as prof_train:
        t = time.perf_counter()
        fit(model, loader, recipe, teacher=teacher, amp=cfg.amp, progress=False)
        train_s = time.perf_counter() - t
    rows = np.arange(min(args.inference_images, len(train)))
    evaluation = make_loader(train, augment=False, batch_size=EVAL_BATCH["cpu"], device="cpu", indices=rows)
    predict(model, make_loader(train, augment=False, batch_size=EVAL_BATCH["cpu"], device="cpu", indices=rows[:256]))
    with profile(activities=[ProfilerActivity.CPU]) as prof_infer:
        t = time.perf_counter()
        predict(model, evaluation, amp=cfg.amp)
        infer_s = time.perf_counter() - t
    header = (f"# Profile of one phase's work: {args.dataset} IPC {args.ipc}, {cfg.model} filter, KD from "
              f"{cfg.teacher_model}, {len(start)} images, batch {batch}, training dtype {history['dtype']}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
              f"# command: {' '.join(['benchmarks/profile_phase.py', *__import__('sys').argv[1:]])}\n")
    text = "\n\n".join([header, summary(prof_train, f"training, {args.epochs} epochs", train_s,
                                        len(start) * args.epochs),
                        summary(prof_infer, "inference (BatchNorm folded)", infer_s, len(rows))])
    from fastccfs.atomic import write_text

    write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
