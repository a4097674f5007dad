"""Models: torchvision networks with the small-image stem used for 32 and 64 px, and the dataset-
distillation ConvNet.

Small-image stem (as the CCFS/SRe²L reference code): a 3×3 stride-1 first convolution and no max-pool,
so a 32 px input keeps its resolution into the first stage. State-dict keys stay torchvision's, so
published checkpoints ({'model': …} or {'state_dict': …}, optional 'module.' prefix) load as they are.
"""
from __future__ import annotations

import os
import sys

import torch
from torch import nn

from fastccfs import registry
from fastccfs.errors import UserError


class ConvNet(nn.Module):
    """depth × [conv 3×3 (width channels), norm, ReLU, avg-pool 2], then a linear classifier.

    norm="instance" is the dataset-distillation standard (GroupNorm with one group per channel);
    norm="batch" is the faster variant on CPUs (see benchmarks/README.md).
    """

    def __init__(self, num_classes: int, image_size: int = 32, width: int = 128, depth: int = 3,
                 norm: str = "instance"):
        super().__init__()
        layers, channels, size = [], 3, image_size
        for _ in range(depth):
            if norm == "instance":
                norm_layer = nn.GroupNorm(width, width, affine=True)
            elif norm == "batch":
                norm_layer = nn.BatchNorm2d(width)
            else:
                raise ValueError(f"unknown norm {norm!r}")
            layers += [nn.Conv2d(channels, width, 3, padding=1), norm_layer, nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            channels, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def small_image_stem(model: nn.Module, name: str) -> nn.Module:
    """Replace the ImageNet stem (7×7 stride-2 conv + max-pool) with a 3×3 stride-1 conv."""
    if name.startswith("resnet"):
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif name.startswith("densenet"):
        out = model.features.conv0.out_channels
        model.features.conv0 = nn.Conv2d(3, out, kernel_size=3, stride=1, padding=1, bias=False)
        model.features.pool0 = nn.Identity()
    elif name.startswith("regnet"):
        out = model.stem[0].out_channels
        model.stem[0] = nn.Conv2d(3, out, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def create_model(name: str, num_classes: int, image_size: int = 32) -> nn.Module:
    """The registered model NAME (fastccfs.register("model", name)) for NUM_CLASSES at IMAGE_SIZE px."""
    return registry.get("model", name)(num_classes, image_size)


# Built-in models: an entry is f(num_classes, image_size) → nn.Module.


def _torchvision(name: str):
    def build(num_classes: int, image_size: int) -> nn.Module:
        import torchvision

        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        return small_image_stem(model, name) if image_size <= 64 else model

    return build


for _name in ("resnet18", "resnet50", "resnet101", "densenet121", "regnet_y_8gf"):
    registry.register("model", _name, _torchvision(_name))
registry.register("model", "convnet", lambda num_classes, image_size: ConvNet(num_classes, image_size, norm="instance"))
registry.register("model", "convnet_bn", lambda num_classes, image_size: ConvNet(num_classes, image_size, norm="batch"))


def memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last, except GroupNorm models on the CPU, where it is the slow path (measured in
    benchmarks/README.md, "step choices")."""
    if device.type == "cpu" and any(isinstance(m, nn.GroupNorm) for m in model.modules()):
        return torch.contiguous_format
    return torch.channels_last


def folded(model: nn.Module) -> nn.Module:
    """An inference copy of MODEL (in eval mode) with every BatchNorm folded into the convolution before
    it (torch.fx): the same logits to ~1e-6 and one memory pass fewer per layer (what predict() gains:
    benchmarks/README.md). Only conv → BN pairs fold (DenseNet's BN-ReLU-conv keeps its BNs). A model
    without BatchNorm, or one that torch.fx cannot trace, is returned as it is."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model, inplace=False)
    except Exception as e:  # tracing failures have many types (TraceError, TypeError, …); folding is optional
        name = type(model).__name__
        if name not in _UNFOLDED:
            _UNFOLDED.add(name)
            print(f"fastccfs: note: BatchNorm not folded into {name}'s convolutions ({type(e).__name__}); "
                  "it infers unfused (same logits, slower)", file=sys.stderr)
        return model


_UNFOLDED: set = set()  # models whose folding failure was reported (once per process)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, via=None) -> None:
    """{'model': state_dict} at PATH, atomically (via: as fastccfs.atomic's writers). Serialised in memory
    first, then written as bytes: a full disk is then an OSError (ENOSPC) and not torch's writer error."""
    import io

    from fastccfs.atomic import atomic_path, write_bytes

    buf = io.BytesIO()
    torch.save({"model": model.state_dict()}, buf)
    write_bytes(path, buf.getvalue(), via=via or atomic_path)


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint saved by fastccfs, torchvision's reference scripts or the CCFS code; a file that
    is not one, or does not fit MODEL, is a one-line error saying why."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as e:  # corrupt, not a torch file, or pickled objects beyond tensors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable torch checkpoint of weights ({reason[:200]})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds a {type(state).__name__}, not a model's state dict "
                        "({'model': …}, {'state_dict': …} or the state dict itself)")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if wrong:
            k = wrong[0]
            why = f"{k} is {list(state[k].shape)} in the checkpoint but {list(expected[k].shape)} in the model"
        else:
            why = (f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else
                   f"{len(unexpected)} weights the model lacks (e.g. {unexpected[0]})")
        raise UserError(f"{path} does not fit a {type(model).__name__} for {_classes(model)} classes: {why}; "
                        "check --teacher-model and the dataset")
    model.load_state_dict(state)
    return model


def _classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else -1
