"""Pixels from what users have: encoded image files (decode, read_bytes) and arrays of any layout
(as_nhwc_uint8), into the uint8 N×H×W×3 every store and loader holds. Shared by the dataset readers,
the distilled-set reader and the loaders' extra images."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from fastccfs.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def as_nhwc_uint8(x: np.ndarray, where: str, rounding: str = "refuse") -> np.ndarray:
    """Images as uint8 N×H×W×3 (the form every store and loader holds).

    Floats must be pixels in [0, 1]; those that are whole multiples of 1/255 (images read from files)
    convert exactly. Others would be rounded: rounding="refuse" says so and stops, "note" rounds and
    prints one line saying it did. Normalised floats (outside [0, 1]) are refused with their range.
    """
    if x.ndim == 3:  # greyscale N×H×W
        x = np.repeat(x[..., None], 3, axis=3)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise UserError(f"{where}: expected images N×H×W×3 (or N×3×H×W), got shape {x.shape}")
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{where}: pixels must be uint8 or floats in [0, 1], got {x.dtype}")
    if not len(x):
        return np.zeros(x.shape, np.uint8)
    low, high = float(x.min()), float(x.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise UserError(f"{where}: the images hold NaN or infinite values")
    if low < 0 or high > 1:
        raise UserError(f"{where}: float pixels range from {low:.3g} to {high:.3g}, outside [0, 1] — they look "
                        "normalised: pass unnormalised pixels in [0, 1] (x * std + mean) or uint8")
    scaled = np.asarray(x, np.float64) * 255
    exact = np.round(scaled)
    if np.abs(scaled - exact).max() > 1e-3:
        if rounding == "refuse":
            raise UserError(f"{where}: float pixels that are not whole multiples of 1/255 would be rounded to "
                            "uint8 (the form the loaders hold): pass (x * 255).round() as uint8 to accept that")
        print(f"fastccfs: note: {where}: float pixels rounded to uint8 (the form the loaders hold)")
    return np.ascontiguousarray(exact.astype(np.uint8))


# ------------------------------------------------------------------------------------------ decode


def _without_buffer_repr(message: str) -> str:
    """PIL names the in-memory buffer it read ("<_io.BytesIO object at 0x…>"): drop it, the caller names the file."""
    import re

    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", message)


def rgb8(im, where: str) -> np.ndarray:
    """A PIL image of any mode → H×W×3 uint8, by value. 16-bit (I;16*, and I holding 0…65535, as 16-bit
    PGM/PPM open) scaled by 1/257 and rounded; float (F) pixels in [0, 1] × 255 and rounded (outside [0, 1]
    refused, as float arrays are: no defined scale); premultiplied alpha (RGBa, La) undone; every other
    mode (1, L, P, PA, LA, RGBA, CMYK, YCbCr, LAB, HSV, RGBX) by Pillow's own conversion to RGB. Alpha is
    dropped, the colour kept as stored (as torchvision's ImageFolder loader does). Pillow gives 16-bit
    RGB PNGs as RGB already, by their high byte (within 1 of v/257)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UserError(f"{where}: a 32-bit integer image (values {values.min()}…{values.max()}) has no 8-bit "
                            "scale: save it as 8- or 16-bit, or convert it to 8-bit yourself")
        grey = ((2 * values + 257) // 514).astype(np.uint8)  # round(v / 257): 65535 → 255
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and 0 <= values.min() and values.max() <= 1):
            raise UserError(f"{where}: float pixels range from {values.min():.3g} to {values.max():.3g}, outside "
                            "[0, 1]: save the image as 8- or 16-bit, or with pixels in [0, 1]")
        grey = np.round(values * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBa", "La"):  # premultiplied alpha: Pillow converts these to RGB only through RGBA / LA
        im = im.convert(mode.upper())
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode(data: bytes, where: str, size: int | None) -> np.ndarray:
    """One encoded image → H×W×3 uint8, by value from any pixel format (rgb8).

    With SIZE, the shorter side is resized to SIZE (bilinear) and the centre SIZE×SIZE kept.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes now, so a truncated file fails here with its name
            pixels = rgb8(im, where)
    except UserError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, … for bad files
        reason = _without_buffer_repr(str(e))
        raise UserError(f"{where}: cannot decode image ({reason}); replace or remove the file") from e
    if size is None or pixels.shape[:2] == (size, size):
        return pixels
    im = Image.fromarray(pixels)
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8)


def read_bytes(file: str, zf: zipfile.ZipFile | None) -> bytes:
    try:
        return zf.read(file) if zf is not None else Path(file).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise UserError(f"{file}: cannot read ({e})") from e
