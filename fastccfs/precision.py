"""Which dtype a model computes in under `amp: auto`: bf16 autocast or fp32.

CUDA: bf16 where the card runs it natively (Ampere on). CPU: decided by the CPU's features and a
measurement, never by a blanket rule — CPUs differ: bf16 was faster for every model on one of this
project's CPU machines and slower for every model on another (benchmarks/README.md, "Choices in the code").
  - a CPU without native bf16 arithmetic (x86 avx512_bf16 / amx_bf16, Arm bf16) computes in fp32:
    bf16 would be emulated, which is slower;
  - otherwise a few steps of this very model, batch shape and step kind (a training step, or
    inference) are timed in both dtypes, and bf16 is used when it is at least MARGIN faster.
A decision is made once per machine: it is kept for the process and in CACHE/precision.json, keyed
by the CPU, torch, thread count, model, input shape and kind, so every later run on the machine
computes in the same dtype (and so reproduces its numbers). `amp: bf16` / `off` pin the dtype.
"""
from __future__ import annotations

import copy
import os
import time

import torch
from torch import nn

from fastccfs import machine_cache
from fastccfs.config import AMP_MODES
from fastccfs.errors import UserError
from fastccfs.machine import cpu_has_native_bf16, cpu_name

MARGIN = 1.1  # bf16 rounds activations to 8 mantissa bits: used on a CPU only where it clearly pays
_decided: dict[str, str] = {}  # key → "bf16" | "fp32", this process


def _key(model: nn.Module, shape: tuple, kind: str) -> str:
    params = sum(p.numel() for p in model.parameters())
    norms = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
    return (f"{cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{type(model).__name__} "
            f"{params} params {'+'.join(norms)}|{'x'.join(map(str, shape))}|{kind}")


def _remember(key: str, choice: str, timings: dict) -> None:
    _decided[key] = choice
    machine_cache.keep("precision.json", key, {"dtype": choice, **timings})


def _step(model: nn.Module, x: torch.Tensor, dtype, train: bool, teacher: nn.Module | None):
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        if not train:
            with torch.no_grad():
                return model(x)
        out = model(x)
        if teacher is not None:  # KD: the teacher's forward is part of every step
            with torch.no_grad():
                target = teacher(x).float()
            out = out + target.mean()
        loss = out.float().logsumexp(1).mean()
    loss.backward()
    return loss


def measure(model: nn.Module, shape: tuple, train: bool, teacher: nn.Module | None = None,
            rounds: int = 3) -> dict:
    """Seconds per step in fp32 and bf16 (the best of ROUNDS, the dtypes alternating so a slower
    moment of the machine hits both), on copies: the model's weights and statistics are untouched."""
    from fastccfs.models import folded, memory_format

    net = copy.deepcopy(model).to("cpu")
    fmt = memory_format(net, torch.device("cpu"))
    net = net.train() if train else folded(net.eval())
    net = net.to(memory_format=fmt)
    for p in net.parameters():
        p.requires_grad_(train)
    x = torch.randn(*shape).contiguous(memory_format=fmt)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    for name, dtype in dtypes.items():  # warm-up: oneDNN primitives are created on first use
        _step(net, x, dtype, train, teacher)
    for _ in range(rounds):
        for name, dtype in dtypes.items():
            start = time.perf_counter()
            _step(net, x, dtype, train, teacher)
            if train:
                net.zero_grad(set_to_none=True)
            best[name] = min(best[name], time.perf_counter() - start)
    return {f"{name}_s": round(s, 5) for name, s in best.items()}


def autocast_dtype(device: torch.device, amp: str = "auto", model: nn.Module | None = None, shape: tuple = (),
                   train: bool = True, teacher: nn.Module | None = None) -> torch.dtype | None:
    """The autocast dtype for MODEL on DEVICE, or None for fp32 (see the module's docstring). Without a
    model (or shape) a CPU under "auto" computes in fp32."""
    if amp not in AMP_MODES:
        raise UserError(f"unknown amp mode {amp!r}: use one of {', '.join(AMP_MODES)}")
    if amp == "bf16":
        return torch.bfloat16
    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu" or model is None or not shape or not cpu_has_native_bf16():
        return None
    if os.environ.get("FASTCCFS_CPU_AMP") in ("bf16", "off"):  # a machine-wide pin (e.g. a shared cluster)
        return torch.bfloat16 if os.environ["FASTCCFS_CPU_AMP"] == "bf16" else None
    kind = "train" if train else "infer"
    if not train:
        shape = (min(shape[0], 128), *shape[1:])  # inference speed per image barely depends on the batch
    key = _key(model, tuple(shape), kind + ("+teacher" if teacher is not None else ""))
    if key not in _decided:
        stored = machine_cache.load("precision.json").get(key)
        if stored and stored.get("dtype") in ("bf16", "fp32"):
            _decided[key] = stored["dtype"]
        else:
            timings = measure(model, tuple(shape), train, teacher)
            choice = "bf16" if timings["fp32_s"] >= MARGIN * timings["bf16_s"] else "fp32"
            _remember(key, choice, timings)
    return torch.bfloat16 if _decided[key] == "bf16" else None


def decisions() -> dict[str, str]:
    """What this process decided (or found decided) under amp auto: key → dtype; the run records it."""
    return dict(_decided)
