"""Shared fixtures: the real data of ../shared/data, converted once per test session."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_ZIP = SHARED_DATA / "tiny-imagenet-200-mini.zip"
CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg.tar.gz"
SCORES = SHARED_DATA / "reference-scores"


def need(path: Path) -> Path:
    """PATH, real data from ../shared/data; a test without it skips on a developer's machine and fails in
    CI (CI is set there), where a missing file means a broken set-up, not an optional test."""
    if not path.exists():
        message = f"real data {path} is absent (tests read ../shared/data beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """ROOT/cifar-10-batches-py/ rebuilt in the official train order by the shared script."""
    need(CIFAR_JPEG)
    root = tmp_path_factory.mktemp("cifar-root")
    subprocess.run([sys.executable, str(SHARED_DATA / "make_cifar10_batches.py"), str(root)], check=True,
                   stdout=subprocess.DEVNULL)
    return root


def quick_numba(folder: Path) -> dict:
    """Environment for a child process whose numba compilation (FFCV's pipeline: ~10 s a process here) is
    tested for what it does, not how fast it runs: LLVM optimises less, in a numba cache of its own (numba's
    cache key does not record the optimisation level, so the project's kernels must not be cached from it)."""
    return {"NUMBA_OPT": "0", "NUMBA_CACHE_DIR": str(folder / "numba")}


@pytest.fixture(scope="session")
def cifar_tar_gz(cifar_root, tmp_path_factory) -> Path:
    """A folder holding cifar-10-python.tar.gz as published (the batches folder inside), of cifar_root's batches;
    compresslevel 0: a valid gzip stream of stored blocks, read by the same path, written fast."""
    import tarfile

    folder = tmp_path_factory.mktemp("cifar-tar-gz")
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz", compresslevel=0) as tar:
        tar.add(cifar_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return folder


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def cifar_stores(cifar_root, cache):
    from fastccfs.store import convert

    return convert("cifar10", cifar_root, cache, progress=False)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """ROOT/tiny-imagenet-200.zip, the official file name, holding the mini subset."""
    root = tmp_path_factory.mktemp("tiny-root")
    shutil.copyfile(need(TINY_ZIP), root / "tiny-imagenet-200.zip")
    return root


@pytest.fixture(scope="session")
def tiny_stores(tiny_root, cache):
    from fastccfs.store import convert

    return convert("tiny-imagenet", tiny_root, cache, progress=False)


@pytest.fixture(scope="session")
def demo_stores(cache):
    from fastccfs.store import convert

    return convert("demo", cache=cache, progress=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# Small settings for `fastccfs run demo` in tests: the fastest ConvNet, two epochs.
FAST = ["--model", "convnet_bn", "--teacher-model", "convnet_bn", "--eval-models", "convnet_bn", "--epochs", "2",
        "--eval-epochs", "2", "--warmup-epochs", "1", "--quiet"]


def run(cache, out, *args) -> int:
    from fastccfs.cli import main

    return main(["run", "demo", "--cache", str(cache), "--out", str(out), *FAST, *map(str, args)])


@pytest.fixture(scope="session")
def own_run(tmp_path_factory, cache, demo_stores):
    """The whole pipeline on the bundled subset with its own teacher and forgetting scores."""
    out = tmp_path_factory.mktemp("runs") / "own"
    assert run(cache, out, "--teacher-epochs", "2", "--num-eval", "1") == 0
    return out
