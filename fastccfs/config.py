"""Settings: the YAML files in configs/ (installed as the package data fastccfs/configs) and RunConfig,
every setting of `fastccfs run` with its type, help line, choices and whether it changes results."""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from fastccfs import registry
from fastccfs.errors import UserError
from fastccfs.selection import SEMANTICS  # numpy only: config stays importable without torch

AMP_MODES = ("auto", "bf16", "off")  # fastccfs.precision.autocast_dtype's modes


def configs_dir() -> Path:
    """configs/ of a source checkout, else the copy installed with the package."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("fastccfs.configs")))


@lru_cache(maxsize=None)
def load_yaml(name: str) -> dict:
    with open(configs_dir() / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def dataset_info(name: str) -> dict:
    return load_yaml("datasets.yaml")[name]


# ------------------------------------------------------------------------------------ run config

def setting(default, help: str, choices=None, runtime: bool = False):
    """A RunConfig field. choices: a tuple, or the name of a registry kind (fastccfs.registry) whose names
    are the choices. runtime=True: it changes how, not what, is selected and evaluated, so a resumed run
    may change it; every other field is part of the run's identity."""
    meta = {"help": help, "choices": choices, "runtime": runtime}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


# What each setting configures (the groups of `fastccfs run --help`) and its range, checked by
# fastccfs.checks.validate before any work: "≥ 1", "> 0", "[0, 1]" (closed), "[0, 1)" (1 excluded). Settings
# left out of RANGES have a choice list (or are free text: paths).
GROUPS = {
    "run": ("dataset", "ipc", "method", "seed", "semantics", "root", "cache"),
    "teacher": ("teacher", "teacher_model", "teacher_epochs", "teacher_lr", "teacher_weight_decay",
                "teacher_batch_size", "teacher_warmup_epochs", "teacher_augment", "teacher_test"),
    "filters and evaluation training": ("model", "epochs", "lr", "momentum", "weight_decay", "warmup_epochs",
                                        "temperature", "batch_size"),
    "selection": ("phases", "alpha", "coarse", "fine", "score", "scores", "teacher_filter", "init", "beta",
                  "inference", "filter_test"),
    "evaluation": ("eval_models", "eval_epochs", "eval_from", "num_eval", "eval_jobs", "soft_labels",
                   "soft_labels_topk"),
    "distillation": ("distilled", "distill_iterations", "distill_lr", "distill_r_bn"),
    "runtime": ("loader", "amp", "compile", "report"),
}
RANGES = {
    "ipc": "≥ 1", "seed": "[0, 4294967295]",  # seed·1000 + stream seeds torch (< 2⁶³) and numpy
    "teacher_epochs": "≥ 1", "teacher_lr": "> 0", "teacher_weight_decay": "≥ 0", "teacher_batch_size": "≥ 1",
    "teacher_warmup_epochs": "≥ 0",
    "epochs": "≥ 1", "lr": "> 0", "momentum": "[0, 1)", "weight_decay": "≥ 0", "warmup_epochs": "≥ 0",
    "temperature": "> 0", "batch_size": "≥ 1",
    "phases": "≥ 1", "alpha": "[0, 1]", "beta": "[0, 1]",
    "eval_epochs": "≥ 1", "eval_from": "[0, 1]", "num_eval": "≥ 0", "soft_labels_topk": "≥ 1",
    "distill_iterations": "≥ 1", "distill_lr": "> 0", "distill_r_bn": "≥ 0",
}


def range_error(name: str, rule: str, value) -> str:
    """The one-line refusal of VALUE outside RULE for setting NAME."""
    return f"{name} must be {'in ' if rule[0] in '[(' else ''}{rule}; got {value}"


def in_range(value, rule: str) -> bool:
    """VALUE within RULE (a RANGES entry)."""
    if rule.startswith(("≥", ">")):
        bound = float(rule[1:])
        return value >= bound if rule[0] == "≥" else value > bound
    low, high = (float(v) for v in rule[1:-1].split(","))
    return (value >= low if rule[0] == "[" else value > low) and (value <= high if rule[-1] == "]" else value < high)


@dataclass
class RunConfig:
    """Every setting of `fastccfs run`: its type, default and help line here (the one source of both), its
    group and range in GROUPS and RANGES. Resolved: these defaults ← configs/<dataset>.yaml (and its IPC
    preset) ← --config FILE ← flags (resolve_run_config); checked whole by fastccfs.checks.validate; written to
    RUN/config.yaml. The defaults are the CCFS paper's settings and its published code's (sources below)."""

    dataset: str = field(metadata={"help": "a registered dataset (fastccfs.datasets.dataset_help), or a path"})
    ipc: int = field(metadata={"help": "images per class of the final set"})
    root: str = setting(".", "folder holding the dataset's archive or extracted folder", runtime=True)
    cache: str | None = setting(None, "store folder (default: $FASTCCFS_CACHE or ~/.cache/fastccfs)", runtime=True)
    model: str = setting("resnet18", "the filter trained in each phase", "model")
    teacher_model: str = setting("resnet18", "the teacher's architecture", "model")
    eval_models: list[str] = setting(["resnet18"], "comma-separated models trained on the final set", "model")
    teacher: str | None = setting(None, "teacher checkpoint; none: train one here and count forgetting events")
    # A teacher trained here follows SRe²L's squeeze recipe (configs/<dataset>.yaml: teacher_recipe); these
    # defaults are squeeze_cifar.py's (squeeze_cifar.sh --epochs 200; SGD lr 0.1, momentum 0.9, wd 5e-4,
    # batch 128, CosineAnnealingLR from the first epoch, RandomCrop(size, padding=4) + flip).
    teacher_epochs: int = setting(200, "epochs of a teacher trained here")
    teacher_lr: float = setting(0.1, "learning rate of a teacher trained here")
    teacher_weight_decay: float = setting(5e-4, "weight decay of a teacher trained here")
    teacher_batch_size: int = setting(128, "batch size of a teacher trained here")
    teacher_warmup_epochs: int = setting(0, "linear warm-up epochs of a teacher trained here")
    teacher_test: bool = setting(False, "test a teacher trained here after every epoch (its accuracy curve, "
                                        "teacher_training.json): one test-split pass per epoch", runtime=True)
    teacher_augment: str = setting("crop_pad", "augmentation of a teacher trained here: RandomCrop with 4-pixel "
                                   "padding + flip (SRe²L's CIFAR squeeze), or RandomResizedCrop + flip",
                                   ("crop_pad", "rrc"))
    epochs: int = setting(500, "epochs of each phase's filter (and of evaluation unless --eval-epochs)")
    eval_epochs: int | None = setting(None, "epochs of each evaluation model; none: --epochs")
    eval_from: float = setting(0.8, "evaluation tracks test accuracy after epochs > F·epochs (1.0: last only)")
    # The CCFS scripts' --lr 0.2 and --weight-decay 1e-4 (the paper's Table 6 prints 0.1 and 5e-4: the scripts
    # produced the published numbers; configs/cifar10.yaml notes the conflict).
    lr: float = setting(0.2, "learning rate of filters and evaluation models (SGD)")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "weight decay of filters and evaluation models")
    warmup_epochs: int = setting(5, "linear warm-up epochs (from 1 % of lr), then cosine")
    temperature: float = setting(20.0, "KD temperature T")
    batch_size: int | None = setting(None, "batch size of filters and evaluation; none: the reference's rule "
                                           "by the set's share of the train split (32 / 64 / 128)")
    alpha: float = setting(0.2, "fraction α of each class's IPC taken from the distilled part")
    phases: int = setting(3, "curriculum phases J")
    coarse: str = setting("misclassified", "coarse rule on the filter's predictions", "coarse")
    fine: str = setting("simple", "fine order per class: simplest first, hardest first, or random", "fine")
    score: str = setting("forgetting", "difficulty score", ("forgetting", "cscore", "logits"))
    scores: str | None = setting(None, "score file (published forgetting .npy, c-score .npz); none: forgetting "
                                       "counted while training the teacher here")
    teacher_filter: bool = setting(True, "candidates must be classified correctly by the teacher")
    filter_test: bool = setting(True, "test each phase's filter on the test split (Fig. 4a)", runtime=True)
    inference: str = setting("needed", "needed: predict only what the fine stage can reach (same picks); "
                                       "all: the whole train split", ("needed", "all"), runtime=True)
    method: str = setting("ccfs", "ccfs, or a real-image baseline", "method")
    distilled: str | None = setting(None, "distilled set (SRe²L/CDA folder, ImageFolder, .npz/.pt); none: "
                                          "built-in CDA distillation (or --init)")
    init: str = setting("none", "real images in place of the distilled part (self-evolved selection)",
                        ("none", "random", "window"))
    beta: float = setting(0.0, "window start: ⌊β·|class|⌋ samples of each class skipped, hardest first (the "
                               "SelMatch paper's meaning; SelMatch's code skips int(β·IPC))")
    distill_iterations: int | None = setting(None, "built-in distillation iterations; none: configs/distill.yaml")
    distill_lr: float | None = setting(None, "built-in distillation learning rate; none: configs/distill.yaml")
    distill_r_bn: float | None = setting(None, "built-in distillation BN-statistics weight; none: "
                                               "configs/distill.yaml")
    report: bool = setting(True, "write RUN/report.html and its figures at the end (`fastccfs report RUN` writes "
                                 "them later)", runtime=True)
    num_eval: int = setting(5, "evaluation runs (seeds) per model; 0: no evaluation")
    # How many evaluation runs train at once: a run's numbers depend on its seed and its threads only
    # (fastccfs.eval_jobs), so this changes how, not what, given the same threads per run.
    eval_jobs: str = setting("auto", "evaluation runs trained at once, in processes that split the cores: N ≥ 1, "
                                     "or auto (decided by a short measurement, once per machine and model)",
                             runtime=True)
    # The KD targets of the evaluation runs (fastccfs.soft_labels): the reference code's teacher on each run's
    # own batch, or the CCFS appendix's "pre-generated as CDA" (FKD-style relabel): one crop stream per epoch
    # and the teacher's outputs on it, computed once for every run and every eval model.
    soft_labels: str = setting("online", "online: the teacher on every run's own crops (the reference code); "
                                         "shared: one crop stream per epoch, the teacher's logits on it computed "
                                         "once (fp16, in the run folder) and used by every evaluation run",
                               ("online", "shared"))
    soft_labels_topk: int | None = setting(None, "shared soft labels: keep the K largest logits per crop (FKD); "
                                                 "none: all (full logits)")
    loader: str = setting("tensor", "loader backend", "backend")
    amp: str = setting("auto", "bf16 autocast: auto (bf16 on CUDA; on a CPU with native bf16 where measured faster for the model, else fp32), bf16, off", AMP_MODES)
    compile: bool = setting(False, "torch.compile the trained models", runtime=True)
    semantics: str = setting("fastccfs", "fastccfs: ties by index, fill short classes, ⌊α·IPC⌋ distilled; "
                                         "reference: the reference code's exact picks (set order, no fill, "
                                         "int(IPC·α), file names in string order)", SEMANTICS)
    seed: int = setting(0, "the run's seed (every stage's randomness derives from it)")

    def science(self) -> dict:
        """The settings that make the run what it is (its identity in config.yaml)."""
        return {k: v for k, v in asdict(self).items() if not field_info(k).get("runtime")}


def field_info(name: str) -> dict:
    return next(f.metadata for f in fields(RunConfig) if f.name == name)


def choices_of(name: str) -> tuple | None:
    """The allowed values of setting NAME: its tuple, or the names registered for its registry kind."""
    choices = field_info(name).get("choices")
    return registry.names(choices) if isinstance(choices, str) else choices


def _check_type(name: str, value, kind: str, where: str):
    """VALUE as the field's type (ints stay ints, '1e-2' is a float), or a one-line error."""
    optional = kind.endswith("| None")
    base = kind.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: {name} must be {base}, not empty")
    wanted = {"int": "a whole number", "float": "a number", "bool": "true or false", "list[str]": "a list of names"}
    bad = UserError(f"{where}: {name} must be {wanted.get(base, base)}, got {value!r}")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if base == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if base == "float":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):  # PyYAML reads 1e-2 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise bad
    if base == "list[str]":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise bad
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise bad


def _load_settings_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read the config file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start}): save the config file as UTF-8") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: a config file is a mapping of settings (name: value), not a "
                        f"{type(values).__name__}")
    return values


def presets(dataset: str) -> tuple[dict, dict | int | None]:
    """(dataset-wide settings, {IPC: settings} or the one default IPC) of configs/<dataset>.yaml."""
    if not (configs_dir() / f"{dataset}.yaml").is_file():
        return {}, None
    preset = dict(load_yaml(f"{dataset}.yaml"))
    by_ipc = preset.pop("ipc", None)
    # teacher_recipe: {epochs: …} groups the teacher's settings: they are teacher_epochs, ….
    preset.update({f"teacher_{k}": v for k, v in (preset.pop("teacher_recipe", None) or {}).items()})
    return preset, by_ipc


def resolve_run_config(dataset: str, ipc: int | None, config_file: str | None, overrides: dict,
                       quiet: bool = False) -> RunConfig:
    """Merge the layers; unknown keys, values of the wrong type and missing presets are one-line errors."""
    known = {f.name: f for f in fields(RunConfig)}
    values = defaults()
    preset, by_ipc = presets(dataset)
    values.update(preset)
    if ipc is None and isinstance(by_ipc, int):
        ipc = by_ipc
    if ipc is None:
        hint = f" (presets: {', '.join(map(str, by_ipc))})" if isinstance(by_ipc, dict) else ""
        raise UserError(f"no IPC for {dataset}: pass --ipc N{hint}")
    if isinstance(by_ipc, dict):
        if ipc in by_ipc:
            values.update(by_ipc[ipc] or {})
        elif not overrides.get("epochs") and not config_file and not quiet:
            print(f"fastccfs: note: {dataset} has presets for IPC {', '.join(map(str, by_ipc))}; IPC {ipc} uses "
                  f"the dataset defaults (epochs {values.get('epochs')})")
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file:
        given = {**_load_settings_file(config_file), **given}
    if given.get("distilled") and "init" not in given:
        values["init"] = "none"  # a distilled set given by the user replaces a preset's real-image start
    values.update(given)
    values.update(dataset=dataset, ipc=ipc)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    where = config_file or "settings"
    checked = {}
    for name, value in values.items():
        kind = known[name].type if isinstance(known[name].type, str) else known[name].type.__name__
        checked[name] = _check_type(name, value, kind, where)
        choices = choices_of(name)
        if choices:
            for v in checked[name] if isinstance(checked[name], list) else [checked[name]]:
                if v not in choices:
                    raise UserError(f"unknown {name} {v!r}: use one of {', '.join(choices)}")
    return RunConfig(**checked)


def defaults() -> dict:
    """Every setting's default: the RunConfig fields' (the one source; no YAML repeats them)."""
    return {f.name: default_of(f) for f in fields(RunConfig) if f.name not in ("dataset", "ipc")}


def config_defaults(dataset: str | None = None, ipc: int | None = None) -> dict:
    """Each setting's default as `run` would resolve it (for --help): RunConfig's, then the dataset's preset."""
    values = defaults()
    if dataset:
        preset, by_ipc = presets(dataset)
        values.update(preset)
        if isinstance(by_ipc, dict) and ipc in by_ipc:
            values.update(by_ipc[ipc] or {})
    return values


def default_of(f) -> object:
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
