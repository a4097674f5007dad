"""The on-disk forms of a store that some loader backends read (FFCV's .beton, DALI's per-sample files),
written next to it in the cache, and their checks. What each form is lives in its backend's record
(fastccfs.loaders.backends.Form); this module is what they share:

  CACHE/<dataset>/<form folder>/<split>…   the form, and a record of what it was written from

Each form is written to a temporary path and renamed into place, and rewritten only when the store or
the options changed (the store's fingerprint and creation time, pages, JPEG quality). Raw vs JPEG pages:
measured in benchmarks/README.md; raw is the default (32–64 px images decode slower than they read).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from fastccfs import registry
from fastccfs.errors import UserError

PAGES = ("raw", "jpg")
DEFAULT_PAGES = "raw"
FORMAT_VERSION = 1


def form_names() -> tuple[str, ...]:
    """The registered backends that have an on-disk form (`convert --to`)."""
    return tuple(name for name in registry.names("backend") if registry.get("backend", name).form is not None)


def form_folders() -> set[str]:
    """The folders those forms take beside a dataset's split folders (a store's own)."""
    return {registry.get("backend", name).form.folder for name in form_names()}


def form_of(fmt: str):
    """The Form of backend FMT, or a one-line error for a backend that has none."""
    if fmt not in form_names():
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(form_names())}")
    return registry.get("backend", fmt).form


def require(fmt: str) -> None:
    """Import the library of FMT, or fail with the command that installs it."""
    form = form_of(fmt)
    try:
        importlib.import_module(form.library)
    except ImportError as e:
        raise UserError(f"the {fmt} backend needs {form.title}, which is not installed ({e}); install it with: "
                        f"{form.install}") from None


def location(store, fmt: str) -> Path:
    """Where FMT's form of STORE lives: beside the store's split folder."""
    return form_of(fmt).location(store)


def _source(store, pages: str, quality: int) -> dict:
    return {"format_version": FORMAT_VERSION, "store": str(store.path.resolve()),
            "fingerprint": store.meta["fingerprint"], "store_created": store.meta["created"],
            "pages": pages, "jpeg_quality": quality if pages == "jpg" else None}


def convert_store(store, fmt: str, pages: str = DEFAULT_PAGES, jpeg_quality: int = 90,
                  workers: int | None = None, progress: bool = True) -> Path:
    """Write FMT's form of STORE (or find it up to date); returns its path."""
    form = form_of(fmt)
    if pages not in PAGES:
        raise UserError(f"unknown pages {pages!r}: use raw or jpg")
    require(fmt)
    path = form.location(store)
    source = _source(store, pages, jpeg_quality)
    record = form.record(path)
    if record is not None and record.get("source") == source and path.exists():
        return path
    form.write(store, path, source, pages, jpeg_quality, workers or os.cpu_count() or 1, progress)
    return path


def open_form(store, fmt: str) -> tuple[Path, dict]:
    """FMT's form of STORE, checked whole: missing, outdated or truncated forms are one-line errors."""
    form = form_of(fmt)
    require(fmt)
    path = form.location(store)
    name, split = store.meta["dataset"], store.meta["split"]
    again = f"run `fastccfs convert {name} --to {fmt}`"
    record = form.record(path)
    if record is None or not path.exists():
        raise UserError(f"no {fmt} form of {name}/{split} at {path}: {again}")
    if record["source"]["fingerprint"] != store.meta["fingerprint"] or \
            record["source"]["store_created"] != store.meta["created"]:
        raise UserError(f"{path} was written from an older store of {name}: {again}")
    damage = form.damage(path, record)
    if damage:
        raise UserError(f"{damage}: {again}")
    return path, record
