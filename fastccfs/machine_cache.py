"""Decisions and measurements made once per machine, kept as JSON files in the cache folder
($FASTCCFS_CACHE or ~/.cache/fastccfs): precision.json (bf16 or fp32 per model), eval_jobs.json (runs side
by side). Each entry's key names what it depends on (CPU,
torch, threads, model, shape), so another machine or setting measures anew."""
from __future__ import annotations

import json
from pathlib import Path


def path_of(name: str) -> Path:
    from fastccfs.store import default_cache

    return default_cache() / name


def load(name: str) -> dict:
    """Every entry of the cache file NAME ({} when missing or unreadable)."""
    try:
        entries = json.loads(path_of(name).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def keep(name: str, key: str, value) -> None:
    """Add KEY → VALUE to the cache file NAME (atomically); a read-only home keeps nothing, silently: the
    caller still holds the value for this process."""
    from fastccfs.atomic import write_json

    path = path_of(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**load(name), key: value})
    except OSError:
        pass
