"""The GPU benchmark behind benchmarks/gpu.sh: one JSON with what a single accelerator does for CCFS.

  - ResNet-18 training images/s at 32 and 64 px, batch 64 and 256, bf16 autocast, channels_last:
    eager, torch.compile, and torch.compile(mode="reduce-overhead") (CUDA graphs);
  - KD training images/s (student + teacher forward), inference images/s (batch 1024);
  - achieved TFLOP/s of training (3 × the forward FLOPs counted by torch's FlopCounterMode);
  - loader images/s into the GPU at 64 px: tensor (resident), torch DataLoader, FFCV, DALI `mixed`;
  - one CCFS phase (fastccfs's own curriculum_phase) on random Tiny-ImageNet-shaped data (100,000 × 64 × 64,
    200 classes, IPC 100, α 0.2) and the projected wall-clock of the three phases of
    `fastccfs run tiny-imagenet --ipc 100` (100 epochs per phase, as the paper's Table 9);
  - the whole run at a small scale (`fastccfs bench whole` on random 64 px data, ResNet-18: every phase and
    the evaluation with `--eval-jobs auto` — processes sharing the GPU — in both soft-label modes, against
    the reference's way), 2 measured epochs scaled to 100.
`--smoke` shrinks every size so that the script runs on a CPU in a minute or two (CI runs it so).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastccfs.bench import machine  # noqa: E402
from fastccfs.models import create_model  # noqa: E402
from fastccfs.trainer import kd_loss  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_rate(device, size, batch, mode, steps, kd=False) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", 200, size).to(device, memory_format=torch.channels_last)
    teacher = create_model("resnet18", 200, size).to(device, memory_format=torch.channels_last).eval() if kd else None
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 200, (batch,), device=device)
    dtype = torch.bfloat16

    def step():
        with torch.autocast(device.type, dtype=dtype):
            out = model(x)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(x)
                loss = kd_loss(out, target, 20.0)
            else:
                loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if mode != "eager":
        model = torch.compile(model, mode="reduce-overhead" if mode == "cuda-graphs" else None)
    for _ in range(3):  # warm-up (and compilation)
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - t)


@torch.no_grad()
def inference_rate(device, size, batch, steps) -> float:
    model = create_model("resnet18", 200, size).to(device, memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        model(x)
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync(device)
    return steps * batch / (time.perf_counter() - t)


def forward_flops(size) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("resnet18", 200, size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def random_stores(root: Path, n: int, size: int, classes: int) -> dict:
    """Stores (train: N images, test: N/10) of random uint8 pixels, made the way a user's .npz is converted
    (the speed does not depend on the pixels)."""
    from fastccfs.store import convert

    rng = np.random.default_rng(0)
    n_test = max(n // 10, classes)
    data = root / f"random{size}.npz"
    root.mkdir(parents=True, exist_ok=True)
    np.savez(data, x_train=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y_train=np.arange(n) % classes,
             x_test=rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8), y_test=np.arange(n_test) % classes)
    return convert(str(data), cache=root / "cache", progress=False)


def loader_rates(device, n: int, size: int, epochs: int, smoke: bool = False) -> dict:
    """Steady-state images/s of one augmenting epoch (RandomResizedCrop + flip + normalise, batch 256)
    into DEVICE: the tensor backend resident there, the torch DataLoader (workers = cores), FFCV (raw
    pages) and DALI (JPEG pages: `mixed`, nvJPEG decoding on the GPU). A backend whose package is missing
    is reported as such, not skipped silently. SMOKE: FFCV's form is written and its loader built, not
    iterated — on a CPU its first batch compiles the pipeline for ~20 s, and tests/test_backends.py
    iterates that loader already."""
    from fastccfs.formats import convert_store
    from fastccfs.loaders import make_loader

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = random_stores(Path(tmp), n, size, 200)["train"]
        for backend, pages in (("tensor", None), ("torch", None), ("ffcv", "raw"), ("dali", "jpg")):
            name = backend + (f"-{pages}" if pages else "")
            try:
                options = {"num_workers": os.cpu_count()} if backend == "torch" else {}
                if pages:
                    convert_store(store, backend, pages=pages, progress=False)
                loader = make_loader(store, backend=backend, batch_size=256, device=device, seed=0, **options)
                if smoke and backend == "ffcv":
                    rates[name] = {"built": len(loader), "not_iterated": "smoke (the pipeline's compile: ~20 s)"}
                    continue
                for x, _, _ in loader:  # first epoch: compilation, worker start, pipeline build
                    pass
                sync(device)
                start = time.perf_counter()
                for _ in range(epochs):
                    for x, _, _ in loader:
                        pass
                sync(device)
                rates[name] = {"images_per_s": n * epochs / (time.perf_counter() - start), "on": str(x.device)}
            except Exception as e:  # an optional backend absent on the machine: say so in the JSON
                rates[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return rates


def multi_gpu_scaling(gpus: int) -> dict:
    """One phase (`bench run`, --phases 1) on 1 GPU vs all GPUs under torchrun (benchmarks/scaling.py), on a
    random Tiny-ImageNet-shaped .npz (50,000 train images, 200 classes, IPC 50)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        random_stores(Path(tmp), 50_000, 64, 200)
        data = Path(tmp) / "random64.npz"
        out = Path(tmp) / "scaling.json"
        subprocess.run([sys.executable, str(Path(__file__).with_name("scaling.py")), "--out", str(out), "--nproc",
                        str(gpus), "--", str(data), "--ipc", "50", "--cache", str(Path(tmp) / "cache"), "--init", "random",
                        "--teacher-epochs", "2", "--epochs", "20", "--phases", "1", "--num-eval", "0"], check=True)
        return json.loads(out.read_text())


def ccfs_phase(device, n, classes, ipc, epochs, amp: str = "auto", size: int = 64) -> dict:
    from fastccfs import selection
    from fastccfs.config import RunConfig
    from fastccfs.context import Context
    from fastccfs.curriculum import curriculum_phase
    from fastccfs.synthetic import SyntheticSet
    from fastccfs.trainer import predict

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stores = random_stores(tmp, n, size, classes)
        train, test = stores["train"], stores["test"]
        cfg = RunConfig(dataset="random-tiny", ipc=ipc, model="resnet18", teacher_model="resnet18", epochs=epochs,
                        lr=0.2, weight_decay=1e-4, batch_size=64,
                        # every sample: random data says nothing of how far a real filter's fine stage reaches,
                        # so the projection charges the whole split (an upper bound on --inference needed)
                        inference="all", amp=amp)
        per_class, budgets = selection.phase_budgets(ipc, cfg.alpha, cfg.phases)
        start = selection.random_per_class(train.labels, per_class, 0, classes)
        ctx = Context(cfg, None, train, test, device, False)
        torch.manual_seed(0)
        teacher = create_model("resnet18", classes, size).to(device).eval()
        teacher_pred = predict(teacher, ctx.eval_loader(train), device)[0].argmax(1)
        scores = np.random.default_rng(0).integers(0, 50, n) * 0.2
        current = SyntheticSet(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int64), start)
        record = curriculum_phase(ctx, 1, current, budgets[0], teacher, teacher_pred, scores).record
    sizes = [classes * (per_class + sum(budgets[:j])) for j in range(cfg.phases)]
    kd_rate = record["train_images_per_s"]
    infer_s = record["seconds"]["inference"]
    projected = sum(s * 100 / kd_rate for s in sizes) + cfg.phases * (infer_s + record["seconds"]["selection"])
    return {"train_split": n, "set_size": len(start), "epochs": epochs, "seconds": record["seconds"],
            "kd_train_images_per_s": kd_rate, "inference_images_per_s": n / infer_s,
            "phase_set_sizes_at_ipc": sizes, "projected_three_phases_s": projected,
            "projection": "Σ_j set_j × 100 epochs / measured KD images/s + 3 × (inference + selection)"}


def whole_run(device, n, classes, ipc, epochs, measure, num_eval, size=64, model="resnet18", **settings) -> dict:
    """`fastccfs bench whole` at a small scale on random SIZE px data (random-init teacher and random scores:
    the speed does not depend on them): every phase, the evaluation (`--eval-jobs auto` unless SETTINGS say
    otherwise) in both soft-label modes, against the reference's way."""
    from fastccfs.bench_whole import bench_whole
    from fastccfs.models import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        random_stores(tmp, n, size, classes)
        torch.manual_seed(0)
        teacher = tmp / "teacher.pt"
        save_checkpoint(create_model(model, classes, size), teacher)
        scores = tmp / "scores.npy"
        np.save(scores, np.random.default_rng(0).integers(0, 50, n) * 0.2)
        return bench_whole(str(tmp / f"random{size}.npz"), ipc, model=model, measure_epochs=measure,
                           teacher_path=teacher, teacher_model=model, scores_path=scores, cache=tmp / "cache",
                           work=tmp / "work", device=str(device), progress=False,
                           settings={"epochs": epochs, "num_eval": num_eval, "alpha": 0.2, **settings})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU (CI)")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    smoke = args.smoke
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    batches = (4,) if smoke else (64, 256)
    steps = 2 if smoke else 30
    modes = ["eager"] if smoke or device.type != "cuda" else ["eager", "compile", "cuda-graphs"]
    result = {"machine": machine(), "device": str(device), "smoke": smoke, "dtype": "bf16 autocast",
              "memory_format": "channels_last", "train": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    start = time.perf_counter()
    for size in (32, 64):
        flops = forward_flops(size)
        for batch in batches:
            # compilation (~30–60 s per configuration) only at the largest batch: the 8-minute budget
            for mode in modes if batch == batches[-1] else ["eager"]:
                rate = train_rate(device, size, batch, mode, steps)
                result["train"][f"{size}px-batch{batch}-{mode}"] = {
                    "images_per_s": rate, "tflops": 3 * flops * rate / 1e12}
        result["train"][f"{size}px-batch{batches[-1]}-kd-eager"] = {
            "images_per_s": train_rate(device, size, batches[-1], "eager", steps, kd=True)}
        result[f"inference_{size}px_images_per_s"] = inference_rate(device, size, 8 if smoke else 1024, steps)
        result[f"forward_gflops_per_image_{size}px"] = flops / 1e9
    result["loaders_64px"] = loader_rates(device, 512 if smoke else 50_000, 64, 1 if smoke else 3, smoke)
    result["ccfs_phase_tiny_ipc100"] = (ccfs_phase(device, 120, 10, 6, 1, amp="off", size=32) if smoke  # no amp measurement
                                        else ccfs_phase(device, 100_000, 200, 100, 2))
    # smoke: the ConvNet-BN at 32 px, fp32 and two given jobs (no amp or jobs measurement of a ResNet-18 on a CPU)
    result["whole_run_64px"] = (whole_run(device, 300, 10, 5, 2, 1, 2, size=32, model="convnet_bn", amp="off",
                                          eval_jobs="2") if smoke
                                else whole_run(device, 20_000, 100, 20, 100, 2, 3))
    gpus = torch.cuda.device_count()
    result["multi_gpu"] = (multi_gpu_scaling(gpus) if gpus > 1 and not smoke
                           else f"not run: {gpus} GPU(s) (runs when more than one is present)")
    result["seconds"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
