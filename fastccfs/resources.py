"""What a command will need (disk for what it writes, memory for what it holds) against what the machine
has, computed from the settings before any decoding or training: one line (need, have, what to change)
when it does not fit. A leaf: it imports nothing of fastccfs but the error type."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from fastccfs.errors import UserError


def human(size: float) -> str:
    """Bytes in a unit that shows the difference: KB under 1 MB, MB under 1 GB, GB (2 decimals) above."""
    if size < 2**10:
        return f"{size:,.0f} bytes"
    for unit, scale in (("KB", 2**10), ("MB", 2**20)):
        if size < scale * 2**10:
            return f"{size / scale:,.0f} {unit}"
    return f"{size / 2**30:,.2f} GB"


def free_disk(path: str | os.PathLike) -> int:
    """Free bytes on the file system of PATH (its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def available_memory(device="cpu") -> int:
    """Bytes a new allocation can have on DEVICE: the kernel's MemAvailable for the CPU (what can be had
    without swapping), the free device memory for CUDA."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def require_disk(need: int, path: str | os.PathLike, what: str, advice: str) -> None:
    """WHAT needs NEED bytes written under PATH: refused with one line when its file system has less free."""
    have = free_disk(path)
    if need > have:
        raise UserError(f"{what} needs {human(need)} free in {path}, which has {human(have)}: {advice}")


def require_memory(need: int, device, what: str, advice: str) -> None:
    """WHAT holds NEED bytes on DEVICE: refused with one line when less is available there."""
    have = available_memory(device)
    if need > have:
        raise UserError(f"{what} needs {human(need)} of memory on {device}, which has {human(have)} available: "
                        f"{advice}")
