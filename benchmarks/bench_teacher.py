"""The teacher of the committed CIFAR-10 benchmarks: ConvNet-BN by the CIFAR teacher recipe (SRe²L's squeeze:
RandomCrop with padding + flip, SGD lr 0.1, batch 128, cosine), 15 epochs — standing in for the preset's
ResNet-18 on a 2-core CPU (the JSONs say so). Its accuracies go to PATH.json beside it.
    python benchmarks/bench_teacher.py CIFAR_ROOT PATH [EPOCHS]
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastccfs.bench import _bench_teacher  # noqa: E402
from fastccfs.config import resolve_run_config  # noqa: E402
from fastccfs.context import Context  # noqa: E402
from fastccfs.store import convert  # noqa: E402

root, path = sys.argv[1], sys.argv[2]
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 15
stores = convert("cifar10", root, None, progress=False)
cfg = resolve_run_config("cifar10", 500, None, {"teacher_model": "convnet_bn", "teacher_epochs": epochs})
ctx = Context(cfg, None, stores["train"], stores["test"], torch.device("cpu"), True)
info = _bench_teacher(ctx, "cifar10", 500, None, path, None)[3]
print(info)
