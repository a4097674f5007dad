"""The FFCV backend: a store written as a .beton (raw or JPEG pages), served by FFCV's Loader.

Same protocol and augmentation distribution as the tensor backend: RandomResizedCrop (FFCV's crop
sampler is torchvision's algorithm: 10 tries, then a centre crop), horizontal flip, normalisation,
NCHW channels_last; (x, y, idx) with idx the store index (a field of the .beton). On CUDA the uint8
batch is copied with non_blocking=True and normalised on the GPU; on a CPU everything runs in FFCV's
compiled CPU pipeline. FFCV's resize uses OpenCV's area interpolation (the tensor backend: bilinear).
"""
from __future__ import annotations

import numpy as np
import torch

from fastccfs import augment as aug


def write_beton(store, path, pages: str, jpeg_quality: int, workers: int, progress: bool) -> None:
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    class Samples:  # FFCV's writer indexes a dataset of (image HWC uint8, label, index)
        def __len__(self):
            return len(store)

        def __getitem__(self, i):
            return np.ascontiguousarray(store.images[i]), int(store.labels[i]), i

    image = RGBImageField(write_mode="raw" if pages == "raw" else "jpg", jpeg_quality=jpeg_quality)
    writer = DatasetWriter(str(path), {"image": image, "label": IntField(), "index": IntField()},
                           num_workers=workers)
    if not progress:  # FFCV's writer always draws a tqdm bar; silence it
        import ffcv.writer

        quiet = ffcv.writer.tqdm
        ffcv.writer.tqdm = lambda *a, **k: quiet(*a, **{**k, "disable": True})
        try:
            writer.from_indexed_dataset(Samples())
        finally:
            ffcv.writer.tqdm = quiet
    else:
        writer.from_indexed_dataset(Samples())


def write_form(store, path, source: dict, pages: str, jpeg_quality: int, workers: int, progress: bool) -> None:
    """The .beton at PATH, then its record beside it (.json): a .beton without one counts as absent."""
    from fastccfs.atomic import atomic_path, write_json

    with atomic_path(path) as tmp:
        write_beton(store, tmp, pages, jpeg_quality, workers, progress)
        size = tmp.stat().st_size
    write_json(path.with_suffix(".json"), {"source": source, "bytes": size, "count": len(store)})


def record(path) -> dict | None:
    import json

    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def damage(path, record: dict) -> str | None:
    size = path.stat().st_size
    return None if size == record["bytes"] else f"{path} is truncated or damaged ({size} of {record['bytes']} bytes)"


class FFCVLoader:
    """Iterate → (x, y, idx), like TensorLoader; `ids` are the store indices to serve (a subset or all).

    world_size > 1 uses FFCV's distributed mode (torch.distributed must be initialised; FFCV takes the
    rank from it). num_workers: FFCV's decoding threads (default: all cores).
    """

    def __init__(self, path, ids, image_size, mean, std, batch_size: int = 256, augment: bool = True,
                 shuffle: bool | None = None, drop_last: bool = False, device="cpu", dtype=torch.float32,
                 seed: int = 0, rank: int = 0, world_size: int = 1, scale=aug.SCALE, ratio=aug.RATIO,
                 flip: float = 0.5, num_workers: int | None = None):
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

        self.device, self.dtype = torch.device(device), dtype
        self.augment = augment
        self.shuffle = augment if shuffle is None else shuffle
        cuda = self.device.type == "cuda"
        mean255, std255 = 255 * np.array(mean), 255 * np.array(std)
        if augment:
            image = [RandomResizedCropRGBImageDecoder(tuple(image_size), scale=tuple(scale), ratio=tuple(ratio)),
                     RandomHorizontalFlip(flip)]
        else:
            image = [SimpleRGBImageDecoder()]
        if cuda:  # uint8 crosses the bus, then normalised on the GPU
            image += [ToTensor(), ToDevice(self.device, non_blocking=True), ToTorchImage(channels_last=True),
                      NormalizeImage(mean255, std255, np.float32)]
        else:
            image += [NormalizeImage(mean255, std255, np.float32), ToTensor(), ToTorchImage(channels_last=True)]

        def integers():
            return [IntDecoder(), ToTensor(), Squeeze()] + ([ToDevice(self.device, non_blocking=True)] if cuda else [])

        self.ids = np.asarray(ids, np.int64)
        self.rank, self.world_size = rank, world_size  # FFCV itself takes the rank from torch.distributed
        self.loader = Loader(str(path), batch_size=batch_size, num_workers=num_workers or -1,
                             order=OrderOption.RANDOM if self.shuffle else OrderOption.SEQUENTIAL, seed=seed,
                             indices=self.ids, drop_last=drop_last, distributed=world_size > 1,
                             pipelines={"image": image, "label": integers(), "index": integers()})

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.next_epoch = epoch  # FFCV's order of an epoch depends on (seed, epoch)

    def __iter__(self):
        # FFCV refills the same buffers batch after batch; copies keep each yielded batch valid after the next.
        for x, y, idx in self.loader:
            yield x.to(self.dtype, copy=True), y.to(torch.int64, copy=True), idx.to(torch.int64, copy=True)
