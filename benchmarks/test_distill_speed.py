"""Built-in distillation (CDA recovery) throughput: image-iterations per second, fp32 vs bf16 autocast.

A batch of 100 CIFAR-sized images (10 classes) optimised for 10 iterations against an untrained
teacher of each architecture (speed does not depend on the teacher's weights). The loss terms are
recorded too: bf16 is only a candidate default if it leaves the BN-statistics term where fp32 does.
"""
import pytest
import torch

from fastccfs.cda import DistillConfig, recover
from fastccfs.models import create_model

ITERATIONS, BATCH = 10, 100


@pytest.mark.parametrize("amp", ["off", "bf16"], ids=["fp32", "bf16"])
@pytest.mark.parametrize("model_name", ["convnet_bn", "resnet18"])
def test_recover(benchmark, model_name, amp):
    torch.manual_seed(0)
    teacher = create_model(model_name, 10)
    cfg = DistillConfig(iterations=ITERATIONS, amp=amp)
    targets = torch.arange(BATCH) % 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    _, history = benchmark.pedantic(recover, args=(teacher, targets, 32, mean, std, cfg, 0, "cpu"),
                                    kwargs={"progress": False}, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(images=ITERATIONS * BATCH, group=f"distill {model_name}",
                                bn_last=history["bn"][-1], ce_last=history["ce"][-1])
