"""BASELINE ONLY — one CCFS phase done the way the paper's published code does it.

Used by `fastccfs bench curriculum` and the benchmarks to measure fastccfs against; never by
`fastccfs run`. It reproduces the reference's costs, not its code:
  - training: a Dataset that builds a PIL image per sample (as torchvision's CIFAR10 does), PIL-level
    RandomResizedCrop + flip, ToTensor + Normalize per sample, a DataLoader with 4 workers that are
    re-created every epoch (no persistent workers; 4 as the reference's scripts pass, or the count measured
    fastest here: fastest_workers), fp32, eager, the teacher's forward in fp32, KD
    loss, SGD with LinearLR warm-up + CosineAnnealingLR stepped per epoch; an evaluation run adds a
    test pass (PIL + ToTensor + Normalize per image) after every epoch past 0.8·epochs;
  - inference: the full train split held as a normalised fp32 tensor (built once, outside the phase,
    as the reference does at start-up), filter forward in fp32 in batches of 256, logits concatenated;
  - selection: index lists, Python set algebra, per-class bucketing in a Python loop over a torch
    label tensor, `sorted()` by score per class.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class PILImages(Dataset):
    """store images → PIL per sample, like torchvision.datasets.CIFAR10.__getitem__."""

    def __init__(self, images, labels, indices, transform):
        self.images, self.labels, self.indices, self.transform = images, labels, indices, transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        from PIL import Image

        i = int(self.indices[k])
        return self.transform(Image.fromarray(np.asarray(self.images[i]))), int(self.labels[i])


def normalised_tensor(store) -> torch.Tensor:
    """The reference's `images_og`: every train image through ToTensor + Normalize, stacked (setup)."""
    x = torch.from_numpy(np.array(store.images)).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(store.mean).view(1, 3, 1, 1)
    std = torch.tensor(store.std).view(1, 3, 1, 1)
    return (x - mean) / std


def test_accuracy(model, store, batch_size=256, num_workers=4, device="cpu") -> float:
    """The reference's test pass: a DataLoader over the test split, ToTensor + Normalize per PIL image."""
    import torchvision.transforms as T

    transform = T.Compose([T.ToTensor(), T.Normalize(store.mean, store.std)])
    loader = DataLoader(PILImages(store.images, store.labels, np.arange(len(store)), transform),
                        batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train()
    return correct / len(store)


def train(model, teacher, store, indices, epochs, lr, batch_size, seed, device="cpu", momentum=0.9,
          weight_decay=5e-4, warmup_epochs=5, temperature=20.0, num_workers=4, test_store=None,
          evaluate_from=0.8):
    """KD training the reference's way; with TEST_STORE (an evaluation run) a test pass after every epoch
    > evaluate_from·epochs and after the last, as the reference's evaluation does."""
    import torchvision.transforms as T

    torch.manual_seed(seed)
    size = store.image_size
    transform = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(store.mean, store.std)])
    dataset = PILImages(store.images, store.labels, indices, transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    warm = min(warmup_epochs, max(epochs - 1, 0))
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs - warm, 1))]
    if warm:
        schedulers = [torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warm),
                      *schedulers]
    scheduler = (torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers, milestones=[warm]) if warm
                 else schedulers[0])
    model.to(device).train()
    teacher.to(device).eval()
    images = 0
    for epoch in range(epochs):
        for x, _y in loader:  # iterating a non-persistent DataLoader starts its workers anew each epoch
            x = x.to(device)
            t_out = teacher(x)
            s_out = model(x)
            loss = F.kl_div(F.log_softmax(s_out / temperature, 1), F.log_softmax(t_out / temperature, 1),
                            reduction="batchmean", log_target=True) * temperature**2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(x)
        scheduler.step()
        if test_store is not None and (epoch > evaluate_from * epochs or epoch == epochs - 1):
            test_accuracy(model, test_store, num_workers=num_workers, device=device)
    return images


def fastest_workers(model, teacher, store, indices, batch_size, seed, device="cpu", candidates=(0, 1, 2, 4)) -> dict:
    """The DataLoader worker count that trains one epoch of INDICES fastest here (the baseline's best
    honest setting: workers re-created every epoch, as the reference's loop does): {workers: seconds}."""
    import copy

    seconds = {}
    for workers in candidates:
        t = time.perf_counter()
        train(copy.deepcopy(model), teacher, store, indices, 1, 0.01, batch_size, seed, device, num_workers=workers)
        seconds[workers] = time.perf_counter() - t
    return seconds


@torch.no_grad()
def infer(model, images_og: torch.Tensor, batch_size: int = 256, device="cpu") -> torch.Tensor:
    model.to(device).eval()
    logits = None
    for start in range(0, len(images_og), batch_size):
        out = model(images_og[start:start + batch_size].to(device)).detach()
        logits = out if logits is None else torch.cat((logits, out), 0)
    return logits


def select(predicted, labels_all, teacher_correct_idx, selected_idx, scores, k, num_classes):
    """predicted: the filter's labels (a CPU tensor), teacher_correct_idx / selected_idx: index lists."""
    true_labels = torch.as_tensor(labels_all)
    target = torch.where(true_labels != predicted)[0].tolist()
    target = list(set(teacher_correct_idx) & set(target) - set(selected_idx))
    per_class = [[] for _ in range(num_classes)]
    for idx in target:
        per_class[true_labels[idx]].append(idx)
    selection = []
    for c in range(num_classes):
        selection += sorted(per_class[c], key=lambda i: scores[i])[:k]
    return selection


def phase(model, teacher, store, images_og, indices, teacher_correct_idx, scores, k, epochs, lr, batch_size,
          seed, device="cpu", weight_decay=5e-4, num_workers=4) -> tuple[list[int], dict]:
    """One phase; returns the picks and the wall-clock of each stage."""
    seconds = {}
    t = time.perf_counter()
    images = train(model, teacher, store, indices, epochs, lr, batch_size, seed, device, weight_decay=weight_decay,
                   num_workers=num_workers)
    seconds["train"], t = time.perf_counter() - t, time.perf_counter()
    logits = infer(model, images_og, device=device)
    seconds["inference"], t = time.perf_counter() - t, time.perf_counter()
    picks = select(torch.argmax(logits, dim=1).cpu(), store.labels, teacher_correct_idx, list(indices), scores, k,
                   store.num_classes)
    seconds["selection"] = time.perf_counter() - t
    return picks, {"seconds": seconds, "train_images": images}
