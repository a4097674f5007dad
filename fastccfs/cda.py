"""Built-in distillation: CDA (curriculum data augmentation, an SRe²L-family method).

Images start as Gaussian noise in normalised space and are optimised so that a trained teacher
(1) classifies them as their target class and (2) sees, at every BatchNorm layer, batch statistics
equal to its running statistics:

    loss = CE(teacher(aug(x)), y) + r_bn · Σ_l w_l (‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂)

with w = first_bn_multiplier for the first BN layer and 1 after it. aug = CDA's curriculum crop (a
RandomResizedCrop, shared by the batch, whose minimum scale falls from 1.0 to 0.08 on a cosine
schedule), a horizontal flip and a random shift; Adam (betas 0.5, 0.9) with a cosine learning rate;
pixels clipped to the valid range after every step. One batch mixes many classes.

Output: OUT/new{cls:03d}/class{cls:03d}_id{n:03d}.png (or .jpg) — the SRe²L/CDA layout — and
OUT/distilled.npz (uint8 images N×H×W×3, labels), both read by `--distilled`. Each batch is saved
as it finishes (OUT/.parts/), so an interrupted distillation resumes by batch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastccfs import distributed
from fastccfs.atomic import CHECKSUMS, refuse_other_settings, save_arrays, write_json
from fastccfs.distributed import rank0_path
from fastccfs.errors import UserError


@dataclass
class DistillConfig:
    iterations: int = 1000
    lr: float = 0.25
    r_bn: float = 0.01
    batch_size: int = 100
    jitter: int = 4
    first_bn_multiplier: float = 10.0
    milestone: float = 1.0
    amp: str = "auto"  # precision.autocast_dtype; bf16 left the loss terms within 0.03 % of fp32
    image_format: str = "png"
    seed: int = 0


# Each option's range (as config.RANGES: checked by check_options before any work) or choices.
OPTION_RANGES = {"iterations": "≥ 1", "lr": "> 0", "r_bn": "≥ 0", "batch_size": "≥ 1", "jitter": "≥ 0",
                 "first_bn_multiplier": "≥ 0", "milestone": "(0, 1]", "seed": "[0, 4294967295]"}
OPTION_CHOICES = {"amp": ("auto", "bf16", "off"), "image_format": ("png", "jpg")}


def check_options(cfg: DistillConfig) -> DistillConfig:
    """Every option of type, range and choices, one line naming the option, what it allows and the value given."""
    from fastccfs.config import in_range, range_error

    for name, rule in OPTION_RANGES.items():
        value = getattr(cfg, name)
        kind = type(DistillConfig.__dataclass_fields__[name].default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise UserError(f"distillation option {name} must be {'a whole number' if kind is int else 'a number'}; "
                            f"got {value!r}")
        if not math.isfinite(value) or not in_range(value, rule):
            raise UserError("distillation option " + range_error(name, rule, value))
        setattr(cfg, name, kind(value))
    for name, choices in OPTION_CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise UserError(f"distillation option {name} must be one of {', '.join(choices)}; got {getattr(cfg, name)!r}")
    return cfg


def dataset_defaults(dataset: str) -> DistillConfig:
    from fastccfs.config import load_yaml

    table = load_yaml("distill.yaml")
    return DistillConfig(**table.get(dataset, table["default"]))


class BNStatistics:
    """Forward hooks on every BatchNorm2d: the distance of each batch's statistics to the running ones."""

    def __init__(self, model: nn.Module, first_multiplier: float):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise UserError("the BN-statistics loss needs a teacher with BatchNorm layers (e.g. resnet18, "
                            "convnet_bn); the instance-norm ConvNet has none")
        self.weights = [first_multiplier] + [1.0] * (len(self.layers) - 1)
        self.terms: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]

    def _hook(self, module, inputs, output):
        x = inputs[0].float()
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self.terms.append(torch.norm(module.running_mean - mean, 2) + torch.norm(module.running_var - var, 2))

    def pop(self) -> torch.Tensor:
        loss = sum(w * t for w, t in zip(self.weights, self.terms))
        self.terms = []
        return loss

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def min_crop_scale(iteration: int, cfg: DistillConfig) -> float:
    """CDA's curriculum: the crop's minimum scale falls from 1.0 to 0.08 (cosine) over milestone·iterations."""
    span = cfg.milestone * cfg.iterations
    if iteration >= span:
        return 0.08
    return 0.08 + (1.0 - 0.08) * (1 + math.cos(math.pi * iteration / span)) / 2


def _augment(x: torch.Tensor, cfg: DistillConfig, iteration: int, gen: torch.Generator) -> torch.Tensor:
    """One random crop + resize, flip and shift for the whole batch (as CDA), differentiable in x."""
    from fastccfs.augment import sample_crop_boxes

    _, _, h, w = x.shape
    top, left, ch, cw = sample_crop_boxes(1, h, w, gen, scale=(min_crop_scale(iteration, cfg), 1.0))[0].tolist()
    x = F.interpolate(x[:, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear", align_corners=False)
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(3)
    shift = torch.randint(0, cfg.jitter + 1, (2,), generator=gen).tolist()
    return torch.roll(x, shifts=shift, dims=(2, 3))


def recover(teacher: nn.Module, targets: torch.Tensor, image_size: int, mean, std, cfg: DistillConfig,
            seed: int, device, progress: bool = True, desc: str = "recover") -> tuple[np.ndarray, dict]:
    """Optimise one batch of images for `targets`; returns uint8 N×H×W×3 and the loss history."""
    from tqdm import tqdm

    from fastccfs.precision import autocast_dtype
    from fastccfs.trainer import _autocast

    device = torch.device(device)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(targets), 3, image_size, image_size, generator=gen).to(device).requires_grad_(True)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    low, high = (0 - mean_t) / std_t, (1 - mean_t) / std_t  # the valid pixel range, normalised
    optimizer = torch.optim.Adam([x], lr=cfg.lr, betas=(0.5, 0.9), eps=1e-8)
    targets = targets.to(device)
    stats = BNStatistics(teacher, cfg.first_bn_multiplier)
    history = {"ce": [], "bn": []}
    # the dtype of a training step of the teacher at this batch: recovery's cost is the same forward + backward
    dtype = autocast_dtype(device, cfg.amp, teacher, tuple(x.shape), train=True)
    try:
        bar = tqdm(range(cfg.iterations), desc=desc, disable=not progress, leave=False)
        for it in bar:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * it / cfg.iterations))
            with _autocast(dtype, device):
                logits = teacher(_augment(x, cfg, it, gen))
            loss_ce = F.cross_entropy(logits.float(), targets)
            loss_bn = stats.pop()
            loss = loss_ce + cfg.r_bn * loss_bn
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.data = torch.maximum(torch.minimum(x.data, high), low)
            history["ce"].append(float(loss_ce.detach()))
            history["bn"].append(float(loss_bn.detach()))
            if it % 10 == 0 or it == cfg.iterations - 1:
                bar.set_postfix(ce=f"{history['ce'][-1]:.3f}", bn=f"{history['bn'][-1]:.3f}")
    finally:
        stats.remove()
    pixels = (x.detach() * std_t + mean_t).clamp(0, 1)
    images = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return images, history


def plan(num_classes: int, ipc: int) -> np.ndarray:
    """(class, id) of every image to make, id-major: each batch spans as many classes as it can."""
    return np.array([(c, n) for n in range(ipc) for c in range(num_classes)], np.int64).reshape(-1, 2)


def distill(teacher: nn.Module, classes: list[str], ipc: int, image_size: int, mean, std, cfg: DistillConfig,
            out: str | os.PathLike, device="cpu", progress: bool = True) -> Path:
    """Recover IPC images per class into OUT (resumable by batch); returns OUT.

    OUT/distill.json records what made the images (settings, IPC, classes, size); a finished or
    half-done OUT made with other settings is refused, never mixed or overwritten."""
    out = Path(out)
    made_with = {**asdict(cfg), "ipc": ipc, "classes": len(classes), "image_size": image_size}
    record = out / "distill.json"
    if record.is_file():
        refuse_other_settings(json.loads(record.read_text()), made_with, f"{out} holds images distilled",
                              "pass another --out, or the same settings to reuse or resume them")
    elif out.is_dir() and {p.name for p in out.iterdir()} - {"teacher.pt", CHECKSUMS}:  # fastccfs.distill's own
        raise UserError(f"{out} holds files this distillation did not write: pass a new or empty --out (its "
                        "class folders would be replaced)")
    if (out / "distilled.npz").is_file():
        return out
    # Every write below is collective (rank0_path): under torchrun each rank reaches it, rank 0 writes.
    write_json(record, made_with, via=rank0_path)
    work = plan(len(classes), ipc)
    parts = out / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    batches = range(0, len(work), cfg.batch_size)

    def recover_batch(b: int):
        chunk = work[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        seed = int(np.random.SeedSequence([cfg.seed, b]).generate_state(1)[0])
        images, history = recover(teacher, torch.from_numpy(chunk[:, 0]), image_size, mean, std, cfg, seed,
                                  device, progress, desc=f"distill batch {b + 1}/{len(batches)}")
        return b, images, chunk, history

    # Under torchrun the pending batches are dealt to the ranks: a batch's result depends on its seed alone,
    # so the images are those of one process.
    for results in distributed.deal(batches_left(parts, len(batches)), lambda mine: [recover_batch(b) for b in mine]):
        for b, images, chunk, history in results:
            save_arrays(parts / f"batch_{b:05d}.npz", via=rank0_path, images=images, plan=chunk,
                        ce=np.array(history["ce"]), bn=np.array(history["bn"]))
    images, labels, ids = [], [], []
    for b in range(len(batches)):
        with np.load(parts / f"batch_{b:05d}.npz") as data:
            images.append(data["images"])
            labels.append(data["plan"][:, 0])
            ids.append(data["plan"][:, 1])
    images, labels, ids = np.concatenate(images), np.concatenate(labels), np.concatenate(ids)
    order = np.lexsort((ids, labels))  # class-major, ids ascending
    images, labels, ids = images[order], labels[order], ids[order]
    write_layout(out, images, labels, ids, cfg.image_format)
    save_arrays(out / "distilled.npz", via=rank0_path, images=images, labels=labels)  # last: marks it finished
    shutil.rmtree(parts, ignore_errors=True)
    return out


def batches_left(parts: Path, count: int) -> list[int]:
    """The batches of a distillation not finished in PARTS yet (a resumed one skips the others)."""
    return [b for b in range(count) if not (parts / f"batch_{b:05d}.npz").is_file()]


def write_layout(out: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, image_format: str) -> None:
    """new{cls:03d}/class{cls:03d}_id{n:03d}.{png|jpg}, each class folder written atomically."""
    from PIL import Image

    if image_format not in ("png", "jpg"):
        raise UserError(f"unknown image format {image_format!r}: use png or jpg")
    for c in np.unique(labels):
        with rank0_path(out / f"new{c:03d}") as tmp:
            tmp.mkdir()
            if not distributed.is_main():  # under torchrun rank 0 writes the folder (a collective write)
                continue
            for img, n in zip(images[labels == c], ids[labels == c]):
                path = tmp / f"class{c:03d}_id{n:03d}.{image_format}"
                Image.fromarray(img).save(path, **({"quality": 95} if image_format == "jpg" else {}))
