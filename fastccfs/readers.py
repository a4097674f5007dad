"""The layouts users have on disk, read into splits in each dataset's canonical order (README, "Orders"):
  - CIFAR-10/100: the official train order of the pickled batches;
  - Tiny-ImageNet: sorted wnids; within a class, file names in sorted string order (`n…_0, n…_1,
    n…_10, …`), which is the order of the published forgetting scores; val labels from
    val/val_annotations.txt, in that file's order;
  - ImageFolder (a tree or a zip of one): sorted class folders; sorted file names within a class;
  - .npz: x_train, y_train, x_test, y_test (optional: classes).
Each reader works in two steps so that an up-to-date store is found without reading any image: a
Source names the input files (cheap: paths and stat), and a reader turns it into RawSplits. A RawSplit
holds either decoded pixels (pickles, .npz) or a list of encoded images that store.convert decodes in
parallel. fastccfs.datasets names the datasets and picks the reader.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastccfs.config import dataset_info
from fastccfs.errors import UserError
from fastccfs.images import IMAGE_EXTENSIONS, as_nhwc_uint8


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


def _unpickle(data: bytes, where: str) -> dict:
    try:
        return pickle.loads(data, encoding="latin1")
    except Exception as e:  # truncated or not a pickle: EOFError, UnpicklingError, ValueError, …
        raise UserError(f"{where}: not a readable CIFAR pickle ({type(e).__name__}: {e}); re-download it") from e


def read_cifar(source: Source) -> RawDataset:
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
            if x.ndim != 2 or x.shape[1] != 3072:
                raise UserError(f"{member} of {source.path} holds data of shape {x.shape}: expected (N, 3072)")
            if len(x) != len(d[label_key]):
                raise UserError(f"{member} of {source.path} holds {len(x)} images but {len(d[label_key])} labels: "
                                f"the batch is damaged; re-download {info['archive']}")
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


def read_tiny(source: Source) -> RawDataset:
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


def read_imagefolder(source: Source) -> RawDataset:
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
    if "train" not in images:  # class folders at the top: a distilled set's layout (SRe²L/CDA: new000/…)
        flat = [n for n in tree.names if n.count("/") == 1 and n.lower().endswith(IMAGE_EXTENSIONS)]
        for n in flat:
            images.setdefault("train", {}).setdefault(n.split("/")[0], []).append(n)
        top = ""
    if "train" not in images:
        raise UserError(f"{source.path}: no images under {top}train/<class>/ (nor in class folders at its top): not "
                        "an ImageFolder tree")
    test_name = "val" if "val" in images else "test" if "test" in images else None
    if test_name is None:  # a train-only set (a distilled one): served by the loaders; a run needs a test split
        print(f"fastccfs: note: {source.path} has no val/ or test/ folder: its test split is empty (the loaders "
              "serve its train split; `fastccfs run` needs a test split)", file=sys.stderr)
    classes = sorted(images["train"])
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, folder in (("train", "train"), ("test", test_name)):
        files, labels = [], []
        for cls in sorted(images.get(folder, {})):
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


def read_demo(source: Source) -> RawDataset:
    """The bundled subset: an ImageFolder zip whose train files are named by their official CIFAR-10 train
    index, so the published CIFAR-10 scores apply to it."""
    raw = read_imagefolder(source)
    names = raw.splits["train"].files
    raw.splits["train"].parent = ("cifar10", 50_000, np.array([int(Path(n).stem) for n in names], np.int64))
    return raw


def read_npz(source: Source) -> RawDataset:
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


# Built-in datasets: the official archives (configs/datasets.yaml: file names, URLs, normalisation), and
