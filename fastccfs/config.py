"""Access to the YAML files in configs/ (installed as the package data fastccfs/configs)."""
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml


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
