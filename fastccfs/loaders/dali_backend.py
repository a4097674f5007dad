"""The DALI backend: one file per sample (raw H×W×3 bytes or JPEG), read by DALI's file reader.

The reader's label slot carries each file's store index, so a synthetic set is just the list of its
samples' files and `idx` comes back with every image; labels are looked up from the store by it.
Same augmentation distribution as the tensor backend: DALI's random_resized_crop (area in `scale`,
aspect ratio in `ratio`, 10 attempts), a coin-flip mirror and normalisation in one
crop_mirror_normalize, HWC output viewed as NCHW channels_last. On a GPU, JPEG pages decode on it
("mixed") and raw pages are copied to it before augmentation; on a CPU, DALI runs with device_id=None.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
import torch

from fastccfs import augment as aug


def sample_file(folder: Path, index: int, pages: str) -> Path:
    return folder / f"{index:07d}.{'rgb' if pages == 'raw' else 'jpg'}"


def write_files(store, folder: Path, pages: str, jpeg_quality: int, workers: int, progress: bool) -> np.ndarray:
    """One file per sample into FOLDER; returns the file sizes (what open_form checks)."""
    from PIL import Image
    from tqdm import tqdm

    def write(i: int) -> int:
        if pages == "raw":
            data = np.ascontiguousarray(store.images[i]).tobytes()
        else:
            buf = BytesIO()
            Image.fromarray(np.asarray(store.images[i])).save(buf, format="JPEG", quality=jpeg_quality)
            data = buf.getvalue()
        sample_file(folder, i, pages).write_bytes(data)
        return len(data)

    # Threads: PIL's encoder and file writes release the GIL.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        sizes = list(tqdm(pool.map(write, range(len(store)), chunksize=256), total=len(store),
                          desc=f"dali {store.meta['dataset']}/{store.meta['split']}", unit="img", disable=not progress))
    return np.asarray(sizes, np.int64)


def write_form(store, path, source: dict, pages: str, jpeg_quality: int, workers: int, progress: bool) -> None:
    """One file per sample in the folder PATH, their sizes and the record (index.json) inside it."""
    from fastccfs.atomic import atomic_path, write_json

    with atomic_path(path) as tmp:
        tmp.mkdir()
        sizes = write_files(store, tmp, pages, jpeg_quality, workers, progress)
        np.save(tmp / "sizes.npy", sizes)
        write_json(tmp / "index.json", {"source": source, "count": len(store), "shape": list(store.images.shape[1:])})


def record(path) -> dict | None:
    import json

    try:
        return json.loads((path / "index.json").read_text())
    except (OSError, ValueError):
        return None


def damage(path, record: dict) -> str | None:
    """Every sample file there with the size it was written with (one stat each; threads hide the file
    system's latency)."""
    sizes = np.load(path / "sizes.npy")
    pages = record["source"]["pages"]
    with ThreadPoolExecutor(8) as pool:
        found = np.fromiter(pool.map(_size, (sample_file(path, i, pages) for i in range(len(sizes)))), np.int64,
                            count=len(sizes))
    bad = np.flatnonzero(found != sizes)
    if not len(bad):
        return None
    first = sample_file(path, int(bad[0]), pages)
    what = "missing" if found[bad[0]] < 0 else f"{found[bad[0]]} of {sizes[bad[0]]} bytes"
    return f"{len(bad)} sample file(s) of {path} are missing or truncated ({first}: {what})"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


class DALILoader:
    """Iterate → (x, y, idx), like TensorLoader; `ids` are the store indices to serve (a subset or all).

    Every epoch serves each id once (the reader pads its last batch and the iterator drops the padding);
    with shuffle, DALI draws a new permutation of the whole list after every epoch, from `seed`.
    rank / world_size shard the list (DALI's shard_id / num_shards). num_threads: DALI's CPU threads.
    """

    def __init__(self, folder, pages: str, ids, labels, image_shape, mean, std, batch_size: int = 256,
                 augment: bool = True, shuffle: bool | None = None, drop_last: bool = False, device="cpu",
                 dtype=torch.float32, seed: int = 0, rank: int = 0, world_size: int = 1, scale=aug.SCALE,
                 ratio=aug.RATIO, flip: float = 0.5, num_threads: int | None = None):
        import os

        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.device, self.dtype = torch.device(device), dtype
        self.augment = augment
        self.shuffle = augment if shuffle is None else shuffle
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        ids = np.asarray(ids, np.int64)
        self.ids, self.rank, self.world_size = ids, rank, world_size
        files = [str(sample_file(Path(folder), int(i), pages)) for i in ids]
        height, width, _ = image_shape
        cuda = self.device.type == "cuda"

        @pipeline_def
        def pipeline():
            data, idx = fn.readers.file(files=files, labels=ids.astype(np.int32).tolist(), random_shuffle=False,
                                        shuffle_after_epoch=self.shuffle, pad_last_batch=True, shard_id=rank,
                                        num_shards=world_size, name="Reader")
            if pages == "jpg":
                images = fn.decoders.image(data, device="mixed" if cuda else "cpu", output_type=types.RGB)
            else:
                images = fn.reshape(data, shape=[height, width, 3], layout="HWC")
                images = images.gpu() if cuda else images
            mirror = 0
            if augment:
                images = fn.random_resized_crop(images, size=[height, width], random_area=list(scale),
                                                random_aspect_ratio=list(ratio), num_attempts=10)
                mirror = fn.random.coin_flip(probability=flip)
            images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="HWC", mirror=mirror,
                                              mean=[255 * m for m in mean], std=[255 * s for s in std])
            return images, idx.gpu() if cuda else idx

        self.pipeline = pipeline(batch_size=batch_size, num_threads=num_threads or os.cpu_count() or 1,
                                 device_id=(self.device.index or 0) if cuda else None, seed=seed)
        self.pipeline.build()
        self.iterator = DALIGenericIterator(
            self.pipeline, ["x", "idx"], reader_name="Reader", auto_reset=True,
            last_batch_policy=LastBatchPolicy.DROP if drop_last else LastBatchPolicy.PARTIAL)

    def __len__(self) -> int:
        return len(self.iterator)

    def set_epoch(self, epoch: int) -> None:
        """DALI keeps its own epoch count and random state; an epoch cannot be replayed (documented)."""

    def __iter__(self):
        for batch in self.iterator:
            out = batch[0]
            idx = out["idx"].reshape(-1).long()
            # NHWC → NCHW as a view: the memory stays channels_last
            yield out["x"].permute(0, 3, 1, 2).to(self.dtype), self.labels[idx], idx
