"""Filter training through each loader vs the bare training step on ready-made batches.

Target (issue 3): fit() through the tensor loader within 10 % of the bare step's images/s — the
loader must not be what limits training. Same model, batch, autocast mode ("auto") and memory format.
Also: the KD step with the teacher as it is vs with its BatchNorms folded (what fit() does).
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.precision import autocast_dtype
from fastccfs.models import folded, memory_format
from fastccfs.trainer import Recipe, _autocast, fit, kd_loss

IMAGES, BATCH = 2560, 128


@pytest.mark.parametrize("model_name", ["convnet", "convnet_bn"])
@pytest.mark.parametrize("path", ["bare-step", "tensor", "torch"])
def test_train_epoch(benchmark, stores, model_name, path):
    store = stores["cifar10"]
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = create_model(model_name, 10)
    if path == "bare-step":
        fmt = memory_format(model, device)
        model.to(memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        batches = [(torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=fmt), torch.randint(0, 10, (BATCH,)))
                   for _ in range(IMAGES // BATCH)]
        dtype = autocast_dtype(device, "auto", model, (BATCH, 3, 32, 32))  # what fit() decides

        def epoch():
            for x, y in batches:
                with _autocast(dtype, device):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    else:
        options = {"num_workers": os.cpu_count()} if path == "torch" else {}
        loader = make_loader(store, backend=path, batch_size=BATCH, device="cpu", indices=np.arange(IMAGES),
                             drop_last=True, **options)

        def epoch():
            fit(model, loader, Recipe(epochs=1, lr=0.01), progress=False)

    benchmark.pedantic(epoch, warmup_rounds=1, rounds=2)
    benchmark.extra_info.update(images=IMAGES, group=f"train {model_name} batch {BATCH}")


@pytest.mark.parametrize("model_name", ["convnet_bn", "resnet18"])
@pytest.mark.parametrize("teacher_form", ["as-is", "folded"])
def test_kd_step(benchmark, model_name, teacher_form):
    """KD steps at batch 32 (Table 8's batch for small sets), fp32 channels_last on the CPU."""
    device, batch, steps = torch.device("cpu"), 32, 20 if model_name == "convnet_bn" else 4
    torch.manual_seed(0)
    model, teacher = create_model(model_name, 10), create_model(model_name, 10).eval()
    fmt = memory_format(model, device)
    model.to(memory_format=fmt).train()
    teacher = (folded(teacher) if teacher_form == "folded" else teacher).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)

    def run():
        for _ in range(steps):
            with torch.no_grad():
                target = teacher(x)
            loss = kd_loss(model(x), target, 20.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    benchmark.pedantic(run, warmup_rounds=1, rounds=5)
    benchmark.extra_info.update(images=batch * steps, group=f"kd step {model_name} batch {batch}")
