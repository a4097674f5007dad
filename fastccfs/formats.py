"""The FFCV and DALI forms of a store, written next to it in the cache, and their checks.

  CACHE/<dataset>/ffcv/<split>.beton   fields image (raw or JPEG pages), label, index (the store index)
  CACHE/<dataset>/ffcv/<split>.json    what it was written from, its size in bytes
  CACHE/<dataset>/dali/<split>/        one file per sample, <store index>.rgb (raw H×W×3 bytes) or .jpg,
                                       and index.json (pages, shape, count, what it was written from)

DALI gets one file per sample because its file reader takes any list of files with a label each: a
synthetic set is the list of its samples' files, and the label slot carries the store index. (Tar shards
would need every shard read for a subset; one .npy per sample has no label slot.) Raw vs JPEG pages:
measured in benchmarks/README.md; raw is the default for both (32–64 px images decode slower than they read).

Each form is written to a temporary path and renamed into place, and rewritten only when the store or
the options changed (the store's fingerprint and creation time, pages, JPEG quality).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fastccfs.atomic import atomic_path, write_json
from fastccfs.errors import UserError
from fastccfs.store import Store

FORMATS = ("ffcv", "dali")
PAGES = ("raw", "jpg")
DEFAULT_PAGES = "raw"
FORMAT_VERSION = 1
INSTALL = {
    "ffcv": "apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config && pip install ffcv==1.0.2 "
            "(or: pip install -e '.[loaders]' in a fastccfs checkout)",
    "dali": "pip install nvidia-dali-cuda120 (or: pip install -e '.[loaders]' in a fastccfs checkout)",
}


def require(fmt: str) -> None:
    """Import the library of FMT, or fail with the command that installs it."""
    try:
        if fmt == "ffcv":
            import ffcv.loader  # noqa: F401
        else:
            import nvidia.dali  # noqa: F401
    except ImportError as e:
        raise UserError(f"the {fmt} backend needs {'FFCV' if fmt == 'ffcv' else 'NVIDIA DALI'}, which is not "
                        f"installed ({e}); install it with: {INSTALL[fmt]}") from None


def location(store: Store, fmt: str) -> Path:
    """Where FMT's form of STORE lives: beside the store's split folder."""
    split = store.meta["split"]
    return store.path.parent / fmt / (f"{split}.beton" if fmt == "ffcv" else split)


def _meta_path(path: Path, fmt: str) -> Path:
    return path.with_suffix(".json") if fmt == "ffcv" else path / "index.json"


def _source(store: Store, pages: str, quality: int) -> dict:
    return {"format_version": FORMAT_VERSION, "store": str(store.path.resolve()),
            "fingerprint": store.meta["fingerprint"], "store_created": store.meta["created"],
            "pages": pages, "jpeg_quality": quality if pages == "jpg" else None}


def convert_store(store: Store, fmt: str, pages: str = DEFAULT_PAGES, jpeg_quality: int = 90,
                  workers: int | None = None, progress: bool = True) -> Path:
    """Write FMT's form of STORE (or find it up to date); returns its path."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if pages not in PAGES:
        raise UserError(f"unknown pages {pages!r}: use raw or jpg")
    require(fmt)
    path = location(store, fmt)
    source = _source(store, pages, jpeg_quality)
    try:
        meta = json.loads(_meta_path(path, fmt).read_text())
        if meta["source"] == source and path.exists():
            return path
    except (OSError, ValueError, KeyError):
        pass
    workers = workers or os.cpu_count() or 1
    if fmt == "ffcv":
        from fastccfs.loaders.ffcv_backend import write_beton

        with atomic_path(path) as tmp:
            write_beton(store, tmp, pages, jpeg_quality, workers, progress)
            size = tmp.stat().st_size
        # The .json comes second: a .beton without its .json counts as absent and is rewritten.
        write_json(_meta_path(path, fmt), {"source": source, "bytes": size, "count": len(store)})
    else:
        from fastccfs.loaders.dali_backend import write_files

        with atomic_path(path) as tmp:
            tmp.mkdir()
            sizes = write_files(store, tmp, pages, jpeg_quality, workers, progress)
            np.save(tmp / "sizes.npy", sizes)
            write_json(tmp / "index.json", {"source": source, "count": len(store),
                                            "shape": list(store.images.shape[1:])})
    return path


def open_form(store: Store, fmt: str) -> tuple[Path, dict]:
    """FMT's form of STORE, checked whole: missing, outdated or truncated forms are one-line errors."""
    require(fmt)
    path = location(store, fmt)
    name, split = store.meta["dataset"], store.meta["split"]
    again = f"run `fastccfs convert {name} --to {fmt}`"
    try:
        meta = json.loads(_meta_path(path, fmt).read_text())
    except (OSError, ValueError):
        meta = None
    if meta is None or not path.exists():
        raise UserError(f"no {fmt} form of {name}/{split} at {path}: {again}")
    if meta["source"]["fingerprint"] != store.meta["fingerprint"] or \
            meta["source"]["store_created"] != store.meta["created"]:
        raise UserError(f"{path} was written from an older store of {name}: {again}")
    if fmt == "ffcv":
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise UserError(f"{path} is truncated or damaged ({size} of {meta['bytes']} bytes): {again}")
    else:
        sizes = np.load(path / "sizes.npy")
        ext = meta["source"]["pages"].replace("raw", "rgb")
        with ThreadPoolExecutor(8) as pool:  # one stat per file; threads hide the file system's latency
            found = np.fromiter(pool.map(_size, (path / f"{i:07d}.{ext}" for i in range(len(sizes)))), np.int64,
                                count=len(sizes))
        bad = np.flatnonzero(found != sizes)
        if len(bad):
            first = path / f"{bad[0]:07d}.{ext}"
            what = "missing" if found[bad[0]] < 0 else f"{found[bad[0]]} of {sizes[bad[0]]} bytes"
            raise UserError(f"{len(bad)} sample file(s) of {path} are missing or truncated ({first}: {what}): {again}")
    return path, meta


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1
