"""Shared soft labels (`--soft-labels shared`): the CCFS appendix's evaluation protocol, soft labels
"pre-generated as CDA" — SRe²L/CDA's relabel step, FKD-style.

Per epoch e of the evaluation recipe, one crop stream over the final set: image i's RandomResizedCrop box
and flip come from (seed, e, i) alone (the same torchvision distribution the loaders draw). The teacher's
logits on those crops are computed once, in large inference batches, and stored in the run folder as
fp16, (epochs, N, C), or the K largest per crop with their classes (`--soft-labels-topk K`, FKD's
storage). Every evaluation run and every eval model then trains on those crops and targets; runs differ
only by their initialisation and batch order (each run's seed shuffles the epoch). The reference code's
protocol (`online`, the default) runs the teacher on each run's own batch instead: N_runs × models teacher
passes where this makes one.

Generation is resumable by epoch: the arrays are memory-mapped and `soft_labels.json` records the epochs
finished with each epoch's SHA-256, so a killed run continues where it stopped and an epoch damaged since
it was written is generated again (with every epoch after it). Under torchrun the ranks share the epochs.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastccfs import augment as aug
from fastccfs.loaders.order import epoch_generator, epoch_order
from fastccfs.rundir import Layout

FILL = -1e30  # the logit of a class outside a crop's top K: a target probability of exactly 0 at any temperature


def expand_top_k(values: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Top-K soft labels (values N×K, classes N×K) → N×NUM_CLASSES float32 logits, FILL outside the top K."""
    full = torch.full((len(values), num_classes), FILL, dtype=torch.float32)
    return full.scatter_(1, classes.long(), values.float())


CROP_STREAM = 7  # epoch_generator stream of the shared crops (the loaders use 0 and 1)


def nbytes(epochs: int, n: int, classes: int, topk: int | None) -> int:
    """Bytes of the stored soft labels: fp16 logits, or top-K fp16 values + int16/int32 classes."""
    if topk is None:
        return epochs * n * classes * 2
    return epochs * n * min(topk, classes) * (2 + (2 if classes <= 32767 else 4))


def epoch_crops(seed: int, epoch: int, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared crop boxes (n, 4) and flips (n,) of EPOCH: one draw for the whole set, by position."""
    gen = epoch_generator(seed, epoch, 0, CROP_STREAM)
    return aug.sample_crop_boxes(n, height, width, gen), aug.sample_flips(n, gen)


@dataclass(frozen=True)
class SharedLabels:
    """Where a run folder's shared soft labels are, and their shape (picklable: worker processes open it)."""

    folder: str
    epochs: int
    size: int
    classes: int
    topk: int | None
    seed: int

    @property
    def values_path(self) -> Path:
        return Path(self.folder) / Layout.SOFT_LABELS

    @property
    def classes_path(self) -> Path:
        return Path(self.folder) / Layout.SOFT_LABEL_CLASSES

    @property
    def record_path(self) -> Path:
        return Path(self.folder) / Layout.SOFT_LABELS_RECORD

    @property
    def kept(self) -> int:
        return self.classes if self.topk is None else min(self.topk, self.classes)

    def identity(self) -> dict:
        return {"epochs": self.epochs, "size": self.size, "classes": self.classes, "topk": self.topk,
                "seed": self.seed, "dtype": "float16"}

    def epochs_done(self) -> int:
        """Epochs already generated (0 when the files are missing, damaged or of other settings)."""
        try:
            record = json.loads(self.record_path.read_text())
            values = np.load(self.values_path, mmap_mode="r")
            shape_ok = values.shape == (self.epochs, self.size, self.kept) and values.dtype == np.float16
            if self.topk is not None:
                shape_ok = shape_ok and np.load(self.classes_path, mmap_mode="r").shape == values.shape
        except (OSError, ValueError, EOFError):
            return 0
        if not shape_ok or record.get("settings") != self.identity():
            return 0
        done = record.get("epochs_done")
        if not isinstance(done, int) or not 0 <= done <= self.epochs:
            return 0
        recorded = record.get("epoch_sha256") or []
        arrays = self.open()
        for epoch in range(done):
            if epoch >= len(recorded) or epoch_sha256(arrays, epoch) != recorded[epoch]:
                print(f"fastccfs: {self.values_path} epoch {epoch + 1} is damaged (it is not what the run wrote): "
                      f"generating epochs {epoch + 1}–{self.epochs} again", file=sys.stderr, flush=True)
                return epoch
        return done


    def open(self) -> tuple[np.ndarray, np.ndarray | None]:
        values = np.load(self.values_path, mmap_mode="r")
        return values, (np.load(self.classes_path, mmap_mode="r") if self.topk is not None else None)


def epoch_sha256(arrays, epoch: int) -> str:
    """One epoch's stored soft labels (values, and classes or None), hashed."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is not None:
            digest.update(np.ascontiguousarray(array[epoch]).tobytes())
    return digest.hexdigest()


def generate(labels: SharedLabels, teacher: torch.nn.Module, images: np.ndarray, mean, std, device, amp: str,
             batch: int, progress: bool = True, done: int | None = None) -> None:
    """Compute the missing epochs of LABELS: the teacher on each epoch's shared crops of IMAGES (the final
    set, uint8 N×H×W×3, in its order), stored as it goes (a killed run resumes at the last epoch saved).

    Under torchrun every rank calls it and computes its share: in each round of world_size epochs, rank r
    the round's r-th, written into the same memory-mapped files; rank 0 records the round once every
    rank's epochs are flushed (their hashes gathered). One process computes the same numbers alone.
    DONE: the epochs found intact (labels.epochs_done(), the same on every rank), when the caller has it."""
    from tqdm import tqdm

    from fastccfs import distributed
    from fastccfs.atomic import write_json
    from fastccfs.models import folded, memory_format
    from fastccfs.precision import autocast_dtype

    main, rank, world = distributed.is_main(), distributed.rank(), distributed.world_size()
    if done is None:  # one answer, rank 0's (it hashes every stored epoch)
        done = distributed.broadcast(labels.epochs_done() if main else None)
    hashes = (json.loads(labels.record_path.read_text()).get("epoch_sha256") or [])[:done] if done else []
    shape = (labels.epochs, labels.size, labels.kept)
    kind = np.int16 if labels.classes <= 32767 else np.int32

    def arrays(mode):
        values = np.lib.format.open_memmap(labels.values_path, mode=mode, dtype=np.float16,
                                           shape=shape if mode == "w+" else None)
        return values, (None if labels.topk is None else np.lib.format.open_memmap(
            labels.classes_path, mode=mode, dtype=kind, shape=shape if mode == "w+" else None))

    if main:  # the files exist, of their full size, before any rank writes into them
        values, classes = arrays("r+" if done else "w+")
    distributed.barrier()
    if not main:
        values, classes = arrays("r+")
    device = torch.device(device)
    fmt = memory_format(teacher, device)
    net = folded(teacher.to(device, memory_format=fmt).eval()).to(memory_format=fmt)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    _, height, width, _ = images.shape
    dtype = distributed.broadcast(  # every rank computes in rank 0's precision
        autocast_dtype(device, amp, net, (min(batch, len(images)), 3, height, width), train=False) if main else None)
    bar = tqdm(total=labels.epochs, initial=done, desc="shared soft labels", unit="epoch", disable=not progress,
               leave=False)
    for first in range(done, labels.epochs, world):
        epoch = first + rank
        if epoch < labels.epochs:
            boxes, flips = epoch_crops(labels.seed, epoch, labels.size, height, width)
            for start in range(0, labels.size, batch):
                rows = torch.arange(start, min(start + batch, labels.size))
                x = aug.crop_flip_normalize(pixels, rows, boxes[rows], flips[rows], mean, std, memory_format=fmt)
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                     enabled=dtype is not None):
                    out = net(x).float()
                if classes is None:
                    values[epoch, start:start + len(rows)] = out.cpu().numpy()
                else:
                    top = out.topk(labels.kept, dim=1)
                    values[epoch, start:start + len(rows)] = top.values.cpu().numpy()
                    classes[epoch, start:start + len(rows)] = top.indices.cpu().numpy()
        end = min(first + world, labels.epochs)
        save = end == labels.epochs or end // 10 > first // 10  # a multiple of 10 epochs reached, or the last
        if save or world > 1:
            values.flush()
            if classes is not None:
                classes.flush()
        mine = epoch_sha256((values, classes), epoch) if epoch < labels.epochs else None
        hashes.extend(h for h in distributed.gather(mine) if h is not None)  # after every rank's flush
        if save and main:  # a resume starts after END
            write_json(labels.record_path, {"settings": labels.identity(), "epochs_done": end,
                                            "epoch_sha256": hashes})
        bar.update(end - first)
    bar.close()
    del values, classes


class SharedLabelLoader:
    """Iterate → (x, y, idx, target): the epoch's shared crops of the final set, in this run's order
    (its seed), with the stored teacher logits (float32; classes outside a top K at FILL)."""

    def __init__(self, labels: SharedLabels, images: np.ndarray, targets_y, ids, mean, std, batch_size: int,
                 seed: int, device="cpu"):
        if len(images) != labels.size:
            raise ValueError(f"the shared soft labels are of a set of {labels.size} images, not {len(images)}")
        self.labels, self.seed, self.batch_size = labels, seed, batch_size
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self.y = torch.as_tensor(np.asarray(targets_y), dtype=torch.int64).to(self.device)
        self.ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64).to(self.device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.values, self.classes = labels.open()
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.labels.size / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if epoch >= self.labels.epochs:
            raise ValueError(f"the shared soft labels hold {self.labels.epochs} epochs; epoch {epoch + 1} was asked")
        _, height, width, _ = self.images.shape
        boxes, flips = epoch_crops(self.labels.seed, epoch, self.labels.size, height, width)
        order = epoch_order(self.labels.size, self.seed, epoch, shuffle=True)
        values = torch.from_numpy(np.array(self.values[epoch]))
        classes = None if self.classes is None else torch.from_numpy(np.asarray(self.classes[epoch]).astype(np.int64))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            x = aug.crop_flip_normalize(self.images, rows, boxes[rows], flips[rows], self.mean, self.std)
            target = values[rows].float()
            if classes is not None:
                target = expand_top_k(target, classes[rows], self.labels.classes)
            dev_rows = rows.to(self.device)
            yield x, self.y[dev_rows], self.ids[dev_rows], target.to(self.device)
