"""Batched crop + resize (bilinear) + horizontal flip + normalise on the CPU, one pass, no temporaries; the
teachers' padded crop + flip + normalise; plain normalisation.

The arithmetic is that of torch.nn.functional.interpolate(mode="bilinear", align_corners=False) applied
to each crop, i.e. torchvision's resized_crop without antialiasing (the crops are never larger than the
output, so antialiasing would do nothing). fastccfs.augment.crop_flip_normalize_torch is the twin used
on other devices and in tests.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _source_coord(dst, in_size, out_size):
    # area_pixel_compute_source_index + guard_index_and_lambda of ATen's upsample_bilinear2d.
    s = np.float32(in_size) / np.float32(out_size) * (np.float32(dst) + np.float32(0.5)) - np.float32(0.5)
    if s < 0:
        s = np.float32(0.0)
    i0 = min(int(s), in_size - 1)
    lam = min(max(s - np.float32(i0), np.float32(0.0)), np.float32(1.0))
    i1 = i0 + 1 if i0 < in_size - 1 else i0
    return i0, i1, lam


@njit(parallel=True, cache=True)
def crop_flip_normalize(src, rows, boxes, flips, scale, shift, out):
    """out[b] = normalise(flip?(resize(src[rows[b]][top:top+h, left:left+w])))

    src   uint8 (N, H, W, 3)      the resident split
    rows  int64 (B,)              which images of src form the batch
    boxes int64 (B, 4)            top, left, height, width of each crop
    flips bool (B,)               mirror the output horizontally
    scale, shift float32 (3,)     value = pixel * scale + shift  (scale = 1/(255 std), shift = -mean/std)
    out   float32 (B, Ho, Wo, 3)  NHWC, i.e. an NCHW channels_last tensor's memory
    """
    n, ho, wo, _ = out.shape
    for b in prange(n):
        r = rows[b]
        top, left, h, w = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3]
        # Column taps are the same for every output row: compute them once per image.
        xs0 = np.empty(wo, np.int64)
        xs1 = np.empty(wo, np.int64)
        lxs = np.empty(wo, np.float32)
        for ox in range(wo):
            tx = wo - 1 - ox if flips[b] else ox
            x0, x1, lx = _source_coord(tx, w, wo)
            xs0[ox], xs1[ox], lxs[ox] = x0 + left, x1 + left, lx
        for oy in range(ho):
            y0, y1, ly = _source_coord(oy, h, ho)
            y0 += top
            y1 += top
            for ox in range(wo):
                x0, x1, lx = xs0[ox], xs1[ox], lxs[ox]
                for c in range(3):
                    a = (np.float32(1.0) - lx) * np.float32(src[r, y0, x0, c]) + lx * np.float32(src[r, y0, x1, c])
                    d = (np.float32(1.0) - lx) * np.float32(src[r, y1, x0, c]) + lx * np.float32(src[r, y1, x1, c])
                    out[b, oy, ox, c] = ((np.float32(1.0) - ly) * a + ly * d) * scale[c] + shift[c]


@njit(parallel=True, cache=True)
def pad_crop_flip_normalize(src, rows, offsets, flips, pad, scale, shift, out):
    """out[b] = normalise(flip?(pad(src[rows[b]], pad zeros)[top:top+H, left:left+W])): torchvision's
    RandomCrop(size, padding=pad) + RandomHorizontalFlip, the teachers' augmentation.

    offsets int64 (B, 2)  top, left of the crop in the padded image, in [0, 2·pad]
    The padding is 0 before normalisation (torchvision pads the PIL image with black).
    """
    n, h, w, _ = out.shape
    for b in prange(n):
        r = rows[b]
        top, left, flip = offsets[b, 0] - pad, offsets[b, 1] - pad, flips[b]
        for oy in range(h):
            y = top + oy
            for ox in range(w):
                x = left + (w - 1 - ox if flip else ox)
                if y < 0 or y >= h or x < 0 or x >= w:
                    for c in range(3):
                        out[b, oy, ox, c] = shift[c]
                else:
                    for c in range(3):
                        out[b, oy, ox, c] = np.float32(src[r, y, x, c]) * scale[c] + shift[c]


@njit(parallel=True, cache=True)
def normalize(src, rows, scale, shift, out):
    """out[b] = src[rows[b]] * scale + shift: the no-augmentation path (evaluation, inference)."""
    n, h, w, _ = out.shape
    for b in prange(n):
        r = rows[b]
        for y in range(h):
            for x in range(w):
                for c in range(3):
                    out[b, y, x, c] = np.float32(src[r, y, x, c]) * scale[c] + shift[c]
