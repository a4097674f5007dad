"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021), as the DC/DSA/DM/MTT codebases use it
on learned images: every transformation is made of differentiable tensor operations, so the gradient of a
loss on augmented batches reaches the images (x.requires_grad).

Transformations and their parameters are DSA's (its ParamDiffAug): color = brightness (x + (u − ½)·1.0),
saturation ((x − channel mean)·2u + mean) and contrast ((x − image mean)·(u + ½) + mean); crop = a
translation by up to 12.5 % of the side, zero-filled; cutout = a zeroed square of half the side; flip with
probability ½; scale by (sx, sy) ∈ [1/1.2, 1.2]²; rotate by up to ±15°. `single=True` (DSA's mode "S", its
default) applies one transformation per batch, drawn from the strategy; False applies them all in order.
`siamese=True` shares one draw across the batch (DSA's Siamese mode: a real and a synthetic batch given the
same generator state are augmented alike). Draws come from `generator` (a torch.Generator on the CPU).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastccfs.errors import UserError

STRATEGY = "color_crop_cutout_flip_scale_rotate"  # DSA's for DC/DSA and DM
FLIP, SCALE, ROTATE_DEG, CROP_PAD, CUTOUT = 0.5, 1.2, 15.0, 0.125, 0.5
BRIGHTNESS, SATURATION, CONTRAST = 1.0, 2.0, 0.5


def dsa(x: torch.Tensor, strategy: str = STRATEGY, generator: torch.Generator | None = None, single: bool = True,
        siamese: bool = False) -> torch.Tensor:
    """X (N×C×H×W float, any device) augmented by STRATEGY ("color_crop_…", names joined by "_")."""
    names = [n for n in strategy.split("_") if n]
    unknown = [n for n in names if n not in _TRANSFORMS]
    if unknown or not names:
        raise UserError(f"unknown DSA transformation(s) {', '.join(unknown) or '(none)'} in {strategy!r}: use "
                        f"{', '.join(_TRANSFORMS)} joined by _")
    gen = generator if generator is not None else torch.default_generator
    if single:
        names = [names[int(torch.randint(len(names), (1,), generator=gen))]]
    draw = _Draws(len(x), gen, siamese)
    for name in names:
        for transform in _TRANSFORMS[name]:
            x = transform(x, draw)
    return x.contiguous()


class _Draws:
    """Uniform [0, 1) and integer draws per image (or one for the batch, Siamese), on the CPU generator."""

    def __init__(self, n: int, generator: torch.Generator, siamese: bool):
        self.n, self.gen, self.siamese = n, generator, siamese

    def uniform(self, device) -> torch.Tensor:
        u = torch.rand(1 if self.siamese else self.n, generator=self.gen)
        return u.expand(self.n).to(device)

    def integers(self, low: int, high: int, device) -> torch.Tensor:
        k = torch.randint(low, high, (1 if self.siamese else self.n,), generator=self.gen)
        return k.expand(self.n).to(device)


def _per_image(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return u.to(x.dtype).view(-1, 1, 1, 1)


def _brightness(x, draw):
    return x + (_per_image(draw.uniform(x.device), x) - 0.5) * BRIGHTNESS


def _saturation(x, draw):
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(draw.uniform(x.device), x) * SATURATION) + mean


def _contrast(x, draw):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(draw.uniform(x.device), x) + CONTRAST) + mean


def _affine(x, theta):
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def _scale(x, draw):
    sx = draw.uniform(x.device) * (SCALE - 1 / SCALE) + 1 / SCALE
    sy = draw.uniform(x.device) * (SCALE - 1 / SCALE) + 1 / SCALE
    zero = torch.zeros_like(sx)
    return _affine(x, torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1))


def _rotate(x, draw):
    angle = (draw.uniform(x.device) - 0.5) * 2 * ROTATE_DEG / 180 * math.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    return _affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def _flip(x, draw):
    return torch.where(draw.uniform(x.device).view(-1, 1, 1, 1) < FLIP, x.flip(3), x)


def _crop(x, draw):
    """A translation by up to CROP_PAD of each side; what moves in is zero (a one-pixel zero border)."""
    n, _, h, w = x.shape
    sh, sw = int(h * CROP_PAD + 0.5), int(w * CROP_PAD + 0.5)
    ty, tx = draw.integers(-sh, sh + 1, x.device), draw.integers(-sw, sw + 1, x.device)
    rows = (torch.arange(h, device=x.device).view(1, h) + ty.view(n, 1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + tx.view(n, 1) + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # N×(H+2)×(W+2)×C
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


def _cutout(x, draw):
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    oy = draw.integers(0, h + (1 - ch % 2), x.device) - ch // 2
    ox = draw.integers(0, w + (1 - cw % 2), x.device) - cw // 2
    r, c = torch.arange(h, device=x.device).view(1, h), torch.arange(w, device=x.device).view(1, w)
    inside_r = (r >= oy.view(n, 1)) & (r < oy.view(n, 1) + ch)
    inside_c = (c >= ox.view(n, 1)) & (c < ox.view(n, 1) + cw)
    mask = ~(inside_r.view(n, h, 1) & inside_c.view(n, 1, w))
    return x * mask.unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"color": (_brightness, _saturation, _contrast), "crop": (_crop,), "cutout": (_cutout,),
               "flip": (_flip,), "scale": (_scale,), "rotate": (_rotate,)}
