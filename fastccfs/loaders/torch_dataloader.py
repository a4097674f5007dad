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
from fastccfs.loaders.order import epoch_order


class _ImagesDataset(Dataset):
    """Sample (i, epoch) → (transformed image, label, id). The transforms draw from torch's generator, seeded
    per (seed, epoch, i): an epoch's crops are the same whatever the workers, and set_epoch(e) replays them."""

    def __init__(self, images, labels, ids, transform, seed: int):
        self.images, self.labels, self.ids, self.transform, self.seed = images, labels, ids, transform, seed

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, key):
        from PIL import Image

        i, epoch = key
        with torch.random.fork_rng(devices=[]):  # leaves the caller's generator as it was (num_workers=0)
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0]))
            x = self.transform(Image.fromarray(np.asarray(self.images[i])))
        return x, int(self.labels[i]), int(self.ids[i])


class _EpochSampler(Sampler):
    def __init__(self, loader: "TorchLoader"):
        self.loader = loader

    def __len__(self):
        return self.loader.num_samples

    def __iter__(self):
        lo = self.loader
        order = epoch_order(len(lo.labels), lo.seed, lo.epoch, lo.shuffle, lo.rank, lo.world_size, pad=lo.augment)
        return iter([(i, lo.epoch) for i in order.tolist()])


class TorchLoader:
    """Same constructor and (x, y, idx) protocol as TensorLoader; images may be a memory-mapped array.

    num_workers processes decode and augment per sample; persistent_workers keeps them across epochs.
    """

    def __init__(self, images, labels, ids, mean, std, batch_size: int = 256, augment: bool | str = True,
                 shuffle: bool | None = None, drop_last: bool = False, device="cpu", dtype=torch.float32,
                 seed: int = 0, rank: int = 0, world_size: int = 1, scale=aug.SCALE, ratio=aug.RATIO,
                 flip: float = 0.5, num_workers: int = 2, persistent_workers: bool = True):
        import torchvision.transforms as T

        if len(images) == 0:
            raise ValueError("TorchLoader needs at least one image")
        if not (len(images) == len(labels) == len(ids)):
            raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and ids ({len(ids)}) differ in length")
        self.labels, self.ids = np.asarray(labels, np.int64), np.asarray(ids, np.int64)
        self.device, self.dtype = torch.device(device), dtype
        mode = aug.augment_mode(augment)
        self.augment = mode is not None
        self.shuffle = self.augment if shuffle is None else shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        size = images.shape[1:3]
        crop = (T.RandomResizedCrop(size, scale=scale, ratio=ratio) if mode == "rrc"
                else T.RandomCrop(size, padding=aug.PAD) if mode == "crop_pad" else None)
        steps = [crop, T.RandomHorizontalFlip(flip)] if crop else []
        transform = T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])
        self.dataloader = DataLoader(
            _ImagesDataset(images, self.labels, self.ids, transform, seed), batch_size=batch_size,
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
            for x, y, idx in self.dataloader:
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                yield x.to(self.dtype), y.to(self.device, non_blocking=True), idx.to(self.device, non_blocking=True)
        finally:
            self.epoch += 1
