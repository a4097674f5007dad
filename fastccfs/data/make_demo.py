#!/usr/bin/env python3
"""Rebuild cifar10-demo.zip, the real CIFAR-10 subset bundled for `fastccfs run demo`.

    python fastccfs/data/make_demo.py ../shared/data/cifar10-jpeg.tar.gz

An ImageFolder zip of the original JPEG bytes (no re-encoding): the first TRAIN_PER_CLASS train images
of each class in the official train order, named train/<class>/<official index:05d>.jpg, so that the
published per-sample scores apply to them; and the first TEST_PER_CLASS test images of each class.
The official order comes from the labels in reference-scores/cscores_CIFAR10.npz beside the archive.
Also forgetting_demo.npy: the published forgetting scores (the CCFS repository's
scores/forgetting_CIFAR10.npy) of those train images, in the demo store's order.
"""
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS, TEST_PER_CLASS = 300, 60
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def main(archive: str) -> None:
    archive = Path(archive)
    order = np.load(archive.parent / "reference-scores" / "cscores_CIFAR10.npz")["labels"]
    # The JPEG copy numbers each class's train images in official order: k-th of class c = k-th
    # occurrence of c in the official label sequence.
    official = {c: np.flatnonzero(order == c) for c in range(10)}
    out = Path(__file__).with_name("cifar10-demo.zip")
    tmp = out.with_suffix(".zip.part")
    with tarfile.open(archive) as tar, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if not (m.isfile() and len(parts) == 4):
                continue
            split, cls, k = parts[1], parts[2], int(parts[3][:-4])
            c = CLASSES.index(cls)
            if split == "train" and k < TRAIN_PER_CLASS:
                zf.writestr(f"train/{cls}/{official[c][k]:05d}.jpg", tar.extractfile(m).read())
            elif split == "test" and k < TEST_PER_CLASS:
                zf.writestr(f"test/{cls}/{k:04d}.jpg", tar.extractfile(m).read())
    tmp.replace(out)
    print(out, out.stat().st_size // 1024, "KiB")
    # The published forgetting scores of the demo's train images, in the demo store's order (classes
    # sorted, then official index): what `fastccfs.load_scores(fastccfs.datasets.DEMO_SCORES, store)` reads.
    scores = np.load(archive.parent / "reference-scores" / "forgetting_CIFAR10.npy")
    rows = np.concatenate([np.sort(official[CLASSES.index(c)][:TRAIN_PER_CLASS]) for c in sorted(CLASSES)])
    np.save(out.with_name("forgetting_demo.npy"), scores[rows])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
