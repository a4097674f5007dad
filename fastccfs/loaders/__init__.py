"""One loader protocol over every backend: iterate → (x, y, idx), or (x, y) with with_indices=False.

x: normalised float32/bf16 NCHW channels_last on the target device; y: int64 labels; idx: int64 ids —
the store index of a real image, and -1 - j for the j-th extra (distilled) image of a synthetic set.

    from fastccfs.loaders import make_loader
    train = make_loader("cifar10", backend="tensor", batch_size=256, device="cuda", with_indices=False)
    for epoch in range(epochs):
        for x, y in train: ...
"""
from __future__ import annotations

import os

import torch

from fastccfs import registry
from fastccfs.errors import UserError
from fastccfs.loaders.backends import Backend, Loader  # noqa: F401  (the records and the protocol, re-exported)
from fastccfs.store import Store, find_store


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_loader(source: str | os.PathLike | Store, split: str = "train", backend: str = "tensor",
                batch_size: int = 256, augment: bool = True, device=None, indices=None, seed: int | None = None,
                extra_images=None, extra_labels=None, cache=None, with_indices: bool = True, **options):
    """A loader over a store (a Store, its folder, or a converted dataset's name in the cache).

    backend: a registered backend (fastccfs.loaders.backends): tensor (the split resident on the device),
    torch (torchvision + DataLoader), ffcv (the store's .beton) or dali (the store's per-sample files);
    ffcv and dali need `fastccfs convert NAME --to ffcv|dali` first, and serve store images only
    (indices, no extra images).
    indices / extra_images / extra_labels make it serve a synthetic set (see synthetic_arrays).
    augment: True/"rrc" RandomResizedCrop + flip (CCFS's filters and evaluation), "crop_pad" RandomCrop
    with 4-pixel zero padding + flip (the teachers' recipe; tensor and torch backends), False the
    evaluation mode: no augmentation, the stored order, every sample once.
    seed fixes every epoch's order and crops (set_epoch(e) replays epoch e); None draws one from torch's
    global generator, so torch.manual_seed controls it as it does a DataLoader's shuffling.
    with_indices=False yields (x, y) instead of (x, y, idx), for loops written for a DataLoader.
    options go to the backend: shuffle, drop_last, dtype, rank, world_size, scale, ratio, flip; for the
    torch backend num_workers, persistent_workers; ffcv num_workers; dali num_threads.
    """
    chosen = registry.get("backend", backend)
    _check_options(batch_size, options)
    if seed is None:  # an evaluation loader has no randomness: leave the global generator untouched
        random = augment or options.get("shuffle")
        seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64)) if random else 0
    loader = _make(source, split, backend, chosen, batch_size, augment, device, indices, seed, extra_images,
                   extra_labels, cache, **options)
    return loader if with_indices else WithoutIndices(loader)


def _check_options(batch_size, options) -> None:
    """The settings every backend shares, each with its range: one line, before anything is read."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a whole number ≥ 1; got {batch_size!r}")
    rank, world = options.get("rank", 0), options.get("world_size", 1)
    if not (isinstance(world, int) and world >= 1 and isinstance(rank, int) and 0 <= rank < world):
        raise UserError(f"rank must be in [0, world_size) and world_size ≥ 1; got rank {rank}, world_size {world}")
    if not 0 <= options.get("flip", 0.5) <= 1:
        raise UserError(f"flip is a probability in [0, 1]; got {options['flip']}")
    for name, low in (("scale", 0.0), ("ratio", 0.0)):
        if name in options:
            lo, hi = options[name]
            if not low < lo <= hi or (name == "scale" and hi > 1):
                raise UserError(f"{name} must be (low, high) with {low:g} < low ≤ high{' ≤ 1' if name == 'scale' else ''}"
                                f"; got {options[name]}")


class WithoutIndices:
    """A loader that yields (x, y): the (x, y, idx) loader underneath, idx dropped."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for x, y, _ in self.loader:
            yield x, y

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # set_epoch, batch_size, … of the loader underneath
        return getattr(self.loader, name)


def _make(source, split, name, backend: Backend, batch_size, augment, device, indices, seed, extra_images,
          extra_labels, cache, **options):
    from fastccfs.augment import augment_mode

    store = source if isinstance(source, Store) else find_store(source, split, cache)
    device = device or default_device()
    mode = augment_mode(augment)
    if mode is not None and mode not in backend.augmentations:
        names = {"rrc": "RandomResizedCrop", "crop_pad": "RandomCrop with padding"}
        raise UserError(f"the {name} backend augments with {' or '.join(names.get(m, m) for m in backend.augmentations)} "
                        f"only: augment={augment!r} needs the tensor or torch backend")
    if not backend.serves_extra and extra_images is not None and len(extra_images):
        raise UserError(f"the {name} backend serves store images only: a set with extra (distilled) images "
                        "needs the tensor or torch backend")
    if not backend.serves_extra:  # store-only backends take augment as on/off (their crop is the one they have)
        augment = mode is not None
        extra_images = extra_labels = None
    return backend.make(store, indices, extra_images, extra_labels, batch_size=batch_size, augment=augment,
                        device=device, seed=seed, **options)
