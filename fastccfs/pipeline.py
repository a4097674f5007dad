"""`fastccfs run`: teacher → difficulty scores → starting set → J curriculum phases → evaluation.

Each stage writes its outputs into the run directory atomically, and its last file marks it finished;
a re-run with the same settings skips finished stages, so a killed run resumes after its last finished
stage and ends with the same selection (every stage's randomness comes from (seed, stage)).

Run directory:
  config.yaml             the resolved settings
  teacher.pt, teacher.json, teacher_pred.npy   (teacher.pt only when trained here)
  forgetting.npy          forgetting events counted while training the teacher here
  scores.npy              the difficulties used (higher = harder), aligned to the train store
  distilled/              the distilled part made here (CDA), when no --distilled is given
  start.npz               the distilled part and any initial real indices
  phase_<j>.npz/.json     each phase's picks and record; phases.json gathers the records
  selected_indices.json   {"ipc", "alpha", "idx_selected"}: the reference code's form
  synthetic_set.npz       distilled images + real indices (fastccfs export RUN writes PNGs)
  eval/<model>_<r>.json   one evaluation run each; eval.json gathers them
  timings.json, run.log   wall-clock per stage; what the run printed (fastccfs.rundir)

The stages' computations (train_teacher, curriculum_phase) take no run directory, so the benchmarks
and the Python API call the very code `fastccfs run` executes.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastccfs import distributed, selection
from fastccfs.atomic import atomic_path, save_arrays, write_json
from fastccfs.config import MODEL_NAMES, RunConfig
from fastccfs.errors import UserError
from fastccfs.loaders import make_loader
from fastccfs.models import create_model, load_checkpoint, save_checkpoint
from fastccfs.rundir import RunDir, RunLog
from fastccfs.scores import ForgettingCounter, load_scores, logit_difficulty, score_kind
from fastccfs.store import Store, convert
from fastccfs.synthetic import SyntheticSet
from fastccfs.trainer import Recipe, accuracy, batch_size_for, fit, folded, predict

# Named random streams: a stage's seed is seed·1000 + its stream's base (+ the phase or evaluation run),
# so resuming at any stage reproduces it and a reader sees which randomness is which.
SEED_STREAMS = {"teacher": 0, "init": 1, "filter": 10, "fine": 20, "eval": 100}
# Inference batch: large on GPUs; 128 on CPUs, where it measured fastest (ResNet-18 fp32: 225 img/s at
# 128, 196 at 1024; ConvNet-BN: 1,666 vs 1,322).
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
        if backend in ("ffcv", "dali"):
            # FFCV and DALI read the store's own files and crop with RandomResizedCrop: a set with distilled
            # images, or the teachers' padded crops, come from memory instead.
            why = ("a set with distilled images" if kw.get("extra_images") is not None and len(kw["extra_images"])
                   else "the teacher's padded crops" if kw.get("augment") == "crop_pad" else None)
            if why:
                self.note(f"--loader {backend} serves store images with RandomResizedCrop only: {why} use the "
                          "tensor backend")
                backend = "tensor"
        return make_loader(store, backend=backend, device=self.device, **kw)

    def note(self, message: str) -> None:
        """A one-line note, printed once per run."""
        if message not in self.notes:
            self.notes.add(message)
            self.log(f"fastccfs: note: {message}")

    def eval_loader(self, store, indices=None, shard: bool = True):
        return self.loader(store, shard, augment=False, batch_size=EVAL_BATCH.get(self.device.type, 1024),
                           indices=indices)

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


def check_config(cfg: RunConfig) -> None:
    """Settings that cannot work, refused before anything is written or computed (the types and the
    choices of settings were checked when they were resolved: config.resolve_run_config)."""
    for name in [cfg.model, cfg.teacher_model, *cfg.eval_models]:
        if name not in MODEL_NAMES:
            raise UserError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}")
    if cfg.distilled and cfg.init != "none":
        raise UserError(f"--distilled and --init {cfg.init} both give the starting set: choose one")
    if cfg.num_eval < 0 or cfg.epochs < 1 or (cfg.eval_epochs is not None and cfg.eval_epochs < 1):
        raise UserError("need epochs ≥ 1, eval epochs ≥ 1 and num_eval ≥ 0")
    if cfg.loader in ("ffcv", "dali"):
        from fastccfs.formats import require

        require(cfg.loader)
    if not 0 <= cfg.eval_from <= 1:
        raise UserError(f"--eval-from is a fraction of the epochs in [0, 1]; got {cfg.eval_from}")
    selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)  # raises on bad IPC / α / J


def check_inputs(cfg: RunConfig, train: Store) -> None:
    """Every input checked against the train store before any training: a bad one is found in seconds,
    not after a 200-epoch teacher (the run directory is not made until these pass)."""
    num_classes = train.num_classes
    per_class, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    if cfg.method == "ccfs" and 0 in budgets:
        raise UserError(f"{cfg.phases} phases for {cfg.ipc - per_class} real images per class: phase "
                        f"{budgets.index(0) + 1} would add none; use --phases {cfg.ipc - per_class} or fewer")
    real = 0 if cfg.method == "full" else cfg.ipc - (per_class if cfg.method == "ccfs" and cfg.init == "none" else 0)
    counts = np.bincount(train.labels, minlength=num_classes)
    c = int(counts.argmin())
    if counts[c] < real:
        raise UserError(f"class {c} ({train.classes[c]}) has {counts[c]} train images, but IPC {cfg.ipc} takes {real} "
                        "real ones per class: lower --ipc (or raise --alpha)")
    if cfg.teacher:
        load_checkpoint(create_model(cfg.teacher_model, num_classes, train.image_size[0]), cfg.teacher)
    scores_from_file(cfg, train, teacher_trained_here=not cfg.teacher)
    if cfg.method == "ccfs" and cfg.init == "none" and per_class and cfg.distilled:
        from fastccfs.distilled import read_distilled

        read_distilled(cfg.distilled, train.classes, per_class, train.images.shape[1:],
                       name_order="string" if cfg.semantics == "reference" else "numeric")


def scores_from_file(cfg: RunConfig, train: Store, teacher_trained_here: bool) -> np.ndarray | None:
    """The --scores file's difficulties for the train store (length, values and kind checked); None when
    the run computes its scores (forgetting counted by its own teacher, or the filter's logits)."""
    if cfg.score == "logits":
        return None
    if cfg.scores:
        kind = score_kind(cfg.scores)
        if kind != cfg.score:
            raise UserError(f"--scores {cfg.scores} holds {kind} scores but --score is {cfg.score}: "
                            f"pass --score {kind}")
        return load_scores(cfg.scores, train)
    if cfg.score == "forgetting" and teacher_trained_here:
        return None
    raise UserError(f"the {cfg.score} score needs --scores FILE (e.g. the published scores), or, for "
                    "forgetting, a teacher trained by this run (omit --teacher); or use --score logits")


def resolve_device(name: str | None) -> torch.device:
    """The device to run on (default: CUDA when present); a one-line error for one that is not there."""
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as e:
        raise UserError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device


# ------------------------------------------------------------------------------------------ stages


def train_teacher(ctx: Context) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """A teacher trained on the whole train split with CE by the dataset's teacher recipe (SRe²L's squeeze
    step: configs/<dataset>.yaml), counting every sample's forgetting events (Toneva et al.) over those
    presentations: (model, training history, forgetting scores)."""
    cfg = ctx.cfg
    teacher = ctx.model(cfg.teacher_model, ctx.seed("teacher"))
    ctx.log(f"teacher: training {cfg.teacher_model} on {len(ctx.train)} images for {cfg.teacher_epochs} epochs "
            f"({cfg.teacher_augment} crops, lr {cfg.teacher_lr:g}, batch {cfg.teacher_batch_size})"
            f"{ctx.work.left() if ctx.work else ''}")
    counter = ForgettingCounter(len(ctx.train), ctx.device)
    loader = ctx.loader(ctx.train, batch_size=cfg.teacher_batch_size, seed=ctx.seed("teacher"),
                        augment=cfg.teacher_augment)
    recipe = Recipe(cfg.teacher_epochs, cfg.teacher_lr, cfg.momentum, cfg.teacher_weight_decay,
                    min(cfg.teacher_warmup_epochs, cfg.teacher_epochs // 2))
    test_loader = ctx.eval_loader(ctx.test, shard=True) if cfg.teacher_test else None
    history = fit(teacher, loader, recipe, device=ctx.device, amp=cfg.amp, compile=cfg.compile,
                  evaluate=(lambda m: accuracy(m, test_loader, ctx.device, cfg.amp)) if test_loader else None,
                  evaluate_from=-1.0,  # every epoch: the curve that shows whether the teacher converged
                  on_batch=counter.update, progress=ctx.progress, desc="teacher", distributed=True)
    if ctx.work:
        ctx.work.finished(history["images"], history["seconds"])
    return teacher, history, counter.scores(cfg.teacher_epochs)


def stage_teacher(ctx: Context) -> tuple[torch.nn.Module, np.ndarray]:
    """The teacher (loaded, resumed, or trained here with forgetting counts) and its train predictions."""
    cfg, out = ctx.cfg, ctx.out
    teacher = ctx.model(cfg.teacher_model, ctx.seed("teacher"))
    if cfg.teacher:
        load_checkpoint(teacher, cfg.teacher)
    elif (out / "teacher.pt").is_file():
        load_checkpoint(teacher, out / "teacher.pt")
    else:
        teacher, history, forgetting = train_teacher(ctx)
        save_arrays(out / "forgetting.npz", scores=forgetting, kind="forgetting")
        write_json(out / "teacher_training.json", {"seconds": history["seconds"], "images": history["images"],
                                                   "loss": history["loss"], "train_acc": history["train_acc"],
                                                   "test_acc": history["test_acc"]})
        save_checkpoint(teacher, out / "teacher.pt")  # last: marks the stage finished
    if not (out / "teacher.json").is_file():
        logits, labels, _ = predict(teacher, ctx.eval_loader(ctx.train), ctx.device, cfg.amp)
        pred = logits.argmax(1)
        test_acc = accuracy(teacher, ctx.eval_loader(ctx.test), ctx.device, cfg.amp)
        with atomic_path(out / "teacher_pred.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, pred)
        write_json(out / "teacher.json", {"train_acc": float((pred == labels).mean()), "test_acc": test_acc,
                                          "checkpoint": cfg.teacher or str(out / "teacher.pt")})
    info = json.loads((out / "teacher.json").read_text())
    ctx.log(f"teacher: {cfg.teacher_model}, train accuracy {100 * info['train_acc']:.2f} %, test accuracy "
            f"{100 * info['test_acc']:.2f} % ({info['checkpoint']})")
    teacher.to(ctx.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, np.load(out / "teacher_pred.npy")


def stage_scores(ctx: Context) -> np.ndarray | None:
    """Difficulties aligned to the train store (None: the `logits` score, computed per phase)."""
    cfg, out = ctx.cfg, ctx.out
    if cfg.score == "logits":
        return None
    if not (out / "scores.npy").is_file():
        scores = scores_from_file(cfg, ctx.train, teacher_trained_here=(out / "forgetting.npz").is_file())
        if scores is None:  # forgetting events counted while the teacher trained here
            scores = np.load(out / "forgetting.npz")["scores"].astype(np.float64)
        with atomic_path(out / "scores.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, scores)
    return np.load(out / "scores.npy")


def distill_config(cfg: RunConfig):
    from fastccfs.cda import dataset_defaults

    dc = dataset_defaults(cfg.dataset)
    for name in ("iterations", "lr", "r_bn"):
        if getattr(cfg, f"distill_{name}") is not None:
            setattr(dc, name, getattr(cfg, f"distill_{name}"))
    dc.seed = cfg.seed
    return dc


def stage_start(ctx: Context, scores: np.ndarray | None, teacher) -> SyntheticSet:
    """The starting set S0: the distilled part (α·IPC per class: read, or distilled here with the
    teacher), or real images in its place."""
    cfg, out = ctx.cfg, ctx.out
    path = out / "start.npz"
    if not path.is_file():
        per_class, _ = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
        empty = np.zeros((0, *ctx.train.images.shape[1:]), np.uint8), np.zeros(0, np.int64)
        images, labels, real = *empty, np.zeros(0, np.int64)
        labels_all = ctx.train.labels
        if per_class and cfg.init == "none":
            from fastccfs.distilled import read_distilled

            source = cfg.distilled
            if not source:
                from fastccfs.cda import distill

                ctx.log(f"distilled part: recovering {per_class} images per class from the teacher (CDA)")
                source = distill(teacher, ctx.train.classes, per_class, ctx.train.image_size[0], ctx.train.mean,
                                 ctx.train.std, distill_config(cfg), out / "distilled", ctx.device, ctx.progress)
            images, labels = read_distilled(source, ctx.train.classes, per_class, ctx.train.images.shape[1:],
                                            name_order="string" if cfg.semantics == "reference" else "numeric")
        elif per_class and cfg.init == "random":
            real = selection.random_per_class(labels_all, per_class, ctx.seed("init"), ctx.num_classes)
        elif per_class and cfg.init == "window":
            if scores is None:
                raise UserError("--init window orders samples by difficulty: it needs --score forgetting or cscore")
            real = selection.window_per_class(labels_all, scores, per_class, cfg.beta, ctx.num_classes)
        save_arrays(path, distilled_images=images, distilled_labels=labels, real_indices=real)
    with np.load(path) as data:
        return SyntheticSet(data["distilled_images"], data["distilled_labels"], data["real_indices"])


def _train_on(ctx: Context, current: SyntheticSet, model_name: str, seed: int, teacher, epochs: int,
              evaluate: bool, desc: str, distributed: bool = True):
    """Train MODEL_NAME on the current set (KD from the teacher); distributed: DDP over the ranks (a
    filter), else whole in this process (an evaluation run, one per rank)."""
    cfg = ctx.cfg
    model = ctx.model(model_name, seed)
    batch = cfg.batch_size or batch_size_for(len(current), len(ctx.train))
    loader = ctx.loader(ctx.train, distributed, batch_size=batch, seed=seed, **current.loader_arguments())
    recipe = Recipe(epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.warmup_epochs, temperature=cfg.temperature)
    test_loader = ctx.eval_loader(ctx.test, shard=distributed)
    history = fit(model, loader, recipe, teacher=teacher, device=ctx.device, amp=cfg.amp, compile=cfg.compile,
                  evaluate=(lambda m: accuracy(m, test_loader, ctx.device, cfg.amp)) if evaluate else None,
                  evaluate_from=cfg.eval_from, progress=ctx.progress, desc=desc, distributed=distributed)
    history["batch_size"] = batch
    if ctx.work:
        ctx.work.finished(history["images"], history["seconds"])
    return model, history


@dataclass
class PhaseResult:
    indices: np.ndarray  # the picks, class by class, preferred first
    filled: np.ndarray  # per class: picks that were not coarse candidates
    difficulty: np.ndarray  # the picks' difficulties
    record: dict  # what phases.json keeps: sizes, accuracies, counts, seconds
    filter: torch.nn.Module | None = None  # the phase's trained filter (None without a starting set)


def curriculum_phase(ctx: Context, j: int, current: SyntheticSet, k: int, teacher, teacher_pred,
                     scores: np.ndarray | None) -> PhaseResult:
    """Phase j of CCFS: train a filter on the current set, predict the train samples the fine stage can
    reach (or all of them), select k per class. Writes nothing."""
    cfg = ctx.cfg
    labels = ctx.train.labels
    record = {"phase": j, "set_size": len(current), "k_per_class": k, "world_size": distributed.world_size()}
    selected = np.zeros(len(labels), bool)
    selected[current.real_indices] = True
    seconds = {}
    t = time.perf_counter()
    if len(current):
        ctx.log(f"phase {j}/{cfg.phases}: training a {cfg.model} filter on {len(current)} images for {cfg.epochs} "
                f"epochs{ctx.work.left() if ctx.work else ''}")
        filt, history = _train_on(ctx, current, cfg.model, ctx.seed("filter", j), teacher, cfg.epochs,
                                  evaluate=False, desc=f"phase {j}/{cfg.phases} filter")
        seconds["train"], t = time.perf_counter() - t, time.perf_counter()
        logits = None
        # The reference's tie order reaches past the first k candidates in (key, index) order: it predicts all.
        if cfg.inference == "needed" and scores is not None and cfg.semantics == "fastccfs":
            eligible = selection.eligible_mask(labels, selected, teacher_pred if cfg.teacher_filter else None)
            key = selection.fine_keys(scores, cfg.fine, ctx.seed("fine", j))
            net = folded(filt.to(ctx.device).eval())  # fold once, not once per round
            pred, inferred = selection.predict_until_picked(lambda rows: _predict_rows(ctx, net, rows), labels, key,
                                                            eligible, k, cfg.coarse, ctx.num_classes)
            record.update(inferred=int(inferred.sum()),
                          inferred_misclassified=int((pred[inferred] != labels[inferred]).sum()))
        else:  # every sample: the full split's accuracy, and the `logits` score needs every logit
            logits, _, _ = predict(filt, ctx.eval_loader(ctx.train), ctx.device, cfg.amp)
            pred = logits.argmax(1)
            record.update(inferred=len(labels), filter_train_acc=float((pred == labels).mean()),
                          misclassified=int((pred != labels).sum()))
        seconds["inference"], t = time.perf_counter() - t, time.perf_counter()
        if cfg.filter_test:  # not part of CCFS's cost, but what Fig. 4a plots
            record["filter_test_acc"] = accuracy(filt, ctx.eval_loader(ctx.test), ctx.device, cfg.amp)
        record.update(batch_size=history["batch_size"],
                      train_images_per_s=history["images"] / max(history["seconds"], 1e-9), train_dtype=history["dtype"])
        seconds["test_eval"], t = time.perf_counter() - t, time.perf_counter()
        coarse = cfg.coarse
    else:  # nothing to train a filter on (α = 0 without --init): the coarse stage has no filter
        seconds.update(train=0.0, inference=0.0)
        logits, pred, coarse, filt = None, labels, "all", None
        record.update(note="empty starting set: no filter, every eligible sample is a candidate")
    difficulty = scores if scores is not None else logit_difficulty(logits, labels) if logits is not None \
        else np.zeros(len(labels))
    chosen = selection.coarse_to_fine(pred, labels, difficulty,
                                      current.real_indices if cfg.semantics == "reference" else selected, k,
                                      teacher_pred=teacher_pred if cfg.teacher_filter else None, coarse=coarse,
                                      fine=cfg.fine, seed=ctx.seed("fine", j), num_classes=ctx.num_classes,
                                      class_names=ctx.train.classes, semantics=cfg.semantics)
    chosen = distributed.broadcast(chosen)  # every rank continues from rank 0's picks
    seconds["selection"] = time.perf_counter() - t
    d = difficulty[chosen.indices]
    record.update(coarse=coarse, selected=len(chosen.indices), filled=int(chosen.filled.sum()),
                  short=int(k * ctx.num_classes - len(chosen.indices)),
                  difficulty={"min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}
                  if len(d) else None, seconds=seconds)
    return PhaseResult(chosen.indices, chosen.filled, d, record, filt)


def stage_phase(ctx: Context, j: int, current: SyntheticSet, k: int, teacher, teacher_pred,
                scores: np.ndarray | None) -> np.ndarray:
    """Phase j, resumable: its picks from phase_<j>.npz when finished, else computed and written."""
    out = ctx.out
    if (out / f"phase_{j}.json").is_file():
        return np.load(out / f"phase_{j}.npz")["indices"]
    result = curriculum_phase(ctx, j, current, k, teacher, teacher_pred, scores)
    record, seconds = result.record, result.record["seconds"]
    save_arrays(out / f"phase_{j}.npz", indices=result.indices, filled=result.filled, difficulty=result.difficulty)
    write_json(out / f"phase_{j}.json", record)
    test_acc = f", filter test accuracy {100 * record['filter_test_acc']:.2f} %" if "filter_test_acc" in record else ""
    ctx.log(f"phase {j}: set {len(current)} → +{len(result.indices)} (filled {record['filled']}){test_acc}; "
            f"train {seconds['train']:.1f} s, inference {seconds['inference']:.1f} s "
            f"({record.get('inferred', 0)} images), selection {1000 * seconds['selection']:.1f} ms")
    return result.indices


def _predict_rows(ctx: Context, model, rows: np.ndarray) -> np.ndarray:
    """The model's predicted labels for train samples `rows`, in that order."""
    logits, _, ids = predict(model, ctx.eval_loader(ctx.train, indices=rows), ctx.device, ctx.cfg.amp)
    by_id = dict(zip(ids.tolist(), logits.argmax(1).tolist()))
    return np.array([by_id[i] for i in rows.tolist()], np.int64)


def stage_curriculum(ctx: Context, start: SyntheticSet, teacher, teacher_pred, scores, run_dir: RunDir) -> SyntheticSet:
    cfg = ctx.cfg
    _, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
    current = start
    for j, k in enumerate(budgets, 1):
        done = (ctx.out / f"phase_{j}.json").is_file()
        t = time.perf_counter()
        picked = stage_phase(ctx, j, current, k, teacher, teacher_pred, scores)
        if not done:  # each part of the phase (a resumed run keeps the times of phases finished before)
            parts = json.loads((ctx.out / f"phase_{j}.json").read_text())["seconds"]
            for part in ("train", "inference", "test_eval", "selection"):
                run_dir.timings[f"phase_{j}.{part}"] = round(parts.get(part, 0.0), 3)
            run_dir.timings[f"phase_{j}.other"] = round(time.perf_counter() - t - sum(parts.values()), 3)
            run_dir.save_timings()
        current = SyntheticSet(current.distilled_images, current.distilled_labels,
                               np.concatenate([current.real_indices, picked]))
    write_json(ctx.out / "phases.json",
               [json.loads((ctx.out / f"phase_{j}.json").read_text()) for j in range(1, len(budgets) + 1)])
    return current


def stage_baseline(ctx: Context, scores) -> SyntheticSet:
    """The real-image baselines: IPC per class at random, hardest first, in SelMatch's window, or all."""
    cfg, labels = ctx.cfg, ctx.train.labels
    if cfg.method == "random":
        real = selection.random_per_class(labels, cfg.ipc, ctx.seed("init"), ctx.num_classes)
    elif cfg.method == "full":
        real = np.arange(len(labels), dtype=np.int64)
    else:
        if scores is None:
            raise UserError(f"--method {cfg.method} orders samples by difficulty: use --score forgetting or cscore")
        real = (selection.hardest_per_class(labels, scores, cfg.ipc, ctx.num_classes) if cfg.method == "coreset"
                else selection.window_per_class(labels, scores, cfg.ipc, cfg.beta, ctx.num_classes))
    shape = ctx.train.images.shape[1:]
    return SyntheticSet(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), real)


def stage_eval(ctx: Context, final: SyntheticSet, teacher, run_dir: RunDir) -> dict:
    """Train each evaluation model from scratch on the final set with KD, num_eval seeds each."""
    cfg, out = ctx.cfg, ctx.out
    epochs = cfg.eval_epochs or cfg.epochs
    jobs = [(name, r) for name in cfg.eval_models for r in range(cfg.num_eval)
            if not (out / "eval" / f"{name}_{r}.json").is_file()]
    # Under torchrun the runs are spread over the ranks in rounds of one run each, every run trained whole
    # in its process (its seed alone decides it: the results are the sequential ones), then gathered and
    # written by rank 0. One process runs them in order.
    world = distributed.world_size()
    for first in range(0, len(jobs), world):
        round_ = jobs[first:first + world]
        result = None
        if distributed.rank() < len(round_):
            name, r = round_[distributed.rank()]
            ctx.log(f"evaluation: {name} {r + 1}/{cfg.num_eval} on {len(final)} images for {epochs} epochs"
                    f"{ctx.work.left() if ctx.work else ''}")
            t = time.perf_counter()
            _, history = _train_on(ctx, final, name, ctx.seed("eval", r), teacher, epochs, evaluate=True,
                                   desc=f"eval {name} {r + 1}/{cfg.num_eval}", distributed=False)
            accs = history["test_acc"]
            result = (name, r, time.perf_counter() - t,
                      {"final_epoch_acc": accs[max(accs)], "max_last_20pct_acc": max(accs.values()),
                       "test_acc_by_epoch": {str(e): a for e, a in accs.items()}, "seconds": history["seconds"],
                       "batch_size": history["batch_size"], "rank": distributed.rank()})
        for name, r, wall, record in filter(None, distributed.gather(result)):
            write_json(out / "eval" / f"{name}_{r}.json", record)
            run_dir.timings[f"eval_{name}_{r}"] = round(wall, 3)
        run_dir.save_timings()
    results = {}
    for name in cfg.eval_models:
        runs = [json.loads((out / "eval" / f"{name}_{r}.json").read_text()) for r in range(cfg.num_eval)]
        results[name] = {key: _mean_std([run[key] for run in runs]) for key in ("final_epoch_acc", "max_last_20pct_acc")}
        results[name]["runs"] = len(runs)
    summary = {"set_size": len(final), "ipc": cfg.ipc, "epochs": epochs,
               "labels": {"final_epoch_acc": "test accuracy after the last epoch",
                          "max_last_20pct_acc": f"max test accuracy over epochs > {cfg.eval_from:g}·epochs (the "
                                                "reference's report with the default 0.8)"},
               "models": results}
    write_json(out / "eval.json", summary)
    return summary


def _mean_std(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None, "values": values.tolist()}


# -------------------------------------------------------------------------------------------- run


def plan_work(ctx: Context) -> WorkPlan:
    """The training images still to process: the teacher (when trained here), each unfinished phase's
    filter and each unfinished evaluation run."""
    cfg, out, n, c = ctx.cfg, ctx.out, len(ctx.train), ctx.num_classes
    work = WorkPlan()
    if not cfg.teacher and not (out / "teacher.pt").is_file():
        work.add(cfg.teacher_epochs * n)
    if cfg.method == "ccfs":
        per_class, budgets = selection.phase_budgets(cfg.ipc, cfg.alpha, cfg.phases, cfg.semantics)
        for j in range(1, len(budgets) + 1):
            size = c * (per_class + sum(budgets[:j - 1]))
            if size and not (out / f"phase_{j}.json").is_file():
                work.add(cfg.epochs * size)
    final = n if cfg.method == "full" else c * cfg.ipc
    for name in cfg.eval_models:
        for r in range(cfg.num_eval):
            if not (out / "eval" / f"{name}_{r}.json").is_file():
                work.add((cfg.eval_epochs or cfg.epochs) * final)
    return work


def run(cfg: RunConfig, out: str | Path, device=None, progress: bool = True) -> dict:
    """Every stage of CCFS (or a baseline) into the run directory OUT; resumes a run started there.

    Everything that can be checked without computing is checked before the directory is made, and a run
    that fails before finishing its first stage leaves no directory behind."""
    check_config(cfg)
    device = distributed.init(device)  # under torchrun: join the job; every rank runs every stage
    progress = progress and distributed.is_main()
    run_dir = RunDir(out, cfg)
    run_dir.check()
    device = resolve_device(device)
    t = time.perf_counter()
    with distributed.rank0_first():  # rank 0 decodes into the shared cache, the others open its result
        stores = convert(cfg.dataset, cfg.root, cfg.cache, progress=progress)
        check_inputs(cfg, stores["train"])
        if cfg.loader in ("ffcv", "dali"):
            from fastccfs.formats import convert_store

            for store in stores.values():
                convert_store(store, cfg.loader, progress=progress)
    convert_s = time.perf_counter() - t  # opening the stores when they exist, decoding the dataset when not
    data = run_dir.check_data(stores)
    main = distributed.is_main()
    try:
        if main:
            run_dir.create(data)
            run_dir.timings.setdefault("convert", round(convert_s, 3))
        distributed.barrier()
        with distributed.writes_by_rank0(run_dir.path):
            with RunLog(run_dir.path / "run.log", quiet=not progress) if main else nullcontext() as logger:
                try:
                    summary = _run_stages(cfg, run_dir, stores, device, progress, logger)
                except Exception as e:
                    if logger is not None:
                        logger.log(f"fastccfs: error: {e}")
                    raise
    except BaseException:
        if main:
            run_dir.release()
            run_dir.abandon()
        raise
    if main:
        run_dir.release()
    return summary


def _run_stages(cfg: RunConfig, run_dir: RunDir, stores: dict, device, progress: bool, logger: RunLog) -> dict:
    from fastccfs import kernels

    out = run_dir.path
    ctx = Context(cfg, out, stores["train"], stores["test"], device, progress, logger)
    finished = run_dir.finished_summary()
    if finished is not None:  # nothing to compute: no kernel compile, no model, no report unless it is missing
        rebuilt = cfg.report and not (out / "report.html").is_file()
        ctx.log(f"fastccfs run {cfg.dataset}, IPC {cfg.ipc}, {cfg.method} → {out}: finished earlier; nothing "
                f"recomputed{' (report.html written again: it was missing)' if rebuilt else ''}")
        if rebuilt:
            from fastccfs.report import build_report

            build_report(out, store=ctx.train)
        return finished
    ctx.work = plan_work(ctx)
    ctx.log(f"fastccfs run {cfg.dataset}, IPC {cfg.ipc}, {cfg.method} → {out} ({device})")
    run_dir.timings["compile_kernels"] = round(kernels.warm_up(), 3)  # numba: compiled once, then cached on disk
    with run_dir.timed("teacher"):
        teacher, teacher_pred = stage_teacher(ctx)
    with run_dir.timed("scores"):
        scores = stage_scores(ctx)
    if cfg.method == "ccfs":
        with run_dir.timed("distilled_part"):  # built-in CDA, a folder brought, or real images (--init)
            start = stage_start(ctx, scores, teacher)
        final = stage_curriculum(ctx, start, teacher, teacher_pred, scores, run_dir)
    else:
        final = stage_baseline(ctx, scores)
    write_json(out / "selected_indices.json",
               {"ipc": cfg.ipc, "alpha": cfg.alpha, "idx_selected": final.real_indices.tolist()})
    final.save(out / "synthetic_set.npz", ctx.train)
    summary = stage_eval(ctx, final, teacher, run_dir) if cfg.num_eval else {"set_size": len(final), "ipc": cfg.ipc,
                                                                             "models": {}}
    from fastccfs.report import build_report

    if cfg.report:  # a sweep of many runs (benchmarks/study.py) skips each run's figures
        build_report(out, store=ctx.train)
    return summary
