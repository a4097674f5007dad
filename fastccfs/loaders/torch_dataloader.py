"""The torch backend: torchvision transforms on PIL images + a DataLoader, over the same store.

The plain path every distillation codebase uses; fastccfs keeps it as the fallback and as the
baseline its benchmarks measure against. Same order rules (loaders.order), same augmentation
distribution (torchvision's RandomResizedCrop is the definition the tensor backend reproduces).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fastccfs import augment as aug
from fastccfs.loaders.order import epoch_generator, epoch_order


class _ImagesDataset(Dataset):
    """Key (i, crop box or pad offset, flip) → (transformed image, label, id). The sampler draws each epoch's
    crop parameters at once, torchvision's distributions vectorised (fastccfs.augment), from the epoch's
    generator: an epoch's crops are the same whatever the workers, set_epoch(e) replays them, and no sample
    pays for seeding a generator of its own (issue 26 measured the per-sample seeding at 0.21–0.35× a stock
    DataLoader; this path runs at 0.87–1.44× it: benchmarks/results/loaders_vs_dataloader.json)."""

    def __init__(self, images, labels, ids, mode, mean, std):
        import torchvision.transforms as T

        self.images, self.labels, self.ids, self.mode = images, labels, ids, mode
        self.size = list(images.shape[1:3])
        self.finish = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, key):
        import torchvision.transforms.functional as TF
        from PIL import Image

        i, crop, flip = key
        img = Image.fromarray(np.asarray(self.images[i]))
        if self.mode == "rrc":  # RandomResizedCrop's own resize (bilinear, antialiased)
            img = TF.resized_crop(img, *crop, self.size, TF.InterpolationMode.BILINEAR, antialias=True)
        elif self.mode == "crop_pad":  # RandomCrop(size, padding=PAD): zero padding, then the crop
            img = TF.crop(TF.pad(img, aug.PAD), *crop, *self.size)
        if flip:
            img = TF.hflip(img)
        return self.finish(img), int(self.labels[i]), int(self.ids[i])


class _EpochSampler(Sampler):
    def __init__(self, loader: "TorchLoader"):
        self.loader = loader

    def __len__(self):
        return self.loader.num_samples

    def __iter__(self):
        lo = self.loader
        order = epoch_order(len(lo.labels), lo.seed, lo.epoch, lo.shuffle, lo.rank, lo.world_size, pad=lo.augment)
        n = len(order)
        gen = epoch_generator(lo.seed, lo.epoch, lo.rank, stream=1)
        if lo.mode == "rrc":
            crops = aug.sample_crop_boxes(n, *lo.size, gen, lo.scale, lo.ratio).tolist()
        elif lo.mode == "crop_pad":
            crops = aug.sample_pad_offsets(n, gen).tolist()
        else:
            crops = [None] * n
        flips = aug.sample_flips(n, gen, lo.flip).tolist() if lo.mode else [False] * n
        return iter(zip(order.tolist(), crops, flips))


class TorchLoader:
    """Same constructor and (x, y, idx) protocol as TensorLoader, x contiguous NCHW; images may be a
    memory-mapped array.

    num_workers processes decode and augment per sample; persistent_workers keeps them across epochs.
    """

    def __init__(self, images, labels, ids, mean, std, batch_size: int = 256, augment: bool | str = True,
                 shuffle: bool | None = None, drop_last: bool = False, device="cpu", dtype=torch.float32,
                 seed: int = 0, rank: int = 0, world_size: int = 1, scale=aug.SCALE, ratio=aug.RATIO,
                 flip: float = 0.5, num_workers: int = 2, persistent_workers: bool = True):
        if len(images) == 0:
            raise ValueError("TorchLoader needs at least one image")
        if not (len(images) == len(labels) == len(ids)):
            raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and ids ({len(ids)}) differ in length")
        self.labels, self.ids = np.asarray(labels, np.int64), np.asarray(ids, np.int64)
        self.device, self.dtype = torch.device(device), dtype
        self.mode = aug.augment_mode(augment)
        self.augment = self.mode is not None
        self.shuffle = self.augment if shuffle is None else shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.size, self.scale, self.ratio, self.flip = tuple(images.shape[1:3]), scale, ratio, flip
        self.epoch = 0
        self.dataloader = DataLoader(
            _ImagesDataset(images, self.labels, self.ids, self.mode, mean, std), batch_size=batch_size,
            sampler=_EpochSampler(self), drop_last=drop_last, num_workers=num_workers,
            persistent_workers=persistent_workers and num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    @property
    def num_samples(self) -> int:
        n = len(self.labels)
        return -(-n // self.world_size) if self.augment else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return len(self.dataloader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        try:
            for x, y, idx in self.dataloader:  # x as the DataLoader collates it (contiguous): make_loader's
                # memory_format= relays it only when asked, so a plain loop pays no copy
                x = x.to(self.device, self.dtype, non_blocking=True)
                yield x, y.to(self.device, non_blocking=True), idx.to(self.device, non_blocking=True)
        finally:
            self.epoch += 1
