"""A loader over a distilled set held in memory, with no store: what the DC/DSA/DM/MTT family and SRe²L/CDA
produce. make_loader(None, extra_images=…, extra_labels=…) and set_loader(images, labels) build it.

Images: uint8 (N×H×W×3 or N×3×H×W; scaled to [0, 1], then normalised with mean/std when given) or float
N×3×H×W kept as they are (learned images live in float; normalised with mean/std only when given, as
pixels in [0, 1]). A float tensor that requires grad is served by indexing it, so the gradient of a loss on
the batches reaches it. Labels: class indices (N,), soft labels (N×C probabilities or logits), or top-K soft
labels as (values N×K, classes N×K) with num_classes (filled with FILL outside the top K, as FKD stores
them). Optional per-sample weights (N,). augment: False, or a DSA strategy ("dsa" = DSA's default) applied
to each batch, differentiably (fastccfs.dsa).
Iterate → (x, y, idx) (+ w with weights): idx = -1 - j for image j, as for a synthetic set's extra images.
"""
from __future__ import annotations

import numpy as np
import torch

from fastccfs.errors import UserError
from fastccfs.loaders.order import epoch_generator, epoch_order
from fastccfs.loaders.sets import distilled_id
from fastccfs.soft_labels import expand_top_k


class SetLoader:
    def __init__(self, images, labels, weights=None, batch_size: int = 256, augment: bool | str = False,
                 shuffle: bool = True, drop_last: bool = False, device="cpu", seed: int = 0, mean=None, std=None,
                 num_classes: int | None = None, dtype=torch.float32):
        self.device = torch.device(device)
        self.images = _float_images(images, self.device, dtype)
        n = len(self.images)
        self.labels = _labels(labels, n, num_classes, self.device)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32).to(self.device)
        if self.weights is not None and self.weights.shape != (n,):
            raise UserError(f"weights must be one number per image ({n}), got shape {tuple(self.weights.shape)}")
        self.mean = None if mean is None else torch.tensor(mean, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        if (mean is None) != (std is None):
            raise UserError("pass both mean= and std= (normalisation), or neither")
        self.strategy = _strategy(augment)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.ids = distilled_id(torch.arange(n, device=self.device))
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        from fastccfs.dsa import dsa

        order = epoch_order(len(self.images), self.seed, self.epoch, self.shuffle).to(self.device)
        gen = epoch_generator(self.seed, self.epoch, 0, stream=2)
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            if self.drop_last and len(rows) < self.batch_size:
                break
            x = self.images[rows]  # indexing keeps the graph: gradients reach self.images
            if self.mean is not None:
                x = (x - self.mean) / self.std
            if self.strategy:
                x = dsa(x, self.strategy, gen)
            batch = (x, self.labels[rows], self.ids[rows])
            yield batch if self.weights is None else (*batch, self.weights[rows])


def _strategy(augment) -> str | None:
    from fastccfs.dsa import STRATEGY

    if augment is False or augment is None:
        return None
    if augment is True or augment == "dsa":
        return STRATEGY
    if isinstance(augment, str):
        return augment  # checked by dsa() names on first use
    raise UserError(f"augment must be False, 'dsa' or a DSA strategy such as {STRATEGY!r}; got {augment!r}")


def _float_images(images, device, dtype) -> torch.Tensor:
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # a copy: memmaps are read-only
    if x.ndim != 4:
        raise UserError(f"images must be N×3×H×W (or uint8 N×H×W×3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[1] != 3 and x.shape[3] == 3:
            x = x.permute(0, 3, 1, 2)
        return (x.to(device).to(dtype) / 255).contiguous()
    if not x.is_floating_point():
        raise UserError(f"images must be uint8 or float, got {x.dtype}")
    if x.shape[1] != 3 and x.shape[3] == 3:
        raise UserError(f"float images must be N×3×H×W, got {tuple(x.shape)}: pass x.permute(0, 3, 1, 2)")
    if x.requires_grad and x.device != device:  # a copy would cut the gradient off from the user's tensor
        raise UserError(f"the images require grad and are on {x.device}, not on device {device}: move them there "
                        "first (images.to(device) before making them a leaf), so the gradient reaches them")
    return x if x.requires_grad else x.to(device)


def _labels(labels, n: int, num_classes: int | None, device) -> torch.Tensor:
    if isinstance(labels, tuple):  # top-K soft labels
        values, classes = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a) for a in labels)
        if values.shape != classes.shape or values.ndim != 2 or len(values) != n or num_classes is None:
            raise UserError("top-K soft labels are (values N×K, classes N×K) of the N images, with num_classes=")
        return expand_top_k(values, classes, num_classes).to(device)
    y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if len(y) != n:
        raise UserError(f"{n} images but {len(y)} labels")
    if y.ndim == 1 and not y.is_floating_point():
        return y.long().to(device)
    if y.ndim == 2 and y.is_floating_point():
        return y.float().to(device)
    raise UserError(f"labels must be class indices (N,) or soft labels (N×C floats), got {y.dtype} {tuple(y.shape)}")
