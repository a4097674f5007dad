"""The datasets fastccfs knows by name (a registry: fastccfs.register("dataset", name, Dataset(...))),
where a dataset's input is (locate: cheap, paths and stat, so an up-to-date store is found without
reading any image) and which reader turns it into splits (fastccfs.readers).
"""
from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fastccfs import registry
from fastccfs.config import dataset_info
from fastccfs.errors import UserError
from fastccfs.readers import RawDataset, Source, read_cifar, read_demo, read_imagefolder, read_npz, read_tiny

DEMO_ZIP = Path(__file__).resolve().parent / "data" / "cifar10-demo.zip"
# The published forgetting scores of the demo's train images, in its store's order (data/make_demo.py).
DEMO_SCORES = DEMO_ZIP.with_name("forgetting_demo.npy")


@dataclass(frozen=True)
class Dataset:
    """A dataset known by name (fastccfs.registry, kind "dataset"): `fastccfs convert NAME`, `fastccfs run
    NAME` and make_loader("NAME") find it. locate(root: Path, download: bool) → its Source (cheap: paths and
    stat; a one-line error naming what to put where); read(source) → a RawDataset in the canonical order;
    mean/std: its normalisation (None: computed from the train split when converting)."""

    locate: Callable
    read: Callable
    mean: tuple | None = None
    std: tuple | None = None


def builtin_names() -> tuple[str, ...]:
    return registry.names("dataset")


def dataset_help() -> str:
    """What a DATASET argument accepts, for every command's help."""
    return f"{', '.join(builtin_names())}, or a path to an ImageFolder tree/zip or .npz"


# ----------------------------------------------------------------------------------------- locate


def locate(dataset: str, root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """Find the input of DATASET (a registered name, or a path to an ImageFolder tree/zip or .npz)."""
    if dataset in builtin_names():
        source = registry.get("dataset", dataset).locate(Path(root if root is not None else "."), download)
        source.dataset = dataset
        return source
    check_name(dataset)
    path = Path(dataset)
    if path.suffix == ".npz":
        return Source(path.stem, "npz", path, [path])
    inputs = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return Source(path.stem if path.is_file() else path.resolve().name, "imagefolder", path, inputs)


def check_name(dataset: str) -> None:
    """A registered name or the path of a dataset that exists; else one line saying what is accepted."""
    if dataset in builtin_names():
        return
    path = Path(dataset)
    if path.suffix == ".npz" and not path.is_file():
        raise UserError(f"{path}: no such .npz file")
    if path.is_dir() or (path.suffix in (".zip", ".npz") and path.is_file()):
        return
    raise UserError(
        f"unknown dataset {dataset!r}: use one of {', '.join(builtin_names())}, or the path of an ImageFolder "
        "tree (ROOT/train/<class>/…), a zip of one, or an .npz with x_train, y_train, x_test, y_test"
    )


def _locate_builtin(name: str, root: Path, download: bool) -> Source:
    info = dataset_info(name)
    archive, extracted = info["archive"], info["extracted"]
    candidates = [root / extracted, root / archive]
    # Also accept ROOT pointing at the extracted folder or the archive itself.
    if root.name == extracted or (root.is_file() and root.suffix in (".zip", ".gz")):
        candidates.insert(0, root)
    for path in candidates:
        if path.is_dir():
            return Source(name, name, path, sorted(p for p in path.rglob("*") if p.is_file()))
        if path.is_file():
            return Source(name, name, path, [path])
    if download:
        target = root / archive
        fetch(info["url"], target)
        return Source(name, name, target, [target])
    raise UserError(
        f"{name} not found under {root}: put {archive} (from {info['url']}) at {root / archive}, "
        f"or extract it to {root / extracted}/, or pass --download"
    )


def fetch(url: str, target: Path) -> None:
    """Download URL to TARGET through a temporary file. FASTCCFS_MIRROR replaces the URL's directory."""
    mirror = os.environ.get("FASTCCFS_MIRROR")
    if mirror:
        url = mirror.rstrip("/") + "/" + url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except OSError as e:  # URLError is an OSError
        Path(tmp).unlink(missing_ok=True)
        raise UserError(
            f"could not download {url} ({getattr(e, 'reason', e)}); download it elsewhere and put it at {target}"
        ) from e


# ------------------------------------------------------------------------------------------- read


def read(source: Source) -> RawDataset:
    """SOURCE's splits in canonical order, labels checked: by its registered dataset's reader, or (a user's
    path) as an ImageFolder or an .npz."""
    entry = registry.get("dataset", source.dataset) if source.dataset else None
    raw = entry.read(source) if entry else {"imagefolder": read_imagefolder, "npz": read_npz}[source.kind](source)
    for split_name, split in raw.splits.items():
        if len(split) == 0 and not (split_name == "test" and split.source_split is None):  # None: train-only set
            raise UserError(f"{source.path}: the {split_name} split is empty")
        bad = (split.labels < 0) | (split.labels >= len(raw.classes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{source.path}: {split_name} sample {i} has label {int(split.labels[i])}, "
                f"outside the {len(raw.classes)} classes"
            )
    empty = np.flatnonzero(np.bincount(raw.splits["train"].labels, minlength=len(raw.classes)) == 0)
    if len(empty):  # a class no filter or evaluation could learn, and IPC images of it cannot be selected
        names = ", ".join(f"{c} ({raw.classes[c]})" if raw.classes[c] != str(c) else str(c) for c in empty[:8])
        raise UserError(f"{source.path}: class(es) {names}{' …' if len(empty) > 8 else ''} have no train images (the "
                        f"labels skip them; {len(raw.classes)} classes): relabel to 0…C−1 without gaps (e.g. "
                        "np.unique(y_train, return_inverse=True)), or leave those classes out")
    if entry is not None and entry.mean is not None:
        raw.mean, raw.std = list(entry.mean), list(entry.std)
    return raw


# the CIFAR-10 subset bundled in the package.
def _official(name: str, reader: Callable) -> Dataset:
    info = dataset_info(name)
    return Dataset(lambda root, download: _locate_builtin(name, root, download), reader, tuple(info["mean"]),
                   tuple(info["std"]))


registry.register("dataset", "cifar10", _official("cifar10", read_cifar))
registry.register("dataset", "cifar100", _official("cifar100", read_cifar))
registry.register("dataset", "tiny-imagenet", _official("tiny-imagenet", read_tiny))
registry.register("dataset", "demo", Dataset(lambda root, download: Source("demo", "imagefolder", DEMO_ZIP, [DEMO_ZIP]),
                                             read_demo, tuple(dataset_info("demo")["mean"]),
                                             tuple(dataset_info("demo")["std"])))

