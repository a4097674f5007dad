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

    if indices is None and extra_images is not None:  # not the whole split plus the extras, silently
        raise UserError(f"extra_images= without indices= would serve all {len(store)} images of {store.path} with "
                        "them: pass indices=[] to serve the extra images alone, or the store indices of the real "
                        "images to serve beside them")
    if indices is None:
        images, labels, ids = store.images, store.labels, np.arange(len(store), dtype=np.int64)
    else:
        ids = store_indices(indices, len(store))
        if not len(ids) and extra_images is None:
            raise UserError("indices=[] selects no image: pass store indices, or indices=None for the whole split")
        images, labels = store.images[ids], store.labels[ids]
    if extra_images is None:
        return images, labels, ids
    if extra_labels is None:
        raise UserError("extra_images= needs extra_labels=: one class index per extra image")
    extra = as_nhwc_uint8(np.asarray(torch.as_tensor(extra_images).detach().cpu()), "extra_images")
    extra_labels = np.asarray(torch.as_tensor(extra_labels).cpu())
    if extra_labels.ndim == 2 and extra_labels.shape[1] > 1:
        raise UserError(f"extra_labels hold {extra_labels.shape[1]} values per image (soft labels): the loaders serve "
                        "one class index per image; pass labels.argmax(1), and the soft targets by idx")
    if extra_labels.size and extra_labels.dtype.kind not in "iu":
        raise UserError(f"extra_labels must be class indices (integers), got {extra_labels.dtype} values")
    extra_labels = extra_labels.reshape(-1).astype(np.int64)
    if extra.shape[1:] != store.images.shape[1:]:
        raise UserError(f"extra images are {extra.shape[1:3]} but {store.path} holds {store.images.shape[1:3]} images")
    if len(extra_labels) != len(extra):
        raise UserError(f"{len(extra)} extra images but {len(extra_labels)} extra labels")
    if len(extra_labels) and (extra_labels.min() < 0 or extra_labels.max() >= store.num_classes):
        raise UserError(f"extra labels must lie in [0, {store.num_classes})")
    return (np.concatenate([np.asarray(images), extra]), np.concatenate([labels, extra_labels]),
            np.concatenate([ids, distilled_id(np.arange(len(extra), dtype=np.int64))]))


def store_indices(indices, size: int) -> np.ndarray:
    """INDICES (store positions, or a boolean mask over the SIZE samples) as int64 positions; floats and
    positions outside [0, SIZE) are refused."""
    array = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
    if array.dtype == bool:
        if array.shape != (size,):
            raise UserError(f"a boolean mask as indices= must have one entry per store sample ({size}), got shape "
                            f"{array.shape}")
        return np.flatnonzero(array).astype(np.int64)
    if array.size and array.dtype.kind not in "iu":
        raise UserError(f"indices= must be integer store positions (or a boolean mask), got {array.dtype} values")
    ids = array.astype(np.int64).reshape(-1)
    if len(ids) and (ids.min() < 0 or ids.max() >= size):
        raise UserError(f"indices must lie in [0, {size}); got {ids.min()}..{ids.max()}")
    return ids


def store_ids(store: Store, indices=None) -> np.ndarray:
    """The store indices a store-only backend serves: INDICES checked, or the whole split."""
    return np.arange(len(store), dtype=np.int64) if indices is None else synthetic_arrays(store, indices)[2]
