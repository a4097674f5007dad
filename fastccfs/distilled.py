"""Reading a distilled set: the SRe²L/CDA folder layout, an ImageFolder, or an .npz/.pt tensor file."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from fastccfs.images import IMAGE_EXTENSIONS, as_nhwc_uint8, decode
from fastccfs.errors import UserError

_CDA_FOLDER = re.compile(r"^new(\d+)$")
_CDA_FILE = re.compile(r"^class(\d+)_id(\d+)\.\w+$")


def _folder_images(path: Path, classes: list[str], name_order: str = "numeric") -> dict[int, list[Path]]:
    """{class index: image files in order} for the CDA layout or an ImageFolder. The CDA layout's files
    are in id order (class000_id10 after class000_id9) unless name_order="string", torchvision
    ImageFolder's sorted names (id1000 before id101), which the reference code reads."""
    folders = sorted(p for p in path.iterdir() if p.is_dir())
    if not folders:
        raise UserError(f"{path}: no class folders (expected new000/class000_id000.jpg … or <class>/<image>)")
    files = {f: sorted(p for p in f.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) for f in folders}
    if all(_CDA_FOLDER.match(f.name) for f in folders) and name_order == "numeric":
        out = {}
        for f, images in files.items():
            # Ids compare as numbers: class000_id10 comes after class000_id9.
            def image_id(p, folder=f):
                m = _CDA_FILE.match(p.name)
                if not m:
                    raise UserError(f"{p}: expected a name like class{int(folder.name[3:]):03d}_id000{p.suffix}")
                return int(m.group(2))

            out[int(_CDA_FOLDER.match(f.name).group(1))] = sorted(images, key=image_id)
        return out
    if all(_CDA_FOLDER.match(f.name) for f in folders):  # string order: as sorted, class by folder number
        return {int(_CDA_FOLDER.match(f.name).group(1)): images for f, images in files.items()}
    names = [f.name for f in folders]
    if all(n in classes for n in names):
        return {classes.index(f.name): images for f, images in files.items()}
    if len(names) == len(classes):  # folders in sorted order stand for the classes in order
        return {c: files[f] for c, f in enumerate(folders)}
    raise UserError(f"{path}: its {len(names)} class folders match neither the dataset's class names nor its "
                    f"{len(classes)} classes")


def _tensor_file(path: Path):
    if path.suffix == ".npz":
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        arrays = dict(zip(("images", "labels"), obj)) if isinstance(obj, (tuple, list)) else obj
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
    x = next((arrays[k] for k in ("images", "x", "data") if k in arrays), None)
    y = next((arrays[k] for k in ("labels", "y", "targets") if k in arrays), None)
    if x is None or y is None:
        raise UserError(f"{path}: expected arrays 'images' and 'labels' (or x/y), found {', '.join(arrays)}")
    return x, np.asarray(y, np.int64).reshape(-1)


def read_distilled(path: str | os.PathLike, classes: list[str], per_class: int,
                   image_shape: tuple[int, int, int], name_order: str = "numeric") -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` distilled images of each class: (uint8 N×H×W×3, int64 labels), class-major.
    name_order: "numeric" (CDA ids as numbers) or "string" (file names as sorted strings, ImageFolder's)."""
    path = Path(path)
    num_classes = len(classes)
    if path.is_dir():
        groups = _folder_images(path, classes, name_order)
        images, labels = [], []
        for c in range(num_classes):
            chosen = groups.get(c, [])[:per_class]
            if len(chosen) < per_class:
                raise UserError(f"{path}: class {c} ({classes[c]}) has {len(chosen)} distilled images, "
                                f"{per_class} needed (⌊α·IPC⌋)")
            images += [decode(p.read_bytes(), str(p), None) for p in chosen]
            labels += [c] * per_class
        x, y = (np.stack(images) if images else np.zeros((0, *image_shape), np.uint8)), np.asarray(labels, np.int64)
    elif path.is_file() and path.suffix in (".npz", ".pt", ".pth"):
        try:
            x, y = _tensor_file(path)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{path}: not a readable tensor file ({type(e).__name__}: {e})") from e
        x = as_nhwc_uint8(np.asarray(x), str(path), rounding="note")
        if len(x) != len(y):
            raise UserError(f"{path}: {len(x)} images but {len(y)} labels")
        keep = []
        for c in range(num_classes):
            members = np.flatnonzero(y == c)[:per_class]
            if len(members) < per_class:
                raise UserError(f"{path}: class {c} ({classes[c]}) has {len(members)} distilled images, "
                                f"{per_class} needed (⌊α·IPC⌋)")
            keep.append(members)
        order = np.concatenate(keep) if keep else np.zeros(0, np.int64)
        x, y = x[order], y[order]
    else:
        raise UserError(f"{path}: a distilled set is a folder (new000/class000_id000.jpg or ImageFolder) "
                        "or an .npz/.pt file")
    if len(x) and x.shape[1:] != tuple(image_shape):
        raise UserError(f"{path}: distilled images are {x.shape[1]}×{x.shape[2]} but the dataset's are "
                        f"{image_shape[0]}×{image_shape[1]}")
    return x, y
