"""Scale-out in one run: the same `fastccfs bench run` on 1 process with N threads and under torchrun on
N processes with 1 thread each (CPU), or 1 GPU vs N GPUs; the wall-clock of the curriculum phase(s)
and of the whole run, and the ratios. Writes one JSON.

    .venv/bin/python benchmarks/scaling.py --out benchmarks/results/scaling_cpu.json -- cifar10 --ipc 500 \
        --root DIR --teacher T.pt --teacher-model convnet_bn --scores S.npy --model convnet_bn --init random --phases 1 \
        --epochs 25 --num-eval 0

Everything after `--` goes to `fastccfs bench run` as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_run(args: list[str], nproc: int, threads: int, work: Path, name: str) -> dict:
    out, timings = work / name, work / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                   "-m", "fastccfs"]
    else:  # one process: one GPU where there are several (no-op on a CPU machine)
        command = [sys.executable, "-m", "fastccfs"]
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    start = time.perf_counter()
    subprocess.run([*command, "bench", "run", *args, "--out", str(out), "--json", str(timings), "--quiet"], cwd=REPO,
                   env=env, check=True)
    result = json.loads(timings.read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


def phase_seconds(timings: dict) -> float:
    return sum(v for k, v in timings["stages"].items() if k.startswith("phase_"))


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--nproc", type=int, default=2)
    args = p.parse_args(argv[:split])
    run_args = argv[split + 1:]
    import torch

    gpus = torch.cuda.device_count()
    threads = 1 if gpus else args.nproc
    with tempfile.TemporaryDirectory(prefix="fastccfs-scaling-") as tmp:
        one = bench_run(run_args, 1, threads, Path(tmp), "one")
        many = bench_run(run_args, args.nproc, 1, Path(tmp), "many")
    result = {"command": "benchmarks/scaling.py " + " ".join(argv), "settings": run_args,
              "one_process": {"processes": 1, "threads": threads, "gpus": min(gpus, 1), "timings": one},
              "many_processes": {"processes": args.nproc, "threads": 1, "gpus": min(gpus, args.nproc),
                                 "timings": many},
              "phase_s": {"one": phase_seconds(one), "many": phase_seconds(many)},
              "ratio_phases": phase_seconds(one) / phase_seconds(many),
              "ratio_total": one["total_s"] / many["total_s"]}
    from fastccfs.atomic import write_json

    write_json(args.out, result)
    print(f"phases: {result['phase_s']['one']:.1f} s on 1 process × {threads} threads, {result['phase_s']['many']:.1f} s "
          f"on {args.nproc} processes → {result['ratio_phases']:.2f}×; whole run {result['ratio_total']:.2f}×")


if __name__ == "__main__":
    main()
