"""The Store: the one decoded, canonical form of a dataset split, and `convert` that writes it.

A store is a folder `CACHE/<dataset>/<split>/` with
  images.npy  uint8 N×H×W×3 (memory-mapped on open),
  labels.npy  int64 N,
  meta.json   dataset, split, classes, class names, mean/std, source fingerprint, format version, and
              each array file's checksum (XXH3-128).
Index i of a store is index i of the dataset's canonical order everywhere (scores, selections, runs).
Each split is written into a temporary folder and renamed into place, so a store is either complete
or absent; it is reused while the fingerprint of its input (paths, sizes, mtimes, options) matches.
Every open checks the arrays' checksums: a flipped byte or a changed
label is found before anything trains on it, and `convert` rebuilds the store from its source (or says
how). XXH3 reads ~15 GB/s from memory, so CIFAR-10's 150 MB train split costs ~10 ms (benchmarks/README.md).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastccfs import datasets
from fastccfs.atomic import PidLock, remove_stale_temps
from fastccfs.errors import UserError
from fastccfs.images import decode, read_bytes

FORMAT_VERSION = 3  # 3: meta.json holds each array's checksum
SPLITS = ("train", "test")
# Below this many images a process pool costs more than it saves.
_INLINE_DECODE = 2000


def default_cache() -> Path:
    return Path(os.environ.get("FASTCCFS_CACHE") or Path.home() / ".cache" / "fastccfs")


# What every store's meta.json holds (Store.open checks them).
_META_KEYS = {"format_version", "dataset", "split", "classes", "mean", "std", "num_samples", "image_shape"}


class DamagedStore(UserError):
    """A store whose files disagree with its meta.json: convert rebuilds it from its source."""


@dataclass
class Store:
    path: Path
    images: np.ndarray  # uint8 N×H×W×3, memory-mapped
    labels: np.ndarray  # int64 N
    meta: dict

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True) -> "Store":
        """The store in PATH, its files checked against meta.json: shapes, labels' range and (verify) each
        array's checksum; a damaged store raises DamagedStore, saying how to rebuild it."""
        path = Path(path)
        files = [path / n for n in ("images.npy", "labels.npy", "meta.json")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{path} is not a fastccfs store (missing {', '.join(missing)}): run `fastccfs convert` first")
        try:
            meta = json.loads(files[2].read_text())
        except ValueError:
            meta = None
        damaged = f"delete {path} and run `fastccfs convert` again"
        if not isinstance(meta, dict) or not _META_KEYS <= set(meta):
            raise DamagedStore(f"{files[2]} is damaged (not a store's meta.json): {damaged}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DamagedStore(f"{path} was written by another fastccfs version: run `fastccfs convert` again")
        try:
            images = np.load(files[0], mmap_mode="r")
            labels = np.load(files[1])
        except (ValueError, OSError, EOFError) as e:  # truncated: the header promises more than the file holds
            raise DamagedStore(f"{path}: images.npy or labels.npy is truncated or damaged ({e}): {damaged}") from None
        n, shape = meta["num_samples"], tuple(meta["image_shape"])
        if images.dtype != np.uint8 or images.shape != (n, *shape) or len(shape) != 3 or shape[2] != 3:
            raise DamagedStore(f"{files[0]} holds {images.dtype} {images.shape}, meta.json says uint8 "
                               f"{(n, *shape)}: {damaged}")
        if labels.dtype != np.int64 or labels.shape != (n,) or (n and not 0 <= labels.min() <= labels.max()
                                                                < len(meta["classes"])):
            raise DamagedStore(f"{files[1]} does not hold {n} labels of the {len(meta['classes'])} classes: {damaged}")
        if verify:
            for name, digest in meta.get("checksums", {}).items():
                if array_checksum(path / name) != digest:
                    raise DamagedStore(f"{path / name} is damaged (its content differs from the checksum convert "
                                       f"recorded): {damaged}")
        return cls(path, images, labels, meta)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # not the dataclass's, which prints every pixel
        return f"Store({str(self.path)!r}: {len(self)} images {'×'.join(map(str, self.images.shape[1:]))}, " \
               f"{self.num_classes} classes)"

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.meta["std"])

    @property
    def parent_indices(self) -> np.ndarray | None:
        """Each sample's index in the full published dataset (meta["parent"]), when it is a subset."""
        path = self.path / "parent_indices.npy"
        return np.load(path) if path.is_file() else None

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])

    def content_fingerprint(self) -> str:
        """A hash of what a run depends on: every label, the images' shape, and every k-th image (at most
        ~4,096 of them, so it costs milliseconds). A moved, added or removed sample changes it."""
        import hashlib

        h = hashlib.sha256(repr((self.images.shape, self.classes)).encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(np.ascontiguousarray(self.images[:: max(1, len(self) // 4096)]).tobytes())
        return h.hexdigest()[:32]


def array_checksum(path: Path) -> str:
    """XXH3-128 of the file PATH."""
    import xxhash

    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def find_store(source: str | os.PathLike, split: str = "train", cache: str | os.PathLike | None = None) -> Store:
    """A store given by its folder, by a dataset folder holding split folders, or by a converted dataset's name."""
    if split not in SPLITS:
        raise UserError(f"split must be {' or '.join(SPLITS)}; got {split!r} (a dataset's val split is stored as test)")
    path = Path(source)
    for candidate in (path, path / split, Path(cache or default_cache()) / str(source) / split):
        if (candidate / "meta.json").is_file():
            return Store.open(candidate)
    raise UserError(
        f"no store for {source!r} (split {split}) as a folder or under {cache or default_cache()}: "
        f"run `fastccfs convert {source} --root DIR` first"
    )


def convert(
    dataset: str,
    root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    download: bool = False,
    size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Store]:
    """Write (or find up to date) the train and test stores of DATASET; returns them by split.

    A built-in dataset whose source is not under ROOT but which was converted before (into CACHE) is
    served from that store, with a note saying so."""
    if size is not None and size < 1:
        raise UserError(f"--size must be a positive number of pixels, got {size}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    cache_dir = Path(cache or default_cache())
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UserError(f"the cache {cache_dir} is a file: pass --cache DIR (or set FASTCCFS_CACHE) to a folder")
    try:
        source = datasets.locate(dataset, root, download)
    except UserError as e:
        if dataset not in datasets.builtin_names():
            raise
        return _converted_earlier(dataset, Path(cache or default_cache()), e)
    if size is not None:  # a resize holds the source and the SIZE × SIZE image (and its copy) in memory
        from fastccfs.resources import require_memory

        jobs = workers or os.cpu_count() or 1
        require_memory(3 * size * size * 3 * jobs, "cpu", f"convert --size {size} ({jobs} decoding process(es), "
                       f"each resizing to {size}×{size})", "pass a smaller --size (or fewer --workers)")
    fingerprint = source.fingerprint({"size": size, "format": FORMAT_VERSION})
    out = Path(cache or default_cache()) / source.name
    if all(_up_to_date(out / split, fingerprint) for split in SPLITS):
        try:
            return {split: Store.open(out / split) for split in SPLITS}
        except DamagedStore as e:  # its source is here: write it again
            print(f"fastccfs: note: {e.args[0].split(':')[0]} is damaged; converting {source.name} again",
                  file=sys.stderr)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = PidLock(out.parent / f".{source.name}.lock")
        # Another process converting the same dataset: wait for it, then use what it wrote.
        lock.acquire(wait=True, waiting_message=f"fastccfs: waiting for process {{pid}}, which is converting "
                                                f"{source.name} into {out.parent}")
    except OSError as e:
        raise UserError(f"cannot write the store into {out.parent} ({e.strerror}): pass --cache DIR (or set "
                        "FASTCCFS_CACHE) to a folder you can write") from None
    try:
        if all(_up_to_date(out / split, fingerprint) for split in SPLITS):
            try:
                return {split: Store.open(out / split) for split in SPLITS}
            except DamagedStore:
                pass
        _write_store(source, out, fingerprint, size, workers or os.cpu_count() or 1, progress)
    finally:
        lock.release()
    return {split: Store.open(out / split) for split in SPLITS}


def _write_store(source, out: Path, fingerprint: str, size, workers: int, progress: bool) -> None:
    """Decode SOURCE into CACHE/<name>/{train,test}. Both splits are written into one temporary folder
    that replaces CACHE/<name> at the end: a store is complete or absent, never a train split without
    its test split."""
    raw = datasets.read(source)
    remove_stale_temps(out.parent)  # what a killed convert left behind
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{source.name}.tmp-{os.getpid()}-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700: a shared cache needs the usual permissions
    try:
        shape = None  # every split shares the train images' H×W
        mean, std = raw.mean, raw.std
        for split in SPLITS:
            part = raw.splits[split]
            (tmp / split).mkdir()
            images = _write_images(tmp / split / "images.npy", part, shape, size, workers,
                                   f"{source.name}/{split}", progress)
            shape = images.shape[1:]
            if mean is None:  # a user dataset: statistics of its train split
                mean, std = _channel_stats(images)
            del images  # close the memmap before the rename
            np.save(tmp / split / "labels.npy", part.labels.astype(np.int64))
            if part.parent is not None:
                np.save(tmp / split / "parent_indices.npy", part.parent[2])
            meta = {
                "format_version": FORMAT_VERSION,
                "dataset": source.name,
                "split": split,
                "source_split": part.source_split,
                "source": str(source.path.resolve()),
                "fingerprint": fingerprint,
                "num_samples": len(part),
                "image_shape": list(shape),
                "classes": raw.classes,
                "class_names": raw.class_names,
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                # A subset of a published dataset: parent_indices.npy maps its samples into that set.
                "parent": None if part.parent is None else {"dataset": part.parent[0], "size": part.parent[1]},
            }
            meta["checksums"] = {f.name: array_checksum(f) for f in sorted((tmp / split).glob("*.npy"))}
            (tmp / split / "meta.json").write_text(json.dumps(meta, indent=1))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_NOTED = set()  # stores whose "served from the cache" note was printed (once per process)


def _converted_earlier(dataset: str, cache: Path, missing: UserError) -> dict[str, "Store"]:
    folder = cache / dataset
    try:
        stores = {split: Store.open(folder / split) for split in SPLITS}
    except DamagedStore as e:  # no source to rebuild it from
        raise UserError(f"{e.args[0].split(': delete')[0]}, and its source is not here to rebuild it from: "
                        f"{missing}") from None
    except UserError:
        raise UserError(f"{missing}; nor is there a converted store of it in {folder} "
                        f"(`fastccfs convert {dataset} --root DIR` writes one)") from None
    if folder not in _NOTED:
        _NOTED.add(folder)
        print(f"fastccfs: note: {dataset}'s source is not under the given --root; using the store converted earlier "
              f"in {folder} (from {stores['train'].meta['source']})", file=sys.stderr)
    return stores


def _up_to_date(path: Path, fingerprint: str) -> bool:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("fingerprint") == fingerprint
        and meta.get("format_version") == FORMAT_VERSION
        and (path / "images.npy").is_file()
        and (path / "labels.npy").is_file()
    )


def _replace_dir(new: Path, final: Path) -> None:
    """Put NEW at FINAL; an older FINAL (a store: nothing but its splits and forms) is moved aside first
    and removed after. A FINAL that is not a store is never replaced."""
    from fastccfs.formats import form_folders

    old = None
    if final.exists() and ({p.name for p in final.iterdir()} - {*SPLITS, *form_folders()} or any(
            (final / s).is_dir() and not {"images.npy", "meta.json"} & {p.name for p in (final / s).iterdir()}
            for s in SPLITS)):
        raise UserError(f"{final} exists and is not a fastccfs store: pass another --cache (convert never replaces "
                        "files it did not write)")
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.replace(final, old / final.name)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(images), 4096):
        x = np.asarray(images[start : start + 4096], dtype=np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        total_sq += (x * x).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    return list(mean), list(np.sqrt(np.maximum(total_sq / count - mean * mean, 0)))


def _write_images(path, part, shape, size, workers, desc, progress) -> np.ndarray:
    from tqdm import tqdm

    if part.pixels is not None:
        if shape is not None and part.pixels.shape[1:] != shape:
            raise UserError(f"{desc}: images are {part.pixels.shape[1:]} but the train split's are {shape}")
        _check_space(path, part.pixels.shape, desc)
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=part.pixels.shape)
        images[:] = part.pixels
        images.flush()
        return images

    if shape is None and size is not None:  # every image is resized to size × size
        shape = (size, size, 3)
    if shape is None:  # the first image fixes H×W for the dataset
        zf = zipfile.ZipFile(part.archive) if part.archive else None
        shape = decode(read_bytes(part.files[0], zf), _where(part.archive, part.files[0]), size).shape
    _check_space(path, (len(part), *shape), desc)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(part), *shape))
    n = len(part.files)
    with tqdm(total=n, desc=f"convert {desc}", unit="img", disable=not progress) as bar:
        if n < _INLINE_DECODE or workers == 1:
            _decode_into(images, 0, part.files, part.archive, size, shape, bar.update)
        else:
            step = max(256, n // (workers * 8))
            jobs = [(str(path), s, part.files[s : s + step], part.archive, size, shape) for s in range(0, n, step)]
            # fork: workers inherit the imported modules and start in milliseconds.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_die_with_parent) as pool:
                futures = {pool.submit(_decode_job, job) for job in jobs}
                while futures:
                    done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                    for f in done:
                        if f.exception() is not None:
                            for other in futures:
                                other.cancel()
                            raise f.exception()
                        bar.update(f.result())
    images.flush()
    return images


def _check_space(path: Path, shape, desc: str) -> None:
    """Images are written through a memory map, where a full disk is a SIGBUS, not an error: check first."""
    from fastccfs.resources import require_disk

    require_disk(int(np.prod(shape)) + (1 << 20), path.parents[2], desc, "free some space or pass another --cache")


def _die_with_parent() -> None:
    """Decode workers end when the converting process does, even when it is killed with SIGKILL (Linux)."""
    import ctypes
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited through fork
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers still end with the pool on any other exit
        pass


def _where(archive: str | None, file: str) -> str:
    return f"{archive}:{file}" if archive else file


def _decode_into(images, start, files, archive, size, shape, report=None) -> int:
    zf = zipfile.ZipFile(archive) if archive else None
    for k, file in enumerate(files):
        where = _where(archive, file)
        img = decode(read_bytes(file, zf), where, size)
        if img.shape != tuple(shape):
            raise UserError(
                f"{where} is {img.shape[1]}×{img.shape[0]} but the dataset's images are {shape[1]}×{shape[0]}: "
                "pass --size N to resize every image to N×N"
            )
        images[start + k] = img
        if report is not None and k % 256 == 255:
            report(256)
    if report is not None:
        report(len(files) % 256)
    return len(files)


def _decode_job(job) -> int:
    path, start, files, archive, size, shape = job
    images = np.load(path, mmap_mode="r+")
    _decode_into(images, start, files, archive, size, shape)
    images.flush()
    return len(files)
