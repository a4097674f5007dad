"""Full-split inference: fastccfs's predict() (the evaluation loader, `run`'s batch for the device,
autocast "auto": bf16 where the CPU runs it natively and it measured faster, see fastccfs/precision.py) vs the reference's way (a pre-normalised fp32 tensor of the split,
fp32 forward in batches of 256)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.context import EVAL_BATCH
from fastccfs.trainer import predict

sys.path.insert(0, str(Path(__file__).parent))
import reference_phase  # noqa: E402

IMAGES = 5000


@pytest.mark.parametrize("path", ["fastccfs", "reference"])
@pytest.mark.parametrize("model_name", ["convnet", "convnet_bn", "resnet18"])
def test_inference(benchmark, stores, model_name, path):
    store = stores["cifar10"]
    torch.manual_seed(0)
    model = create_model(model_name, 10).eval()
    n = IMAGES if model_name != "resnet18" else IMAGES // 5
    if path == "fastccfs":
        loader = make_loader(store, augment=False, batch_size=EVAL_BATCH["cpu"], device="cpu", indices=np.arange(n))
        benchmark.pedantic(predict, args=(model, loader), rounds=2, warmup_rounds=1)
    else:
        images = reference_phase.normalised_tensor(store)[:n]
        benchmark.pedantic(reference_phase.infer, args=(model, images), rounds=2, warmup_rounds=1)
    benchmark.extra_info.update(images=n, group=f"inference {model_name}")
