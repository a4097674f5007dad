"""The tensor loader against what users run: a stock torchvision pipeline — a Dataset over the split's uint8
array as torchvision's CIFAR10 holds it (PIL image per sample, RandomResizedCrop or RandomCrop(padding 4),
RandomHorizontalFlip, ToTensor, Normalize) in a DataLoader with shuffling — at the worker count that is
fastest on this machine (0, 1, 2, 4 measured, persistent workers), side by side, issue 26.

Settings: 32 px (CIFAR-10, 50,000 images, batch 256), 64 px (the Tiny-ImageNet mini zip, 10,000 images,
batch 256) and a user's 500-image set (CIFAR-10, batch 64); RandomResizedCrop and pad-crop; an idle machine
and a loaded one (a busy process spinning on one core beside the loader). Every measurement runs in a fresh
process (so thread settings such as OMP_WAIT_POLICY apply from the start): images/s over ≥ 10,240 images
after a warm-up (the 500-image set: 20 epochs after one, epoch ends included). Each row also measures
fastccfs's own fallback, backend="torch", at the stock loader's best worker count.

    python benchmarks/loaders_vs_dataloader.py --root CIFAR_ROOT --tiny-root TINY_ROOT [--cache DIR] [--resume]
Writes benchmarks/results/loaders_vs_dataloader.json row by row (--resume keeps the rows it holds; --only TEXT
measures the matching rows and writes nothing).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
WORKERS = (0, 1, 2, 4)
# The tensor loader under thread policies (the environment of a fresh process): which one to make the default
# is decided by these numbers (issue 26: idle OpenMP threads spin-wait, costly on a loaded machine).
POLICIES = {"default": {}, "omp_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "one_thread": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
SETS = {"cifar10_32px": ("cifar10", None, 256), "tiny_64px": ("tiny-imagenet", None, 256),
        "cifar10_500_images": ("cifar10", 500, 64)}


def measure(spec: dict) -> float:
    """Images/s of one loader (in this process)."""
    import numpy as np
    import torch

    from fastccfs.store import convert

    store = convert(spec["dataset"], spec["root"], spec["cache"], progress=False)["train"]
    rows = np.arange(len(store)) if spec["subset"] is None else \
        np.random.default_rng(0).choice(len(store), spec["subset"], replace=False)
    batch, mode = spec["batch"], spec["augment"]
    if spec["loader"] in ("tensor", "torch"):
        from fastccfs.loaders import make_loader

        options = {"num_workers": spec["workers"]} if spec["loader"] == "torch" else {}
        loader = make_loader(store, backend=spec["loader"], batch_size=batch, augment=mode, device="cpu",
                             indices=rows, seed=0, with_indices=False, **options)
    else:
        loader = stock_loader(np.asarray(store.images[rows]), np.asarray(store.labels[rows]), store.mean,
                              store.std, batch, mode, spec["workers"])
    small = spec["subset"] is not None
    epochs = iter(range(10**9))

    def batches():
        for _ in epochs:
            yield from loader

    stream = batches()
    for _ in range(len(loader) if small else 4):  # warm-up: workers started, kernels compiled
        next(stream)
    target, seen = 10_240, 0
    start = time.perf_counter()
    while seen < target:
        x, y = next(stream)
        seen += len(y)
    assert x.dtype == torch.float32
    return seen / (time.perf_counter() - start)


def stock_loader(images, labels, mean, std, batch: int, mode: str, workers: int):
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    size = images.shape[1]
    crop = T.RandomResizedCrop(size) if mode == "rrc" else T.RandomCrop(size, padding=4)
    transform = T.Compose([crop, T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])

    class Split(Dataset):  # torchvision.datasets.CIFAR10's __getitem__, over the same uint8 array
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i])), int(labels[i])

    torch.manual_seed(0)
    return DataLoader(Split(), batch_size=batch, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0)


def run_child(spec: dict, env: dict, busy: bool) -> float:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env={**os.environ, **env},
                             check=True, stdout=subprocess.PIPE, text=True, timeout=900).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder with cifar-10-batches-py/")
    parser.add_argument("--tiny-root", help="folder with tiny-imagenet-200.zip")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=str(RESULTS / "loaders_vs_dataloader.json"))
    parser.add_argument("--only", default=None, help="measure the settings whose key contains this text")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"images_per_s": measure(json.loads(args.child))}))
        return
    if not (args.root and args.tiny_root):
        parser.error("--root and --tiny-root are needed")
    from fastccfs.machine import machine

    result = {"machine": machine(), "policies": POLICIES, "baseline": "stock torchvision transforms + DataLoader(shuffle=True, "
              "persistent_workers) over the uint8 array (torchvision CIFAR10's __getitem__), at the fastest of "
              f"num_workers {WORKERS}", "ours": "fastccfs.make_loader(store, backend='tensor'), default settings",
              "torch_backend": "fastccfs.make_loader(store, backend='torch', num_workers=the stock's best)",
              "loaded": "a busy Python process spinning beside the loader", "settings": {}}
    if args.resume and Path(args.json).exists():
        result["settings"] = json.loads(Path(args.json).read_text())["settings"]
    for name, (dataset, subset, batch) in SETS.items():
        root = args.root if dataset == "cifar10" else args.tiny_root
        for mode in ("rrc", "crop_pad"):
            for busy in (False, True):
                key = f"{name}/{mode}/{'loaded' if busy else 'idle'}"
                if key in result["settings"] or (args.only and args.only not in key):
                    continue
                spec = {"dataset": dataset, "root": root, "cache": args.cache, "subset": subset, "batch": batch,
                        "augment": mode}
                stock = {w: run_child({**spec, "loader": "stock", "workers": w}, {}, busy) for w in WORKERS}
                best = max(stock, key=stock.get)
                policies = {p: run_child({**spec, "loader": "tensor"}, env, busy) for p, env in POLICIES.items()}
                ours = policies["default"]
                fallback = run_child({**spec, "loader": "torch", "workers": best}, {}, busy)
                row = {"stock_images_per_s": {str(w): round(v) for w, v in stock.items()}, "stock_best_workers": best,
                       "ours_images_per_s": round(ours), "ratio": round(ours / stock[best], 2),
                       "ours_by_thread_policy": {p: round(v) for p, v in policies.items()},
                       "torch_backend_images_per_s": round(fallback),
                       "torch_backend_ratio": round(fallback / stock[best], 2)}
                result["settings"][key] = row
                print(f"{key}: ours {ours:,.0f} img/s, stock {stock[best]:,.0f} (workers {best}) → "
                      f"{ours / stock[best]:.2f}×; torch backend {fallback / stock[best]:.2f}×", flush=True)
                if not args.only:  # row by row, so that --resume picks up after an interruption
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
