"""The per-model choices of the training step on this machine, measured in one run: dtype (fp32 / bf16
autocast) × memory format (channels_last / contiguous) × torch.compile (off / inductor), a KD step at
batch 32 (the preset's batch for CIFAR-10 IPC 500's phase sets) with a BatchNorm-folded teacher of the
same architecture, as fit() runs it. Also what `amp: auto` decides (fastccfs.precision) for the same
step, so the JSON shows the decision next to the measurement it rests on.

    .venv/bin/python benchmarks/step_choices.py --out benchmarks/results/step_choices.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastccfs.bench import flops_per_image  # noqa: E402
from fastccfs.machine import cpu_peak_gflops, machine  # noqa: E402
from fastccfs.models import create_model  # noqa: E402
from fastccfs.precision import autocast_dtype  # noqa: E402
from fastccfs.models import folded, memory_format  # noqa: E402
from fastccfs.trainer import kd_loss  # noqa: E402

MODELS = ("convnet_bn", "convnet", "resnet18")


def step_rate(name: str, batch: int, dtype, fmt, compiled: bool, seconds: float) -> dict:
    torch.manual_seed(0)
    model = create_model(name, 10, 32).to(memory_format=fmt).train()
    teacher = folded(create_model(name, 10, 32).eval()).to(memory_format=fmt)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)

    def step():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = step_model(x)
            with torch.no_grad():
                target = teacher(x)
            loss = kd_loss(out, target, 20.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # compilation (inductor) or oneDNN primitive creation
    first = time.perf_counter() - start
    for _ in range(2):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        step()
        steps += 1
    return {"images_per_s": steps * batch / (time.perf_counter() - start), "first_step_s": first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=8.0, help="timed steps per configuration")
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args()
    result = {"machine": machine(), "cpu_peak": cpu_peak_gflops(), "batch": args.batch, "image_size": 32,
              "step": "KD (student forward + backward + SGD, folded teacher forward)", "models": {}}
    cpu = torch.device("cpu")
    for name in args.models.split(","):
        model = create_model(name, 10, 32)
        rows = {}
        for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            for fmt_name, fmt in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
                for compiled in (False, True):
                    key = f"{dtype_name}/{fmt_name}/{'compile' if compiled else 'eager'}"
                    rows[key] = step_rate(name, args.batch, dtype, fmt, compiled, args.seconds)
                    print(f"{name:<11} {key:<32} {rows[key]['images_per_s']:8.0f} img/s", flush=True)
        flops = flops_per_image(model, 32, True, model)
        for row in rows.values():
            row["gflops"] = row["images_per_s"] * flops / 1e9
        decided = autocast_dtype(cpu, "auto", model, (args.batch, 3, 32, 32), train=True,
                                 teacher=folded(create_model(name, 10, 32).eval()))
        fmt = "channels_last" if memory_format(model, cpu) == torch.channels_last else "contiguous"
        best = max(rows, key=lambda k: rows[k]["images_per_s"])
        result["models"][name] = {"train_gflop_per_image": flops / 1e9, "rows": rows, "best": best,
                                  "fastccfs_eager_choice": f"{'bf16' if decided else 'fp32'}/{fmt}/eager"}
    from fastccfs.atomic import write_json

    write_json(args.out, result)


if __name__ == "__main__":
    main()
