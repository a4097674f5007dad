"""The synthetic set CCFS produces: distilled images plus indices of real images of a store."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastccfs.atomic import atomic_path, save_arrays


@dataclass
class SyntheticSet:
    distilled_images: np.ndarray  # uint8 N×H×W×3
    distilled_labels: np.ndarray  # int64
    real_indices: np.ndarray  # int64 store indices, in the order they were chosen

    def __len__(self) -> int:
        return len(self.distilled_labels) + len(self.real_indices)

    def save(self, path: str | os.PathLike, store, via=atomic_path) -> None:
        save_arrays(path, via=via, distilled_images=self.distilled_images, distilled_labels=self.distilled_labels,
                    real_indices=self.real_indices, real_labels=store.labels[self.real_indices])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SyntheticSet":
        with np.load(path) as data:
            return cls(data["distilled_images"], data["distilled_labels"], data["real_indices"])

    def loader_arguments(self) -> dict:
        """make_loader(store, **these) serves this set."""
        return {"indices": self.real_indices, "extra_images": self.distilled_images,
                "extra_labels": self.distilled_labels}


def check_export_target(out: str | os.PathLike) -> Path:
    """OUT must be new or an empty folder: export never replaces files it did not write."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        from fastccfs.errors import UserError

        raise UserError(f"--out {out} exists and is not an empty folder: pass a new folder (export never "
                        "replaces files it did not write)")
    return out


def export_imagefolder(synthetic: SyntheticSet, store, out: str | os.PathLike) -> Path:
    """Write the set as PNGs in an ImageFolder (OUT/<class>/distilled_00000.png, real_012345.png)."""
    from PIL import Image

    out = check_export_target(out)
    if out.is_dir():
        out.rmdir()  # empty: the export takes its place
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for c in store.classes:
            (tmp / c).mkdir()
        for j, (img, label) in enumerate(zip(synthetic.distilled_images, synthetic.distilled_labels)):
            Image.fromarray(img).save(tmp / store.classes[label] / f"distilled_{j:05d}.png")
        for i in synthetic.real_indices:
            Image.fromarray(np.asarray(store.images[i])).save(tmp / store.classes[store.labels[i]] / f"real_{i:06d}.png")
    return out
