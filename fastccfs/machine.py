"""The machine a run or a benchmark ran on: the CPU's name and features (whether it computes bf16
natively), its peak arithmetic rate, and the record written beside every timing. A leaf: it imports
nothing of fastccfs, so precision, the benchmarks and the run directory can all use it."""
from __future__ import annotations

import os
import platform
import time

import torch


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "cpu")
    except OSError:
        return "cpu"


def machine() -> dict:
    info = {"cpu": cpu_name() if platform.system() == "Linux" else platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_peak_gflops() -> dict:
    """The CPU's peak arithmetic rate, from its features: threads × clock × FLOPs per cycle, where a core
    issues ASSUMED 2 fused multiply-adds per cycle on its vector width (AVX-512 on Intel; AMD Zen 4 runs
    512-bit instructions on 256-bit units, so 256 there). bf16 dot products (avx512_bf16) double it."""
    flags = cpu_flags()
    mhz = 0.0
    try:
        mhz = next(float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        pass
    width = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    if width == 512 and "AMD" in cpu_name():
        width = 256
    fp32_per_cycle = width // 32 * 2 * 2  # lanes × 2 (multiply + add) × 2 FMA units
    cores = torch.get_num_threads()
    fp32 = cores * mhz / 1000 * fp32_per_cycle
    return {"fp32_gflops": round(fp32, 1), "bf16_gflops": round(2 * fp32 if cpu_has_native_bf16() else fp32, 1),
            "threads": cores, "clock_mhz": mhz, "datapath_bits": width, "fma_units_assumed": 2}
