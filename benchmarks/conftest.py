"""Real data for the benchmarks (../shared/data), converted once per session."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} is absent (benchmarks read ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def roots(tmp_path_factory):
    """{'cifar10': ROOT with cifar-10-batches-py/, 'tiny-imagenet': ROOT with tiny-imagenet-200.zip}"""
    cifar = tmp_path_factory.mktemp("cifar-root")
    subprocess.run([sys.executable, str(need(SHARED_DATA / "make_cifar10_batches.py")), str(cifar)], check=True,
                   stdout=subprocess.DEVNULL)
    tiny = tmp_path_factory.mktemp("tiny-root")
    shutil.copyfile(need(SHARED_DATA / "tiny-imagenet-200-mini.zip"), tiny / "tiny-imagenet-200.zip")
    return {"cifar10": cifar, "tiny-imagenet": tiny}


@pytest.fixture(scope="session")
def stores(roots, tmp_path_factory):
    from fastccfs.store import convert

    cache = tmp_path_factory.mktemp("cache")
    return {name: convert(name, root, cache, progress=False)["train"] for name, root in roots.items()}
