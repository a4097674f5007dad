"""Access to the YAML files in configs/ (installed as the package data fastccfs/configs)."""
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from fastccfs.errors import UserError


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



@dataclass
class RunConfig:
    """Every setting of `fastccfs run`, resolved: run.yaml ← <dataset>.yaml (and its IPC preset) ←
    --config FILE ← flags. Written to RUN/config.yaml; the comments in configs/run.yaml say what each is."""

    dataset: str
    ipc: int
    root: str = "."
    cache: str | None = None
    model: str = "resnet18"
    teacher_model: str = "resnet18"
    eval_models: list[str] = field(default_factory=lambda: ["resnet18"])
    teacher: str | None = None
    teacher_epochs: int = 200
    teacher_lr: float = 0.1
    teacher_weight_decay: float = 5e-4
    teacher_batch_size: int = 128
    epochs: int = 500
    eval_epochs: int | None = None
    eval_from: float = 0.8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    temperature: float = 20.0
    batch_size: int | None = None
    alpha: float = 0.2
    phases: int = 3
    coarse: str = "misclassified"
    fine: str = "simple"
    score: str = "forgetting"
    scores: str | None = None
    teacher_filter: bool = True
    filter_test: bool = True
    inference: str = "needed"
    method: str = "ccfs"
    distilled: str | None = None
    init: str = "none"
    beta: float = 0.0
    distill_iterations: int | None = None
    distill_lr: float | None = None
    distill_r_bn: float | None = None
    num_eval: int = 5
    loader: str = "tensor"
    amp: str = "auto"
    compile: bool = False
    seed: int = 0

    # Settings that change how, not what, is selected and evaluated: a resumed run may change them.
    RUNTIME = ("loader", "compile", "root", "cache", "filter_test", "inference")

    def science(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}


def resolve_run_config(dataset: str, ipc: int | None, config_file: str | None, overrides: dict) -> RunConfig:
    """Merge the layers; unknown keys and missing presets are errors that say what to do."""
    known = {f.name for f in fields(RunConfig)}
    values = dict(load_yaml("run.yaml"))
    preset_name = dataset if (configs_dir() / f"{dataset}.yaml").is_file() else None
    preset = dict(load_yaml(f"{preset_name}.yaml")) if preset_name else {}
    by_ipc = preset.pop("ipc", None)  # {IPC: settings} presets, or one default IPC (the demo)
    values.update(preset)
    if ipc is None and isinstance(by_ipc, int):
        ipc = by_ipc
    if ipc is None:
        raise UserError(f"no IPC for {dataset}: pass --ipc N")
    if isinstance(by_ipc, dict):
        if ipc in by_ipc:
            values.update(by_ipc[ipc] or {})
        elif not overrides.get("epochs") and not config_file:
            print(f"fastccfs: note: {dataset} has presets for IPC {', '.join(map(str, by_ipc))}; IPC {ipc} uses "
                  f"the dataset defaults (epochs {values.get('epochs')})")
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as f:
                values.update(yaml.safe_load(f) or {})
        except OSError as e:
            raise UserError(f"{config_file}: cannot read the config file ({e.strerror})") from e
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(dataset=dataset, ipc=int(ipc))
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cfg = RunConfig(**values)
    if isinstance(cfg.eval_models, str):
        cfg.eval_models = [m for m in cfg.eval_models.split(",") if m]
    return cfg
