"""Train a model in a plain PyTorch loop on fastccfs's loaders: one API, any backend.

    fastccfs convert cifar10 --root DATA --to ffcv        # once: the store (and the FFCV/DALI form)
    python examples/train_with_fastccfs_loaders.py cifar10 --backend ffcv --epochs 5

Batches are (x, y, idx): x normalised NCHW on the device (channels_last here, asked for: the model is
channels_last), y labels, idx the store index
of each image (what per-sample bookkeeping — forgetting events, selection — keys on).
"""
import argparse
import time

import torch
import torch.nn.functional as F

from fastccfs.formats import convert_store
from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.store import find_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a converted dataset's name (cifar10, demo, …) or a store folder")
    parser.add_argument("--backend", choices=["tensor", "torch", "ffcv", "dali"], default="tensor")
    parser.add_argument("--model", default="convnet_bn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--cache", default=None, help="the store cache (default: $FASTCCFS_CACHE or ~/.cache/fastccfs)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    stores = {split: find_store(args.dataset, split, args.cache) for split in ("train", "test")}
    if args.backend in ("ffcv", "dali"):  # writes the form once; later calls find it up to date
        for store in stores.values():
            convert_store(store, args.backend, progress=False)
    train = make_loader(stores["train"], backend=args.backend, batch_size=args.batch_size, device=device,
                        memory_format=torch.channels_last)
    test = make_loader(stores["test"], backend=args.backend, batch_size=500, device=device,
                       memory_format=torch.channels_last)  # a test split: no augmentation, by default

    model = create_model(args.model, stores["train"].num_classes, stores["train"].image_size[0])
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * len(train))
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, seen, loss_sum = time.perf_counter(), 0, 0.0
        for x, y, idx in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
        speed = seen / (time.perf_counter() - start)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y, _ in test:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        print(f"backend {args.backend}: epoch {epoch} loss {loss_sum / seen:.3f}, {speed:.0f} img/s, "
              f"test accuracy {correct / total:.3f}", flush=True)


if __name__ == "__main__":
    main()
