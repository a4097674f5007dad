"""What every stage of a run needs (Context: settings, stores, device, where messages go), the named
random streams, how long is left (WorkPlan), and training a model on a set with KD (train_on), which the
phases' filters and the evaluation runs share. No policy: the stages decide, this serves them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastccfs import distributed, registry
from fastccfs.augment import augment_mode
from fastccfs.config import RunConfig
from fastccfs.errors import UserError
from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.rundir import RunLog
from fastccfs.store import Store
from fastccfs.synthetic import SyntheticSet
from fastccfs.trainer import Recipe, accuracy, batch_size_for, fit

# Named random streams: a stage's seed is seed·1000 + its stream's base (+ the phase or evaluation run),
# so resuming at any stage reproduces it and a reader sees which randomness is which.
SEED_STREAMS = {"teacher": 0, "init": 1, "filter": 10, "fine": 20, "eval": 100, "soft_labels": 200}
# Inference batch: large on GPUs; 128 on CPUs, where it measured fastest (benchmarks/README.md, "Choices in
# the code").
EVAL_BATCH = {"cuda": 1024, "cpu": 128}


@dataclass
class Context:
    """What every stage needs: settings, stores, device, and where messages go (out: the run
    directory; None when a stage's computation runs on its own, as in the benchmarks)."""

    cfg: RunConfig
    out: Path | None
    train: Store
    test: Store
    device: torch.device
    progress: bool
    logger: RunLog | None = None
    work: "WorkPlan | None" = None
    notes: set = field(default_factory=set)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def seed(self, stream: str, i: int = 0) -> int:
        """The seed of a named random stream (SEED_STREAMS), i-th phase or evaluation run."""
        return self.cfg.seed * 1000 + SEED_STREAMS[stream] + i

    def model(self, name: str, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return create_model(name, self.num_classes, self.train.image_size[0])

    def loader(self, store, shard: bool = True, **kw):
        """A loader over STORE; under torchrun (shard) this rank's share: a training loader's batch_size is
        the global batch, split over the ranks."""
        backend = self.cfg.loader
        world = distributed.world_size()
        if shard and world > 1:
            kw.update(rank=distributed.rank(), world_size=world)
            if kw.get("augment", True):
                if kw["batch_size"] < world:
                    raise UserError(f"a batch of {kw['batch_size']} cannot be split over {world} processes: use "
                                    f"--batch-size ≥ {world} or fewer processes")
                if kw["batch_size"] % world:
                    self.note(f"the global batch {kw['batch_size']} is not a multiple of the {world} processes: "
                              f"{kw['batch_size'] // world} per process")
                kw["batch_size"] //= world
        record = registry.get("backend", backend)
        # What a backend cannot serve (FFCV and DALI read the store's own files and crop with RandomResizedCrop
        # only: a set with distilled images, the teachers' padded crops) comes from the tensor backend.
        mode = augment_mode(kw.get("augment", True))
        why = ("a set with distilled images" if not record.serves_extra and kw.get("extra_images") is not None
               and len(kw["extra_images"]) else f"the {mode} augmentation"
               if mode is not None and mode not in record.augmentations else None)
        if why:
            self.note(f"--loader {backend} cannot serve {why}: the tensor backend serves it")
            backend = "tensor"
        return make_loader(store, backend=backend, device=self.device, memory_format=torch.channels_last, **kw)

    def note(self, message: str) -> None:
        """A one-line note, printed once per run."""
        if message not in self.notes:
            self.notes.add(message)
            self.log(f"fastccfs: note: {message}")

    @property
    def eval_batch(self) -> int:
        """The inference batch on this device (EVAL_BATCH)."""
        return EVAL_BATCH.get(self.device.type, 1024)

    def eval_loader(self, store, indices=None, shard: bool = True):
        return self.loader(store, shard, augment=False, batch_size=self.eval_batch, indices=indices)

    def log(self, message: str) -> None:
        if self.logger is not None:
            self.logger.log(message)
        elif self.progress:
            print(message, flush=True)


class WorkPlan:
    """The images the run's training jobs will process (epochs × set size), to say how long is left:
    the rate measured on the jobs done so far, applied to those still to do."""

    def __init__(self):
        self.total = self.done = 0
        self.seconds = 0.0

    def add(self, images: int) -> None:
        self.total += images

    def finished(self, images: int, seconds: float) -> None:
        self.done += images
        self.seconds += seconds

    def left(self) -> str:
        if not self.done or self.total <= self.done:
            return ""
        s = (self.total - self.done) * self.seconds / self.done
        return f" — about {s / 60:.0f} min left" if s >= 90 else f" — about {s:.0f} s left"


def train_on(ctx: Context, current: SyntheticSet, model_name: str, seed: int, teacher, epochs: int,
              evaluate: bool, desc: str, distributed: bool = True, shared=None, position: int | None = None):
    """Train MODEL_NAME on the current set (KD from the teacher, or from SHARED soft labels: a
    fastccfs.soft_labels.SharedLabels); distributed: DDP over the ranks (a filter), else whole in this
    process (an evaluation run). position: the progress bar's line beside other processes' bars."""
    cfg = ctx.cfg
    model = ctx.model(model_name, seed)
    batch = cfg.batch_size or batch_size_for(len(current), len(ctx.train))
    if shared is not None:
        from fastccfs.loaders.sets import synthetic_arrays
        from fastccfs.soft_labels import SharedLabelLoader

        images, labels, ids = synthetic_arrays(ctx.train, **current.loader_arguments())
        loader = SharedLabelLoader(shared, images, labels, ids, ctx.train.mean, ctx.train.std, batch, seed, ctx.device)
        teacher = None
    else:
        loader = ctx.loader(ctx.train, distributed, batch_size=batch, seed=seed, **current.loader_arguments())
    recipe = Recipe(epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.warmup_epochs, temperature=cfg.temperature)
    test_loader = ctx.eval_loader(ctx.test, shard=distributed)
    history = fit(model, loader, recipe, teacher=teacher, device=ctx.device, amp=cfg.amp, compile=cfg.compile,
                  evaluate=(lambda m: accuracy(m, test_loader, ctx.device, cfg.amp)) if evaluate else None,
                  evaluate_from=cfg.eval_from, progress=ctx.progress, desc=desc, distributed=distributed,
                  position=position)
    history["batch_size"] = batch
    if ctx.work:
        ctx.work.finished(history["images"], history["seconds"])
    return model, history

