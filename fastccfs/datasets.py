"""Readers for the dataset layouts users have on disk.

Each reader works in two steps so that an up-to-date store is found without reading any image:
`locate()` finds the input files (cheap: paths and stat) and `read()` turns them into `RawSplit`s in
the dataset's canonical order (DESIGN.md, "Orders"):
  - CIFAR-10/100: the official train order of the pickled batches;
  - Tiny-ImageNet: sorted wnids; within a class, file names in sorted string order (`n…_0, n…_1,
    n…_10, …`), which is the order of the published forgetting scores; val labels from
    val/val_annotations.txt, in that file's order;
  - ImageFolder (a tree or a zip of one): sorted class folders; sorted file names within a class.
A RawSplit holds either decoded pixels (pickles, .npz) or a list of encoded images that store.convert
decodes in parallel.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fastccfs import registry
from fastccfs.config import dataset_info
from fastccfs.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
DEMO_ZIP = Path(__file__).resolve().parent / "data" / "cifar10-demo.zip"


@dataclass
class RawSplit:
    """One split in canonical order: labels plus either pixels or encoded files to decode."""

    labels: np.ndarray  # int64 (N,)
    pixels: np.ndarray | None = None  # uint8 (N, H, W, 3), when the source is already decoded
    files: list[str] | None = None  # encoded images: paths, or member names of `archive`
    archive: str | None = None  # zip holding `files`
    source_split: str = ""  # the split's name in the source (Tiny-ImageNet's test split is "val")
    # For a subset of a published dataset: each sample's index in the full dataset's canonical order,
    # so that published per-sample scores apply (see scores.load_scores).
    parent: tuple[str, int, np.ndarray] | None = None  # (dataset, its size, indices)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RawDataset:
    name: str
    classes: list[str]  # class ids as the source names them (wnids for Tiny-ImageNet)
    class_names: list[str]  # human-readable names
    splits: dict[str, RawSplit]  # "train" and "test"
    mean: list[float] | None = None  # None: computed from the train split
    std: list[float] | None = None


@dataclass
class Source:
    """Where a dataset's input lies; enough to fingerprint it without reading it."""

    name: str  # the store's name under the cache: cifar10, tiny-imagenet, or a user path's stem
    kind: str  # cifar10 | cifar100 | tiny-imagenet | imagefolder | npz
    path: Path  # the archive, folder or file to read
    inputs: list[Path] = field(default_factory=list)  # the files whose change invalidates the store
    dataset: str | None = None  # the registered dataset it is (None: a user's path)

    def fingerprint(self, options: dict) -> str:
        """A hash of the inputs' paths, sizes and modification times and of the reading options."""
        h = hashlib.sha256(repr((self.kind, sorted(options.items()))).encode())
        for p in sorted(self.inputs):
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:32]


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
    raw = entry.read(source) if entry else {"imagefolder": _read_imagefolder, "npz": _read_npz}[source.kind](source)
    for split_name, split in raw.splits.items():
        if len(split) == 0:
            raise UserError(f"{source.path}: the {split_name} split is empty")
        bad = (split.labels < 0) | (split.labels >= len(raw.classes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{source.path}: {split_name} sample {i} has label {int(split.labels[i])}, "
                f"outside the {len(raw.classes)} classes"
            )
    if entry is not None and entry.mean is not None:
        raw.mean, raw.std = list(entry.mean), list(entry.std)
    return raw


def _unpickle(data: bytes, where: str) -> dict:
    try:
        return pickle.loads(data, encoding="latin1")
    except Exception as e:  # truncated or not a pickle: EOFError, UnpicklingError, ValueError, …
        raise UserError(f"{where}: not a readable CIFAR pickle ({type(e).__name__}: {e}); re-download it") from e


def _read_cifar(source: Source) -> RawDataset:
    info = dataset_info(source.kind)
    if source.kind == "cifar10":
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, label_key = "batches.meta", "label_names", "labels"
    else:
        parts = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, label_key = "meta", "fine_label_names", "fine_labels"

    if source.path.is_dir():

        def load(member: str) -> dict:
            f = source.path / member
            if not f.is_file():
                raise UserError(f"{f} is missing: re-extract {info['archive']} or delete {source.path}")
            return _unpickle(f.read_bytes(), str(f))

    else:
        try:
            tar = tarfile.open(source.path, "r:gz")
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"{source.path}: not a readable .tar.gz ({e}); re-download it") from e

        def load(member: str) -> dict:
            if member not in members:
                raise UserError(f"{source.path} has no {info['extracted']}/{member}: it is not the {source.kind} archive")
            try:
                data = tar.extractfile(members[member]).read()
            except (tarfile.TarError, OSError, EOFError) as e:
                raise UserError(f"{source.path}: cannot read {member} ({e}); re-download it") from e
            return _unpickle(data, f"{source.path}:{member}")

    class_names = list(load(meta_file)[names_key])
    splits = {}
    for split, batch_files in parts.items():
        xs, ys = [], []
        for member in batch_files:
            d = load(member)
            if "data" not in d or label_key not in d:
                raise UserError(f"{member} of {source.path} lacks 'data' or '{label_key}': not a {source.kind} batch")
            x = np.asarray(d["data"], dtype=np.uint8)
            if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(d[label_key]):
                raise UserError(f"{member} of {source.path} holds data of shape {x.shape}: expected (N, 3072)")
            # Rows are channel-planar 32x32 RGB; the store is NHWC.
            xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d[label_key], dtype=np.int64))
        splits[split] = RawSplit(np.concatenate(ys), pixels=np.ascontiguousarray(np.concatenate(xs)), source_split=split)
    return RawDataset(source.kind, class_names, class_names, splits)


class _Tree:
    """Uniform listing/reading over a folder or a zip file (read in place, never extracted)."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
                self.names = [n for n in self.zip.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as e:
                raise UserError(f"{path}: not a readable zip file ({e})") from e
        else:
            self.names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        self.name_set = set(self.names)

    def read_text(self, name: str) -> str:
        if name not in self.name_set:
            raise KeyError(name)
        data = self.zip.read(name) if self.zip else (self.path / name).read_bytes()
        return data.decode("utf-8")

    def file(self, name: str) -> str:
        """What the decoder opens: the member name inside the zip, or the full path."""
        return name if self.zip else str(self.path / name)

    @property
    def archive(self) -> str | None:
        return str(self.path) if self.zip else None


def _read_tiny(source: Source) -> RawDataset:
    tree = _Tree(source.path)
    # The zip holds one top folder tiny-imagenet-200/; the extracted folder is that folder itself.
    top = "tiny-imagenet-200/" if tree.zip else ""
    try:
        wnids = sorted(tree.read_text(top + "wnids.txt").split())
    except KeyError:
        raise UserError(f"{source.path} is not Tiny-ImageNet-200: it has no {top}wnids.txt") from None
    words = {}
    if top + "words.txt" in tree.name_set:
        for line in tree.read_text(top + "words.txt").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.strip()

    by_class: dict[str, list[str]] = {w: [] for w in wnids}
    prefix = top + "train/"
    for n in tree.names:
        if n.startswith(prefix) and n.lower().endswith(".jpeg"):
            parts = n[len(prefix):].split("/")
            if len(parts) == 3 and parts[1] == "images" and parts[0] in by_class:
                by_class[parts[0]].append(n)
    # The official set has <wnid>_0 … <wnid>_499 per class; a sample's index in it is
    # 500·class + the rank of its number among those names sorted as strings.
    official_rank = {str(k): r for r, k in enumerate(sorted(str(i) for i in range(500)))}
    files, labels, parent = [], [], []
    for c, wnid in enumerate(wnids):
        if not by_class[wnid]:
            raise UserError(f"{source.path}: class folder {prefix}{wnid}/images/ is missing or empty (listed in wnids.txt)")
        # Sorted as strings: n…_0, n…_1, n…_10, n…_100 — the published scores' order.
        names = sorted(by_class[wnid], key=lambda n: n.rsplit("/", 1)[1])
        files += [tree.file(n) for n in names]
        labels += [c] * len(names)
        parent += [500 * c + official_rank.get(n.rsplit("_", 1)[1].split(".")[0], -1) for n in names]
    train = RawSplit(np.asarray(labels, np.int64), files=files, archive=tree.archive, source_split="train")
    parent = np.asarray(parent, np.int64)
    if len(wnids) == 200 and (parent >= 0).all():  # the official naming: published scores apply
        train.parent = ("tiny-imagenet", 100_000, parent)

    ann = top + "val/val_annotations.txt"
    try:
        lines = tree.read_text(ann).splitlines()
    except KeyError:
        raise UserError(f"{source.path} is not Tiny-ImageNet-200: it has no {ann}") from None
    index = {w: c for c, w in enumerate(wnids)}
    vfiles, vlabels = [], []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"{ann} line {k}: expected '<file>\\t<wnid>\\t…', got {line!r}")
        if fields[1] not in index:
            raise UserError(f"{ann} line {k}: class {fields[1]} is not in wnids.txt")
        name = top + "val/images/" + fields[0]
        if name not in tree.name_set:
            raise UserError(f"{source.path}: {name} is listed in val_annotations.txt but missing")
        vfiles.append(tree.file(name))
        vlabels.append(index[fields[1]])
    test = RawSplit(np.asarray(vlabels, np.int64), files=vfiles, archive=tree.archive, source_split="val")
    names = [words.get(w, w).split(",")[0].strip() for w in wnids]
    return RawDataset("tiny-imagenet", wnids, names, {"train": train, "test": test})


def _read_imagefolder(source: Source) -> RawDataset:
    tree = _Tree(source.path)
    # Allow one wrapping folder (a zip of "mydata/train/…" or of "train/…").
    tops = {n.split("/", 1)[0] for n in tree.names if "/" in n}
    top = ""
    if "train" not in tops and len(tops) == 1:
        top = tops.pop() + "/"
    images: dict[str, dict[str, list[str]]] = {}
    for n in tree.names:
        if not n.startswith(top):
            continue
        parts = n[len(top):].split("/")
        if len(parts) >= 3 and parts[0] in ("train", "val", "test") and n.lower().endswith(IMAGE_EXTENSIONS):
            images.setdefault(parts[0], {}).setdefault(parts[1], []).append(n)
    if "train" not in images:
        raise UserError(f"{source.path}: no images under {top}train/<class>/: not an ImageFolder tree")
    test_name = "val" if "val" in images else "test" if "test" in images else None
    if test_name is None:
        raise UserError(f"{source.path}: no {top}val/<class>/ or {top}test/<class>/ folder with images")
    classes = sorted(images["train"])
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, folder in (("train", "train"), ("test", test_name)):
        files, labels = [], []
        for cls in sorted(images[folder]):
            if cls not in index:
                empty = (source.path / top / "train" / cls).is_dir() if source.path.is_dir() else any(
                    n.startswith(f"{top}train/{cls}/") for n in tree.names)
                if empty:
                    raise UserError(f"{source.path}: {top}train/{cls}/ holds no images: every class needs train "
                                    "images (add them, or remove the class from every split)")
                raise UserError(f"{source.path}: {top}{folder}/{cls}/ is a class that {top}train/ does not have")
            names = sorted(images[folder][cls])
            files += [tree.file(n) for n in names]
            labels += [index[cls]] * len(names)
        splits[split] = RawSplit(np.asarray(labels, np.int64), files=files, archive=tree.archive, source_split=folder)
    return RawDataset(source.name, classes, classes, splits)


def _read_demo(source: Source) -> RawDataset:
    """The bundled subset: an ImageFolder zip whose train files are named by their official CIFAR-10 train
    index, so the published CIFAR-10 scores apply to it."""
    raw = _read_imagefolder(source)
    names = raw.splits["train"].files
    raw.splits["train"].parent = ("cifar10", 50_000, np.array([int(Path(n).stem) for n in names], np.int64))
    return raw


def _read_npz(source: Source) -> RawDataset:
    try:
        data = np.load(source.path, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError
        raise UserError(f"{source.path}: not a readable .npz ({type(e).__name__}: {e})") from e
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise UserError(f"{source.path} lacks {', '.join(missing)}: an .npz needs x_train, y_train, x_test, y_test")
    splits = {}
    for split in ("train", "test"):
        x, y = as_nhwc_uint8(arrays[f"x_{split}"], f"{source.path}:x_{split}"), arrays[f"y_{split}"]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{source.path}: y_{split} must be {len(x)} integer labels, got {y.dtype} {y.shape}")
        splits[split] = RawSplit(y.astype(np.int64), pixels=x, source_split=split)
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"]]
    else:
        classes = [str(c) for c in range(int(max(splits["train"].labels.max(initial=-1), 0)) + 1)]
    return RawDataset(source.name, classes, classes, splits)


def as_nhwc_uint8(x: np.ndarray, where: str, rounding: str = "refuse") -> np.ndarray:
    """Images as uint8 N×H×W×3 (the form every store and loader holds).

    Floats must be pixels in [0, 1]; those that are whole multiples of 1/255 (images read from files)
    convert exactly. Others would be rounded: rounding="refuse" says so and stops, "note" rounds and
    prints one line saying it did. Normalised floats (outside [0, 1]) are refused with their range.
    """
    if x.ndim == 3:  # greyscale N×H×W
        x = np.repeat(x[..., None], 3, axis=3)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise UserError(f"{where}: expected images N×H×W×3 (or N×3×H×W), got shape {x.shape}")
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{where}: pixels must be uint8 or floats in [0, 1], got {x.dtype}")
    if not len(x):
        return np.zeros(x.shape, np.uint8)
    low, high = float(x.min()), float(x.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise UserError(f"{where}: the images hold NaN or infinite values")
    if low < 0 or high > 1:
        raise UserError(f"{where}: float pixels range from {low:.3g} to {high:.3g}, outside [0, 1] — they look "
                        "normalised: pass unnormalised pixels in [0, 1] (x * std + mean) or uint8")
    scaled = np.asarray(x, np.float64) * 255
    exact = np.round(scaled)
    if np.abs(scaled - exact).max() > 1e-3:
        if rounding == "refuse":
            raise UserError(f"{where}: float pixels that are not whole multiples of 1/255 would be rounded to "
                            "uint8 (the form the loaders hold): pass (x * 255).round() as uint8 to accept that")
        print(f"fastccfs: note: {where}: float pixels rounded to uint8 (the form the loaders hold)")
    return np.ascontiguousarray(exact.astype(np.uint8))


# ------------------------------------------------------------------------------------------ decode


def _without_buffer_repr(message: str) -> str:
    """PIL names the in-memory buffer it read ("<_io.BytesIO object at 0x…>"): drop it, the caller names the file."""
    import re

    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", message)


def decode(data: bytes, where: str, size: int | None) -> np.ndarray:
    """One encoded image → H×W×3 uint8 (greyscale and palette images converted to RGB).

    With SIZE, the shorter side is resized to SIZE (bilinear) and the centre SIZE×SIZE kept.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes now, so a truncated file fails here with its name
            im = im.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, … for bad files
        reason = _without_buffer_repr(str(e))
        raise UserError(f"{where}: cannot decode image ({reason}); replace or remove the file") from e
    if size is not None and im.size != (size, size):
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8)


def read_bytes(file: str, zf: zipfile.ZipFile | None) -> bytes:
    try:
        return zf.read(file) if zf is not None else Path(file).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise UserError(f"{file}: cannot read ({e})") from e


# Built-in datasets: the official archives (configs/datasets.yaml: file names, URLs, normalisation), and
# the CIFAR-10 subset bundled in the package.
def _official(name: str, reader: Callable) -> Dataset:
    info = dataset_info(name)
    return Dataset(lambda root, download: _locate_builtin(name, root, download), reader, tuple(info["mean"]),
                   tuple(info["std"]))


registry.register("dataset", "cifar10", _official("cifar10", _read_cifar))
registry.register("dataset", "cifar100", _official("cifar100", _read_cifar))
registry.register("dataset", "tiny-imagenet", _official("tiny-imagenet", _read_tiny))
registry.register("dataset", "demo", Dataset(lambda root, download: Source("demo", "imagefolder", DEMO_ZIP, [DEMO_ZIP]),
                                             _read_demo, tuple(dataset_info("demo")["mean"]),
                                             tuple(dataset_info("demo")["std"])))
