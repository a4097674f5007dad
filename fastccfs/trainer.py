"""Training and batched inference: `fit` (CE or KD from a teacher) and `predict` over a whole split.

The recipe is the CCFS reference's: SGD with momentum, weight decay on every parameter, a linear
warm-up from 1 % of the learning rate over the first epochs, then cosine decay to 0 (stepped per
epoch), KD loss KL(log_softmax(s/T) ‖ log_softmax(t/T))·T² with the teacher in inference mode on
the same augmented batch. Speed comes from the loader (no Python per sample), the
memory format each model runs fastest in, bf16 autocast where it pays (precision.autocast_dtype), and optional
torch.compile. Losses are summed on the device
and checked once per epoch, so the loop never waits on the device per step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastccfs.errors import UserError
from fastccfs.models import folded, memory_format
from fastccfs.precision import autocast_dtype


@dataclass
class Recipe:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    warmup_start: float = 0.01  # the warm-up's first learning rate, as a fraction of lr
    temperature: float = 20.0


def lr_at(epoch: int, recipe: Recipe) -> float:
    """Learning rate of an epoch: linear warm-up, then cosine to 0 over the remaining epochs."""
    warm = min(recipe.warmup_epochs, max(recipe.epochs - 1, 0))
    if epoch < warm:
        return recipe.lr * (recipe.warmup_start + (1 - recipe.warmup_start) * epoch / warm)
    span = max(recipe.epochs - warm, 1)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (epoch - warm) / span))


def batch_size_for(set_size: int, train_size: int) -> int:
    """The reference code's batch rule, by the set's share of the train split: below 10 % → 32, below
    20 % → 64, else 128 (ccfs_cifar10.py: 500·C / 1000·C images, ccfs_cifar100.py: 50·C / 100·C, i.e.
    10 % / 20 % of both). The paper's Table 8 prints ≤ 5 %, 5–20 %, > 20 %: the code is what ran.
    Tiny-ImageNet's script passes a fixed 64 instead (configs/tiny-imagenet.yaml)."""
    if 10 * set_size < train_size:  # integers: a share of exactly 10 % is not "below 10 %"
        return 32
    return 64 if 5 * set_size < train_size else 128


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) on temperature-softened distributions, batch mean, times T²."""
    s = F.log_softmax(student_logits.float() / temperature, dim=1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def _autocast(dtype: torch.dtype | None, device: torch.device):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def fit(model: nn.Module, loader, recipe: Recipe, teacher: nn.Module | None = None, device="cpu",
        amp: str = "auto", compile: bool = False, evaluate=None, evaluate_from: float = 0.8, on_batch=None,
        progress: bool = True, desc: str = "train", distributed: bool = False, position: int | None = None) -> dict:
    """Train `model` in place; returns the history.

    teacher: KD from its logits (else cross-entropy with the labels); a loader whose batches carry a fourth
    element, the KD targets (shared soft labels, fastccfs.soft_labels), needs none.
    evaluate(model) → accuracy: called after every epoch past `evaluate_from`·epochs (the reference's
    "epoch > 0.8·epochs"), and always after the last.
    on_batch(logits, y, idx): sees every training batch's detached logits (forgetting events).
    distributed: under torchrun, DistributedDataParallel over the ranks; LOADER must then serve this
    rank's share of each epoch (rank=, world_size=). The history is the whole job's, on every rank, and
    on_batch sees every rank's batches of an epoch at its end, gathered by sample index (each sample
    once), so per-sample statistics count exactly as in one process given the same predictions.
    """
    from tqdm import tqdm

    from fastccfs import distributed as dist_

    distributed = distributed and dist_.active()
    device = torch.device(device)
    fmt = memory_format(model, device)
    model.to(device, memory_format=fmt).train()
    if teacher is not None:  # it only infers: BatchNorm folded (measured: benchmarks/README.md, "Choices in the code")
        teacher_fmt = memory_format(teacher, device)
        teacher = folded(teacher.to(device, memory_format=teacher_fmt).eval()).to(memory_format=teacher_fmt)
    step_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = torch.compile(step_model) if compile else step_model
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    history = {"loss": [], "train_acc": [], "test_acc": {}, "seconds": 0.0, "images": 0, "dtype": None}
    dtype = None
    start = time.perf_counter()
    # The bar counts batches, so it moves within an epoch (a minute or more on real data on a CPU).
    bar = tqdm(total=recipe.epochs * len(loader), desc=desc, disable=not progress, leave=False, unit="batch",
               mininterval=1.0, position=position)  # position: its own line beside other processes' bars
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, recipe)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        epoch_batches = []  # distributed on_batch: this rank's (logits, y, idx) of the epoch
        for batch in loader:
            x, y, idx = batch[:3]  # a fourth element: the batch's KD targets (shared soft labels), no teacher run
            x = x.contiguous(memory_format=fmt)
            if history["dtype"] is None:  # decided on the first batch's shape (a measurement on some CPUs)
                dtype = autocast_dtype(device, amp, model, tuple(x.shape), train=True, teacher=teacher)
                if distributed:  # every rank computes in rank 0's choice
                    dtype = dist_.broadcast(dtype)
                history["dtype"] = "bf16" if dtype is not None else "fp32"
            with _autocast(dtype, device):
                logits = step_model(x)
                if len(batch) > 3:
                    loss = kd_loss(logits, batch[3], recipe.temperature)
                elif teacher is not None:
                    with torch.no_grad():
                        target = teacher(x)
                    loss = kd_loss(logits, target, recipe.temperature)
                else:
                    loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if on_batch is not None and distributed:
                epoch_batches.append((logits.detach().cpu(), y.cpu(), idx.cpu()))
            elif on_batch is not None:
                on_batch(logits.detach(), y, idx)
            bar.update()
        if distributed:
            totals = dist_.all_reduce_sum(torch.stack([loss_sum.float().cpu(), correct.float().cpu(),
                                                        torch.tensor(float(seen))]).to(device))
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
            if on_batch is not None:
                on_batch(*_gathered_by_sample(epoch_batches, device))
        mean_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(mean_loss):
            raise UserError(f"{desc}: the loss became {mean_loss} in epoch {epoch + 1}; lower the learning rate "
                            f"(now {recipe.lr}) or check the inputs")
        history["loss"].append(mean_loss)
        history["train_acc"].append(float(correct) / max(seen, 1))
        history["images"] += seen
        if evaluate is not None and (epoch > evaluate_from * recipe.epochs or epoch == recipe.epochs - 1):
            history["test_acc"][epoch] = float(evaluate(model))
            model.train()
        elapsed = time.perf_counter() - start
        bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", loss=f"{mean_loss:.3f}",
                        img_s=f"{history['images'] / elapsed:.0f}")
    bar.close()
    if distributed:  # DDP syncs buffers before each forward, so the last batch left each rank's BatchNorm
        import torch.distributed as dist  # statistics its own: every rank keeps rank 0's model (the saved one)

        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)
    history["seconds"] = time.perf_counter() - start
    return history


def _gathered_by_sample(batches: list, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every rank's (logits, y, idx) of an epoch, concatenated, each sample once (the padding that evens
    out the ranks' shares repeats a few samples: their first presentation in rank order is kept)."""
    from fastccfs import distributed as dist_

    mine = [torch.cat(parts) for parts in zip(*batches)] if batches else None
    parts = [p for p in dist_.gather(mine) if p is not None]
    logits, y, idx = (torch.cat(t) for t in zip(*parts))
    ids, rows = idx.numpy(), np.arange(len(idx))
    real = ids >= 0  # distilled images (ids < 0) are distinct samples whatever their id
    _, first = np.unique(ids[real], return_index=True)
    keep = torch.from_numpy(np.sort(np.concatenate([rows[real][first], rows[~real]])))
    return logits[keep].to(device), y[keep].to(device), idx[keep].to(device)


def _all_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of T, concatenated in rank order (shares may differ in length)."""
    import torch.distributed as dist

    from fastccfs.distributed import gather

    shapes = gather(tuple(t.shape))  # a rank with an empty share has no batch to tell the row shape
    sizes = [shape[0] for shape in shapes]
    row = next((shape[1:] for shape in shapes if shape[0]), t.shape[1:])
    longest = max(sizes)
    t = t.reshape(len(t), *row)
    padded = torch.cat([t, t.new_zeros((longest - len(t), *row))])
    parts = [torch.empty_like(padded) for _ in shapes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def _unsharded(results: list[torch.Tensor], loader) -> list[torch.Tensor]:
    """(logits, labels, ids) of every rank, in the order one process would produce: the loader's own id
    order. Backends shard differently (tensor/torch: interleaved; DALI: contiguous with its last batch
    padded; FFCV: its own distributed order), so rows are placed by sample id, each once."""
    gathered = [_all_rows(t) for t in results]
    order = torch.as_tensor(loader.ids).cpu().numpy()
    ids = gathered[2].cpu().numpy()
    if len(np.unique(order)) != len(order):
        raise UserError("sharded inference needs distinct sample ids in the loader (a set that repeats a sample "
                        "cannot be put back in order): predict it in one process")
    position = {int(i): p for p, i in enumerate(order.tolist())}
    where = np.full(len(order), -1, np.int64)
    for row, i in enumerate(ids.tolist()):
        p = position.get(int(i))
        if p is not None and where[p] < 0:
            where[p] = row
    if (where < 0).any():
        raise RuntimeError(f"sharded inference lost {(where < 0).sum()} of {len(order)} samples")
    take = torch.from_numpy(where).to(gathered[0].device)
    return [t[take] for t in gathered]


@torch.no_grad()
def predict(model: nn.Module, loader, device="cpu", amp: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits float32 N×C, labels, ids) over an evaluation loader, in its order; BatchNorm folded.

    Under torch.distributed with an evaluation loader sharded by rank (rank=, world_size=), every rank
    gets the whole split's results, gathered back into the unsharded order.
    """
    device = torch.device(device)
    fmt = memory_format(model, device)
    model.to(device, memory_format=fmt).eval()
    model = folded(model).to(memory_format=fmt)
    logits, labels, ids = [], [], []
    dtype = ...
    for x, y, idx in loader:
        x = x.contiguous(memory_format=fmt)
        if dtype is ...:  # each rank decides for itself (a rank may hold no batch to decide on); after the
            dtype = autocast_dtype(device, amp, model, tuple(x.shape), train=False)  # first, precision.json agrees
        with _autocast(dtype, device):
            out = model(x)
        logits.append(out.float())
        labels.append(y)
        ids.append(idx)
    if not logits:  # an empty share of a sharded split (fewer samples than ranks)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        logits, labels, ids = [torch.zeros(0, 0, device=device)], [empty], [empty]
    results = [torch.cat(t) for t in (logits, labels, ids)]
    if getattr(loader, "world_size", 1) > 1:
        results = _unsharded(results, loader)
    return tuple(t.cpu().numpy() for t in results)


def accuracy(model: nn.Module, loader, device="cpu", amp: str = "auto") -> float:
    logits, labels, _ = predict(model, loader, device, amp)
    return float((logits.argmax(1) == labels).mean())
