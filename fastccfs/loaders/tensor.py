"""The tensor backend: the whole (synthetic) set resident on the device as uint8, augmented per batch there.

For 32–64 px datasets this beats any file-decoding pipeline: nothing is decoded or copied per sample,
and the per-batch work is one kernel launch (CPU: a numba kernel; GPU: two batched matmuls).
"""
from __future__ import annotations

import numpy as np
import torch

from fastccfs import augment as aug
from fastccfs.loaders.order import epoch_generator, epoch_order


class TensorLoader:
    """Iterate → (x, y, idx): x normalised NCHW on `device` in MEMORY_FORMAT, y int64 labels, idx int64 ids.

    images  uint8 (N, H, W, 3), numpy or torch; copied once to `device`
    labels  int64 (N,)
    ids     int64 (N,) what `idx` reports per image: store indices, negative ids for distilled images
    augment True/"rrc": RandomResizedCrop(scale, ratio) + horizontal flip(p=flip); "crop_pad":
            RandomCrop with 4 pixels of zero padding + flip (the teachers' recipe); False: as they are
    shuffle a new order every epoch (default: when augmenting); False: the given order
    memory_format: of x (torch.channels_last or torch.contiguous_format), written so by the kernels
    rank, world_size: this process's share of each epoch (DDP): every rank uses the same order and
            takes positions rank, rank + world_size, …; training pads the order so shares are equal.
    """

    def __init__(self, images, labels, ids, mean, std, batch_size: int = 256, augment: bool | str = True,
                 shuffle: bool | None = None, drop_last: bool = False, device="cpu", dtype=torch.float32,
                 seed: int = 0, rank: int = 0, world_size: int = 1, scale=aug.SCALE, ratio=aug.RATIO,
                 flip: float = 0.5, memory_format=torch.channels_last):
        if len(images) == 0:
            raise ValueError("TensorLoader needs at least one image")
        if not (len(images) == len(labels) == len(ids)):
            raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and ids ({len(ids)}) differ in length")
        self.device = torch.device(device)
        # It's faster to keep and move uint8 and normalise per batch than to hold float copies.
        self.images = torch.from_numpy(np.require(images, np.uint8, ["C", "W"])).to(self.device)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64).to(self.device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.mode = aug.augment_mode(augment)
        self.augment = self.mode is not None
        self.batch_size, self.drop_last = batch_size, drop_last
        self.shuffle = self.augment if shuffle is None else shuffle
        self.dtype, self.seed, self.rank, self.world_size = dtype, seed, rank, world_size
        self.scale, self.ratio, self.flip = scale, ratio, flip
        self.memory_format = memory_format  # x's layout, written so by the kernels (no copy after them)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        n = len(self.labels)
        return -(-n // self.world_size) if self.augment else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = epoch_order(len(self.labels), self.seed, self.epoch, self.shuffle, self.rank, self.world_size,
                            pad=self.augment)
        gen = epoch_generator(self.seed, self.epoch, self.rank, stream=1)
        _, height, width, _ = self.images.shape
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            if self.drop_last and len(rows) < self.batch_size:
                break
            if self.mode == "rrc":
                boxes = aug.sample_crop_boxes(len(rows), height, width, gen, self.scale, self.ratio)
                flips = aug.sample_flips(len(rows), gen, self.flip)
                x = aug.crop_flip_normalize(self.images, rows, boxes, flips, self.mean, self.std, self.dtype,
                                            self.memory_format)
            elif self.mode == "crop_pad":
                offsets = aug.sample_pad_offsets(len(rows), gen)
                flips = aug.sample_flips(len(rows), gen, self.flip)
                x = aug.pad_crop_flip_normalize(self.images, rows, offsets, flips, self.mean, self.std, self.dtype,
                                                memory_format=self.memory_format)
            else:
                x = aug.normalize(self.images, rows, self.mean, self.std, self.dtype, self.memory_format)
            rows = rows.to(self.device)
            yield x, self.labels[rows], self.ids[rows]


class ClassImages:
    """n random real images of class c, as the DC/DM/MTT/DATM code draws them (`get_images(c, n)`), from a
    store held on `device` as uint8: normalised float N×3×H×W (contiguous), n distinct images of the class
    (all of them when it has fewer), a new draw each call from `seed`'s generator."""

    def __init__(self, store, device="cpu", seed: int = 0, dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.images = torch.from_numpy(np.require(store.images, np.uint8, ["C", "W"])).to(self.device)
        self.mean, self.std = store.mean, store.std
        labels = np.asarray(store.labels)
        self.by_class = [torch.from_numpy(np.flatnonzero(labels == c)) for c in range(store.num_classes)]
        self.generator = torch.Generator().manual_seed(seed)

    def get_images(self, c: int, n: int) -> torch.Tensor:
        from fastccfs.errors import UserError

        if not 0 <= c < len(self.by_class) or n < 1:
            raise UserError(f"get_images(c, n) needs a class in [0, {len(self.by_class)}) and n ≥ 1; got c {c}, n {n}")
        members = self.by_class[c]
        rows = members[torch.randperm(len(members), generator=self.generator)[:n]]
        return aug.normalize(self.images, rows if self.device.type == "cpu" else rows.to(self.device), self.mean,
                             self.std, self.dtype, torch.contiguous_format)
