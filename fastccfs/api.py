"""The Python API (re-exported by the package root): what `fastccfs run` and `fastccfs distill` do, as
functions, and the result of a run as an object. The CLI is a thin shell over these."""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastccfs.atomic import tracking
from fastccfs.errors import UserError
from fastccfs.rundir import Layout


@dataclass
class RunResult:
    """A finished (or resumed-to-the-end) run, read back from its directory."""

    out: Path  # the run directory
    config: dict  # the resolved settings that define the run (config.yaml)
    selected: np.ndarray  # store indices of the chosen real images, in the order they were chosen
    phases: list[dict]  # one record per curriculum phase (phases.json); [] for the baselines
    evaluation: dict  # eval.json: per model, final-epoch and max-last-20 % accuracy, mean ± std
    timings: dict  # wall-clock seconds per stage (timings.json)

    @property
    def report(self) -> Path:
        return self.out / Layout.REPORT

    @property
    def synthetic_set(self) -> Path:
        """distilled images + real indices (fastccfs.synthetic.SyntheticSet.load reads it)."""
        return self.out / Layout.SYNTHETIC

    @classmethod
    def load(cls, out: str | os.PathLike) -> "RunResult":
        import yaml

        out = Path(out)
        if not (out / Layout.SELECTED).is_file():
            raise UserError(f"{out} holds no finished selection (selected_indices.json is missing)")

        def read(name, default):
            return json.loads((out / name).read_text()) if (out / name).is_file() else default

        return cls(out, yaml.safe_load((out / Layout.CONFIG).read_text()),
                   np.asarray(read(Layout.SELECTED, {})["idx_selected"], np.int64),
                   read(Layout.PHASES, []), read(Layout.EVAL, {"models": {}}),
                   read(Layout.TIMINGS, {}).get("stages", {}))


def run(dataset: str, ipc: int | None = None, out: str | os.PathLike | None = None, *, config: str | None = None,
        device: str | None = None, progress: bool = True, plan: bool = False, **settings) -> RunResult | dict:
    """CCFS end to end, exactly as `fastccfs run DATASET --ipc IPC --out OUT ...`.

    settings: any RunConfig field (fastccfs run --help lists them), e.g. epochs=20, alpha=0.1,
    eval_models=["resnet18"]; they override RunConfig's defaults, the dataset's presets and `config`.
    out: the run directory (default runs/<dataset>-ipc<N>-<time>); a run there with the same settings
    is resumed, one with other settings refused.
    plan=True: only the plan — the stages still to do, their image-epochs and estimated seconds on this
    machine (fastccfs.plan) — printed and returned as a dict; nothing is written to OUT.
    """
    from fastccfs.config import resolve_run_config
    from fastccfs.datasets import check_name
    from fastccfs.pipeline import run as run_pipeline

    from fastccfs import distributed

    check_name(dataset)  # before the IPC and the settings, so a typo is named as such
    progress = progress and os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 speaks for the job
    cfg = resolve_run_config(dataset, ipc, config, settings, quiet=not progress)
    if out is None:
        out = Path("runs") / f"{cfg.dataset}-ipc{cfg.ipc}-{time.strftime('%Y%m%d-%H%M%S')}"
        if distributed.launched():  # one directory for the job: rank 0's clock names it
            device = distributed.init(device)
            out = distributed.broadcast(out)
    if plan:
        return run_pipeline(cfg, Path(out), device=device, progress=progress, plan_only=True)["plan"]
    run_pipeline(cfg, Path(out), device=device, progress=progress)
    return RunResult.load(out)


def distill(dataset: str, ipc: int, out: str | os.PathLike | None = None, *, teacher: str | None = None,
            teacher_model: str = "resnet18", root: str = ".", cache: str | None = None, device: str | None = None,
            progress: bool = True, **options) -> Path:
    """Recover IPC images per class with the built-in CDA (as `fastccfs distill`); returns the folder.

    teacher: a checkpoint; without one, a teacher is trained with the run recipe for the dataset and
    kept as OUT/teacher.pt (a later call reuses it). options: iterations, lr, r_bn, batch_size, jitter,
    image_format, amp, seed (defaults: configs/distill.yaml).
    """
    from fastccfs.config import resolve_run_config
    from fastccfs import registry
    from fastccfs.cda import DistillConfig, check_options, dataset_defaults
    from fastccfs.cda import distill as recover_all
    from fastccfs.models import create_model, load_checkpoint, save_checkpoint
    from fastccfs.context import Context
    from fastccfs.distributed import resolve_device
    from fastccfs.teacher import train_teacher
    from fastccfs.store import convert

    cfg = dataset_defaults(dataset)
    unknown = sorted(set(options) - set(DistillConfig.__dataclass_fields__))
    if unknown:
        raise UserError(f"unknown distillation option(s) {', '.join(unknown)}; known: "
                        f"{', '.join(DistillConfig.__dataclass_fields__)}")
    for name, value in options.items():
        if value is not None:
            setattr(cfg, name, value)
    check_options(cfg)
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise UserError(f"ipc must be a whole number ≥ 1; got {ipc!r}")
    if teacher_model not in registry.names("model"):
        raise UserError(f"unknown teacher_model {teacher_model!r}: use one of {', '.join(registry.names('model'))}")
    from fastccfs import distributed

    device = resolve_device(distributed.init(device))  # under torchrun: batches spread over the ranks
    progress = progress and distributed.is_main()
    with distributed.rank0_first():
        stores = convert(dataset, root, cache, progress=progress)
    train = stores["train"]
    out = Path(out or f"distilled/{train.meta['dataset']}-ipc{ipc}")
    net = create_model(teacher_model, train.num_classes, train.image_size[0])
    if distributed.is_main():
        _redo_damaged_distillation(out)
    distributed.barrier()
    # Collective writes (rank0_path): under torchrun every rank reaches them, rank 0 writes and records
    # each file's checksum (a damaged one is redone by the next call).
    out.mkdir(parents=True, exist_ok=True)
    with tracking(out) if distributed.is_main() else nullcontext():
        if teacher:
            load_checkpoint(net, teacher)
        elif (out / Layout.TEACHER).is_file():
            load_checkpoint(net, out / Layout.TEACHER)
        else:  # the teacher `fastccfs run` would train for this dataset, kept beside the images
            run_cfg = resolve_run_config(dataset, ipc, None, {"teacher_model": teacher_model, "seed": cfg.seed,
                                                              "root": root, "cache": cache}, quiet=True)
            net, _, _ = train_teacher(Context(run_cfg, out, train, stores["test"], device, progress))
            save_checkpoint(net, out / Layout.TEACHER, via=distributed.rank0_path)
        net.to(device).eval()
        return recover_all(net, train.classes, ipc, train.image_size[0], train.mean, train.std, cfg, out, device,
                           progress=progress)


def _redo_damaged_distillation(out: Path) -> None:
    """Files of an earlier `distill` into OUT that are not what it wrote (checksums.sha256) are made again:
    a damaged teacher it trained, with everything made from it; else the images, from the batches intact."""
    from fastccfs.atomic import damaged_files, read_checksums

    damaged = damaged_files(out)
    if not damaged:
        return
    if Layout.TEACHER in damaged:
        keep = set()
    elif "distill.json" in damaged:
        keep = {Layout.TEACHER}
    else:  # and the batches finished under the recorded settings
        keep = {Layout.TEACHER} | {n for n in read_checksums(out) if n.startswith(".parts/") and n not in damaged}
    print(f"fastccfs: {out / damaged[0]} is damaged (it is not what the distillation wrote): making "
          f"{'the teacher and the images' if Layout.TEACHER in damaged else 'the images'} again", file=sys.stderr)
    for name in set(read_checksums(out)) - keep:
        (out / name).unlink(missing_ok=True)
    for folder in out.iterdir():  # class folders left empty
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
