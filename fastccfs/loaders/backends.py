"""The loader backends, one record each: how to make its loader, what it can serve, and the on-disk form
`fastccfs convert --to NAME` writes for it. Registered here (fastccfs.registry, kind "backend"); the
CLI's choices, the settings' checks, `convert --to`, the store's allowed folders and the pipeline's
fallback all read these records. Torch-free: the implementations are imported when a loader is made.

A user's backend:

    fastccfs.register("backend", "mine", Backend(make=my_make, serves_extra=True,
                                                  augmentations=("rrc", "crop_pad")))

where my_make(store, indices, extra_images, extra_labels, **kw) returns a Loader.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from fastccfs import registry


class Loader(Protocol):
    """What every backend's loader is: iterate → (x, y, idx) batches (x normalised NCHW on the device,
    y int64 labels, idx int64 ids: store indices, -1 - j for the j-th extra image)."""

    ids: object  # the ids served (int64 tensor or array), in the set's order
    world_size: int  # processes sharing each epoch (1 without DDP)
    batch_size: int

    def __iter__(self) -> Iterator[tuple]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


@dataclass(frozen=True)
class Form:
    """A backend's own on-disk form of a store (beside it in the cache), written by `convert --to`.

    library: the module to import (its absence is one line with `install`); folder: the cache folder
    beside the split folders; write(store, path, source, pages, jpeg_quality, workers, progress) writes
    it atomically, its record last; record(path) → the record (dict) or None; damage(path, record) → what
    is wrong with a form whose record is current (truncated files), or None."""

    library: str
    title: str
    install: str
    folder: str
    location: Callable  # (store) → Path
    write: Callable
    record: Callable
    damage: Callable


@dataclass(frozen=True)
class Backend:
    """make(store, indices, extra_images, extra_labels, *, batch_size, augment, device, seed, **options) →
    a Loader. serves_extra: it can serve extra (distilled) images beside store indices; augmentations:
    the augment modes it implements ("rrc", "crop_pad"); form: its on-disk form, or None when it reads
    the store itself; memory_format: make takes memory_format= and yields x in it (else make_loader
    relays x when another layout is asked for)."""

    make: Callable
    serves_extra: bool = True
    augmentations: tuple[str, ...] = ("rrc", "crop_pad")
    form: Form | None = None
    memory_format: bool = False


def _tensor(store, indices, extra_images, extra_labels, **kw):
    import numpy as np

    from fastccfs.loaders.sets import store_indices, synthetic_arrays
    from fastccfs.loaders.tensor import TensorLoader
    from fastccfs.resources import require_memory

    n = (len(store) if indices is None else len(store_indices(indices, len(store)))) + \
        (0 if extra_images is None else len(extra_images))
    require_memory(n * int(np.prod(store.images.shape[1:])), kw.get("device", "cpu"),
                   f"the tensor loader ({n} images held on the device)",
                   "pass backend='ffcv' or 'dali' (images read from disk), or fewer indices")
    return TensorLoader(*synthetic_arrays(store, indices, extra_images, extra_labels), *_normalisation(store, kw), **kw)


def _torch(store, indices, extra_images, extra_labels, **kw):
    from fastccfs.loaders.sets import synthetic_arrays
    from fastccfs.loaders.torch_dataloader import TorchLoader

    return TorchLoader(*synthetic_arrays(store, indices, extra_images, extra_labels), *_normalisation(store, kw), **kw)


def _ffcv(store, indices, extra_images, extra_labels, **kw):
    from fastccfs.formats import open_form
    from fastccfs.loaders.sets import store_ids
    from fastccfs.loaders.ffcv_backend import FFCVLoader

    path, _ = open_form(store, "ffcv")
    return FFCVLoader(path, store_ids(store, indices), store.image_size, *_normalisation(store, kw), **kw)


def _dali(store, indices, extra_images, extra_labels, **kw):
    from fastccfs.formats import open_form
    from fastccfs.loaders.sets import store_ids
    from fastccfs.loaders.dali_backend import DALILoader

    path, record = open_form(store, "dali")
    return DALILoader(path, record["source"]["pages"], store_ids(store, indices), store.labels,
                      store.images.shape[1:], *_normalisation(store, kw), **kw)


def _normalisation(store, options: dict) -> tuple:
    """(mean, std) the batches are normalised with: make_loader's mean=/std= (taken out of OPTIONS), else the
    store's (the dataset's published statistics, or its train split's)."""
    return options.pop("mean", None) or store.mean, options.pop("std", None) or store.std


def _lazy(module: str, name: str) -> Callable:
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


def _beside(folder: str, suffix: str = "") -> Callable:
    return lambda store: store.path.parent / folder / f"{store.meta['split']}{suffix}"


registry.register("backend", "tensor", Backend(_tensor, memory_format=True))
registry.register("backend", "torch", Backend(_torch))
registry.register("backend", "ffcv", Backend(_ffcv, serves_extra=False, augmentations=("rrc",), form=Form(
    library="ffcv.loader", title="FFCV", folder="ffcv", location=_beside("ffcv", ".beton"),
    install="apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config && pip install ffcv==1.0.2 "
            "(or: pip install -e '.[loaders]' in a fastccfs checkout)",
    write=_lazy("fastccfs.loaders.ffcv_backend", "write_form"), record=_lazy("fastccfs.loaders.ffcv_backend", "record"),
    damage=_lazy("fastccfs.loaders.ffcv_backend", "damage"))))
registry.register("backend", "dali", Backend(_dali, serves_extra=False, augmentations=("rrc",), form=Form(
    library="nvidia.dali", title="NVIDIA DALI", folder="dali", location=_beside("dali"),
    install="pip install nvidia-dali-cuda120 (or: pip install -e '.[loaders]' in a fastccfs checkout)",
    write=_lazy("fastccfs.loaders.dali_backend", "write_form"), record=_lazy("fastccfs.loaders.dali_backend", "record"),
    damage=_lazy("fastccfs.loaders.dali_backend", "damage"))))
