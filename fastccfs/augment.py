"""Batch augmentation as plain tensor functions: RandomResizedCrop + horizontal flip + normalise, and
the teachers' RandomCrop with zero padding + horizontal flip + normalise.

Modes (the loaders' `augment=`): "rrc" (True) — RandomResizedCrop(0.08–1, 3/4–4/3) + flip, what CCFS
trains its filters and evaluation models with; "crop_pad" — RandomCrop(size, padding=4) + flip, what
SRe²L's squeeze step trains the CIFAR teachers with; False — none.

The random parameters follow torchvision's RandomResizedCrop.get_params exactly (ten tries of
area ~ U(scale)·H·W and log-aspect ~ U(log ratio), integer box sizes and offsets, centre-crop fallback),
vectorised over the batch. They are drawn on the CPU from the caller's generator, so a seed gives the
same crops on every device. The pixels are then produced in one pass: a numba kernel on the CPU, and
on other devices two batched matmuls with the (sparse) bilinear interpolation matrices.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
MODES = ("rrc", "crop_pad")
PAD = 4  # torchvision RandomCrop(32, padding=4) in SRe²L's squeeze_cifar.py


def augment_mode(augment) -> str | None:
    """The loaders' `augment` argument as a mode name: True → "rrc", False/None → None."""
    if augment is True:
        return "rrc"
    if augment is False or augment is None:
        return None
    if augment in MODES:
        return augment
    from fastccfs.errors import UserError

    raise UserError(f"unknown augmentation {augment!r}: use True/'rrc', 'crop_pad' or False")


def sample_crop_boxes(n: int, height: int, width: int, generator: torch.Generator,
                      scale=SCALE, ratio=RATIO, attempts: int = 10) -> torch.Tensor:
    """(n, 4) int64 [top, left, h, w]: torchvision's RandomResizedCrop distribution, batched.

    The draws come from the torch generator; the arithmetic is numpy's, on one thread: torch's elementwise
    ops on these few thousand numbers wake its OpenMP pool, whose threads then spin-wait beside the numba
    kernel that follows and halve its speed on a 2-core machine (64 px: 4.4 → 8.4 ms per batch of 256)."""
    area = height * width
    target = area * torch.empty(n, attempts, dtype=torch.float64).uniform_(scale[0], scale[1],
                                                                           generator=generator).numpy()
    log_ratio = torch.empty(n, attempts, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator).numpy()
    aspect = np.exp(log_ratio)
    w = np.round(np.sqrt(target * aspect)).astype(np.int64)  # round half to even, as Python's round()
    h = np.round(np.sqrt(target / aspect)).astype(np.int64)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.argmax(axis=1)  # the first successful try
    found = ok.any(axis=1)
    rows = np.arange(n)
    h, w = h[rows, first], w[rows, first]
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator).numpy()
    top = (u[:, 0] * (height - h + 1)).astype(np.int64)
    left = (u[:, 1] * (width - w + 1)).astype(np.int64)

    # Fallback (no try fitted): the central crop with the aspect ratio clamped into `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    boxes = np.stack([np.where(found, top, (height - fh) // 2), np.where(found, left, (width - fw) // 2),
                      np.where(found, h, fh), np.where(found, w, fw)], axis=1)
    return torch.from_numpy(boxes)


def sample_flips(n: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def sample_pad_offsets(n: int, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """(n, 2) int64 [top, left] of a crop of the input's size from the input padded by PAD on every side:
    torchvision RandomCrop's uniform integer offsets in [0, 2·pad]."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)


def pad_crop_flip_normalize(images: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                            mean, std, dtype=torch.float32, pad: int = PAD,
                            memory_format=torch.channels_last) -> torch.Tensor:
    """images uint8 (N, H, W, 3) on any device → images[rows] zero-padded by PAD, cropped back to H×W at
    `offsets`, flipped where `flips`, normalised: NCHW in MEMORY_FORMAT. Padding pixels are 0 before
    normalisation, as torchvision pads the PIL image."""
    if images.device.type == "cpu":  # one numba pass: torch's parallel indexing straggles on a busy machine
        from fastccfs.kernels.resample import pad_crop_flip_normalize as kernel

        out, x = _cpu_output(len(rows), images.shape[1:], memory_format)
        kernel(images.numpy(), rows.numpy(), offsets.numpy(), flips.numpy(), pad, *_affine(mean, std), out)
        return x if dtype == torch.float32 else x.to(dtype)
    x = pad_crop_flip_normalize_torch(images, rows, offsets, flips, mean, std, dtype, pad)
    return x.contiguous(memory_format=memory_format)


def pad_crop_flip_normalize_torch(images, rows, offsets, flips, mean, std, dtype=torch.float32,
                                  pad: int = PAD) -> torch.Tensor:
    """The device-agnostic twin of kernels.resample.pad_crop_flip_normalize (same arithmetic)."""
    device = images.device
    _, height, width, _ = images.shape
    offsets, flips = offsets.to(device), flips.to(device)
    ys = offsets[:, :1] - pad + torch.arange(height, device=device)  # (B, H) source rows, maybe outside
    xs = offsets[:, 1:] - pad + torch.arange(width, device=device)  # (B, W)
    xs = torch.where(flips[:, None], xs.flip(1), xs)
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]  # (B, H, W)
    batch = images[rows.to(device)]
    x = batch[torch.arange(len(batch), device=device)[:, None, None], ys.clamp(0, height - 1)[:, :, None],
              xs.clamp(0, width - 1)[:, None, :]]  # (B, H, W, 3)
    x = x.to(torch.float32) * inside[..., None]
    scale, shift = (torch.as_tensor(v, device=device) for v in _affine(mean, std))
    x = x * scale + shift  # NHWC
    return x.permute(0, 3, 1, 2).to(dtype)


def _cpu_output(n: int, shape, memory_format) -> tuple[np.ndarray, torch.Tensor]:
    """(out, x): the NHWC array a kernel writes (a view when MEMORY_FORMAT is contiguous) and the NCHW
    tensor over the same memory: the kernel writes the layout asked for, no copy after it."""
    height, width, channels = shape
    if memory_format is torch.contiguous_format:
        x = torch.from_numpy(np.empty((n, channels, height, width), np.float32))
        return x.numpy().transpose(0, 2, 3, 1), x
    out = np.empty((n, height, width, channels), np.float32)
    return out, torch.from_numpy(out).permute(0, 3, 1, 2)


def _affine(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scale and shift with value = pixel * scale + shift == (pixel/255 - mean) / std."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def crop_flip_normalize(images: torch.Tensor, rows: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
                        mean, std, dtype=torch.float32, memory_format=torch.channels_last) -> torch.Tensor:
    """images uint8 (N, H, W, 3) on any device → normalised NCHW batch of images[rows] in MEMORY_FORMAT.

    boxes (B, 4) [top, left, h, w] and flips (B,) may live on the CPU. Output size = input size.
    """
    if images.device.type == "cpu":
        from fastccfs.kernels.resample import crop_flip_normalize as kernel

        out, x = _cpu_output(len(rows), images.shape[1:], memory_format)
        kernel(images.numpy(), rows.numpy(), boxes.numpy(), flips.numpy(), *_affine(mean, std), out)
        return x if dtype == torch.float32 else x.to(dtype)
    x = crop_flip_normalize_torch(images, rows, boxes, flips, mean, std, dtype)
    return x.contiguous(memory_format=memory_format)


def normalize(images: torch.Tensor, rows: torch.Tensor, mean, std, dtype=torch.float32,
              memory_format=torch.channels_last) -> torch.Tensor:
    """No augmentation: images[rows] normalised, NCHW in MEMORY_FORMAT."""
    if images.device.type == "cpu":
        from fastccfs.kernels.resample import normalize as kernel

        out, x = _cpu_output(len(rows), images.shape[1:], memory_format)
        kernel(images.numpy(), rows.numpy(), *_affine(mean, std), out)
        return x if dtype == torch.float32 else x.to(dtype)
    scale, shift = (torch.as_tensor(v, device=images.device) for v in _affine(mean, std))
    x = images[rows].to(torch.float32) * scale + shift  # NHWC
    return x.permute(0, 3, 1, 2).to(dtype).contiguous(memory_format=memory_format)


def _interp_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """(B, out, in) rows of bilinear weights mapping [start, start+length) onto out_size samples."""
    b = len(start)
    dst = torch.arange(out_size, dtype=torch.float32, device=start.device)
    scale = length.to(torch.float32)[:, None] / out_size
    src = (scale * (dst + 0.5) - 0.5).clamp_min(0)
    i0 = torch.minimum(src.long(), length[:, None] - 1)
    lam = (src - i0).clamp(0, 1)
    i1 = torch.where(i0 < length[:, None] - 1, i0 + 1, i0)
    m = torch.zeros(b, out_size, in_size, device=start.device)
    m.scatter_add_(2, (start[:, None] + i0)[..., None], (1 - lam)[..., None])
    m.scatter_add_(2, (start[:, None] + i1)[..., None], lam[..., None])
    return m


def crop_flip_normalize_torch(images, rows, boxes, flips, mean, std, dtype=torch.float32) -> torch.Tensor:
    """The device-agnostic twin of kernels.resample.crop_flip_normalize (same arithmetic)."""
    device = images.device
    boxes, flips = boxes.to(device), flips.to(device)
    _, height, width, _ = images.shape
    ry = _interp_matrix(boxes[:, 0], boxes[:, 2], height, height)  # (B, Ho, H)
    rx = _interp_matrix(boxes[:, 1], boxes[:, 3], width, width)  # (B, Wo, W)
    rx = torch.where(flips[:, None, None], rx.flip(1), rx)
    x = images[rows.to(device)].permute(0, 3, 1, 2).to(torch.float32)  # (B, 3, H, W)
    x = ry[:, None] @ x @ rx.transpose(1, 2)[:, None]
    scale, shift = (torch.as_tensor(v, device=device)[None, :, None, None] for v in _affine(mean, std))
    x = x * scale + shift
    return x.contiguous(memory_format=torch.channels_last).to(dtype)
