"""The arrays a loader serves: a store's images by index, followed by extra (distilled) images, and the
ids reported for each (store index, or -1 - j for the j-th extra image)."""
from __future__ import annotations

import numpy as np
import torch

from fastccfs.errors import UserError
from fastccfs.store import Store


def distilled_id(j):
    """The idx reported for the j-th extra (distilled) image; its inverse is itself."""
    return -1 - j


def synthetic_arrays(store: Store, indices=None, extra_images=None, extra_labels=None):
    """(images, labels, ids) of a synthetic set: store[indices] followed by the extra images.

    indices None → the whole split (kept memory-mapped; loaders copy what they need).
    extra_images: uint8 (or float in [0, 1]) N×H×W×3 or N×3×H×W, the store's image size.
    """
    from fastccfs.images import as_nhwc_uint8

    if indices is None:
        images, labels, ids = store.images, store.labels, np.arange(len(store), dtype=np.int64)
    else:
        ids = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not len(ids) and extra_images is None:
            raise UserError("indices=[] selects no image: pass store indices, or indices=None for the whole split")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(store)):
            raise UserError(f"indices must lie in [0, {len(store)}) for {store.path}; got {ids.min()}..{ids.max()}")
        images, labels = store.images[ids], store.labels[ids]
    if extra_images is None:
        return images, labels, ids
    extra = as_nhwc_uint8(np.asarray(torch.as_tensor(extra_images).detach().cpu()), "extra_images")
    extra_labels = np.asarray(torch.as_tensor(extra_labels).cpu(), dtype=np.int64).reshape(-1)
    if extra.shape[1:] != store.images.shape[1:]:
        raise UserError(f"extra images are {extra.shape[1:3]} but {store.path} holds {store.images.shape[1:3]} images")
    if len(extra_labels) != len(extra):
        raise UserError(f"{len(extra)} extra images but {len(extra_labels)} extra labels")
    if len(extra_labels) and (extra_labels.min() < 0 or extra_labels.max() >= store.num_classes):
        raise UserError(f"extra labels must lie in [0, {store.num_classes})")
    return (np.concatenate([np.asarray(images), extra]), np.concatenate([labels, extra_labels]),
            np.concatenate([ids, distilled_id(np.arange(len(extra), dtype=np.int64))]))


def store_ids(store: Store, indices=None) -> np.ndarray:
    """The store indices a store-only backend serves: INDICES checked, or the whole split."""
    return np.arange(len(store), dtype=np.int64) if indices is None else synthetic_arrays(store, indices)[2]
