"""One loader protocol over every backend: iterate → (x, y, idx), or (x, y) with with_indices=False.

x: normalised float32/bf16 NCHW on the target device, contiguous (as a DataLoader gives it: `x.view(n, -1)`
works) unless memory_format=torch.channels_last asks for the backends' own layout (the pipeline does: its
convolutions are faster so); y: int64 labels; idx: int64 ids — the store index of a real image, and -1 - j
for the j-th extra (distilled) image of a synthetic set. The loader has what DataLoader-shaped code reads:
len(loader), loader.batch_size, loader.dataset (len, classes, store), loader.sampler.set_epoch(e).

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
from fastccfs.loaders.sets import store_indices
from fastccfs.loaders.tensor import ClassImages  # noqa: F401  (re-exported: loaders.ClassImages(store).get_images(c, n))
from fastccfs.store import Store, find_store


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_loader(source: str | os.PathLike | Store, split: str = "train", backend: str = "tensor",
                batch_size: int = 256, augment: bool | str | None = None, device=None, indices=None, seed: int | None = None,
                extra_images=None, extra_labels=None, cache=None, with_indices: bool = True,
                memory_format=torch.contiguous_format, normalize: bool = True, mean=None, std=None, **options):
    """A loader over a store (a Store, its folder, or a converted dataset's name in the cache).

    backend: a registered backend (fastccfs.loaders.backends): tensor (the split resident on the device),
    torch (torchvision + DataLoader), ffcv (the store's .beton) or dali (the store's per-sample files);
    ffcv and dali need `fastccfs convert NAME --to ffcv|dali` first, and serve store images only
    (indices, no extra images).
    indices / extra_images / extra_labels make it serve a synthetic set (see synthetic_arrays).
    augment: True/"rrc" RandomResizedCrop + flip (CCFS's filters and evaluation), "crop_pad" RandomCrop
    with 4-pixel zero padding + flip (the teachers' recipe; tensor and torch backends), False the
    evaluation mode: no augmentation, the stored order, every sample once; None (default): True for a train
    split, False for a test split.
    seed fixes every epoch's order and crops (set_epoch(e) replays epoch e); None draws one from torch's
    global generator, so torch.manual_seed controls it as it does a DataLoader's shuffling.
    with_indices=False yields (x, y) instead of (x, y, idx), for loops written for a DataLoader.
    memory_format: of x; torch.contiguous_format (default, as a DataLoader) or torch.channels_last.
    normalize: x = (pixel/255 − mean) / std with the store's statistics, or mean=/std= given; False: pixel/255,
    in [0, 1].
    options go to the backend: shuffle, drop_last, dtype, rank, world_size, scale, ratio, flip; for the
    torch backend num_workers, persistent_workers; ffcv num_workers; dali num_threads.
    """
    _check_options(batch_size, options)
    if not normalize and (mean is not None or std is not None):
        raise UserError("normalize=False gives pixels in [0, 1]: leave mean= and std= out, or normalize with them")
    if not normalize:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if (mean is None) != (std is None) or (mean is not None and (len(mean) != 3 or len(std) != 3 or min(std) <= 0)):
        raise UserError(f"mean= and std= go together, three numbers each, std > 0; got mean {mean}, std {std}")
    if mean is not None:
        options.update(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
    if source is None:  # a set held in memory (a distilled set), no store
        return Adapted(_set_loader(batch_size, augment, device, seed, extra_images, extra_labels, indices, options),
                       memory_format, with_indices)
    chosen = registry.get("backend", backend)
    store = source if isinstance(source, Store) else find_store(source, split, cache)
    if augment is None:  # a test split is evaluated, not trained on
        augment = store.meta.get("split", split) == "train"
    if memory_format not in (torch.contiguous_format, torch.channels_last):
        raise UserError(f"memory_format must be torch.contiguous_format or torch.channels_last; got {memory_format}")
    if seed is None:  # an evaluation loader has no randomness: leave the global generator untouched
        random = augment or options.get("shuffle")
        seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64)) if random else 0
    if chosen.memory_format:
        options["memory_format"] = memory_format
    loader = _make(store, backend, chosen, batch_size, augment, device, indices, seed, extra_images, extra_labels,
                   **options)
    return Adapted(loader, memory_format, with_indices)


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


class Adapted:
    """A backend's loader as user code meets it: x in MEMORY_FORMAT, (x, y, idx) or (x, y) (with_indices), and
    the attributes of a DataLoader that such code reads (.dataset, .sampler.set_epoch, .batch_size); every
    other attribute (set_epoch, num_samples, …) is the backend loader's."""

    def __init__(self, loader, memory_format, with_indices: bool):
        self.loader, self.memory_format, self.with_indices = loader, memory_format, with_indices
        self.sampler = _Sampler(loader)

    def __iter__(self):
        for x, *rest in self.loader:  # (x, y, idx) or, with weights, (x, y, idx, w)
            if not x.is_contiguous(memory_format=self.memory_format):  # a backend that wrote another layout
                x = _relaid(x, self.memory_format)
            yield (x, *rest) if self.with_indices else (x, *rest[:1], *rest[2:])

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self) -> "ServedSet":
        return self.loader.served

    def __getattr__(self, name):
        return getattr(self.loader, name)


def _relaid(x: torch.Tensor, memory_format) -> torch.Tensor:
    """X in MEMORY_FORMAT, for backends that cannot write it themselves (the tensor backend's kernels do). On
    the CPU, numpy's one-thread copy rather than torch's: a torch parallel copy wakes OpenMP threads that then
    spin-wait beside the loader's numba kernels and straggle behind any other busy process (32 px RRC beside
    a busy process: 5.3k images/s with torch's copy, 61k with numpy's; benchmarks/README.md)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad and \
            memory_format is torch.contiguous_format:
        import numpy as np

        return torch.from_numpy(np.ascontiguousarray(x.numpy()))
    return x.contiguous(memory_format=memory_format)


class _Sampler:
    """loader.sampler.set_epoch(e), as DistributedSampler's: the backend loader's own set_epoch."""

    def __init__(self, loader):
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)


class ServedSet:
    """What a loader serves (loader.dataset): len() images, their classes, the store they come from (None
    for a set held in memory)."""

    def __init__(self, store: Store | None, size: int, classes=None):
        self.store, self.size = store, size
        self.classes = store.classes if store is not None else classes

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ServedSet({self.size} images of {self.store!r})"


def set_loader(images, labels, weights=None, batch_size: int = 256, augment: bool | str = False, device=None,
               seed: int | None = None, with_indices: bool = True, memory_format=torch.contiguous_format, **options):
    """A loader over IMAGES and LABELS held in memory, no store (fastccfs.loaders.in_memory: float or uint8
    images, hard, soft or top-K labels, per-sample weights, DSA augmentation); as make_loader(None,
    extra_images=IMAGES, extra_labels=LABELS, …)."""
    return make_loader(None, batch_size=batch_size, augment=augment, device=device, seed=seed, extra_images=images,
                       extra_labels=labels, with_indices=with_indices, memory_format=memory_format,
                       **({"weights": weights} if weights is not None else {}), **options)


def _set_loader(batch_size, augment, device, seed, images, labels, indices, options):
    from fastccfs.loaders.in_memory import SetLoader

    if images is None or labels is None or indices is not None:
        raise UserError("make_loader(None, …) serves a set held in memory: pass extra_images= and extra_labels= "
                        "(and no indices=, which index a store)")
    device = torch.device(device or default_device())
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))
    known = {"weights", "shuffle", "drop_last", "mean", "std", "num_classes", "dtype"}
    if set(options) - known:
        raise UserError(f"unknown option(s) {', '.join(sorted(set(options) - known))} for a set held in memory; "
                        f"known: {', '.join(sorted(known))}")
    loader = SetLoader(images, labels, batch_size=batch_size, augment=augment or False, device=device,
                       seed=seed, **options)
    classes = loader.labels.shape[1] if loader.labels.ndim == 2 else int(loader.labels.max()) + 1
    loader.served = ServedSet(None, len(loader.images), list(range(classes)))
    return loader


def _make(store, name, backend: Backend, batch_size, augment, device, indices, seed, extra_images, extra_labels,
          **options):
    from fastccfs.augment import augment_mode

    device = torch.device(device or default_device())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={str(device)!r}, but torch sees no CUDA device here: pass device='cpu' (or leave "
                        "device unset: CUDA when present, else the CPU)")
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
    loader = backend.make(store, indices, extra_images, extra_labels, batch_size=batch_size, augment=augment,
                          device=device, seed=seed, **options)
    size = len(store) if indices is None else len(store_indices(indices, len(store)))
    loader.served = ServedSet(store, size + (0 if extra_images is None else len(extra_images)))
    return loader
