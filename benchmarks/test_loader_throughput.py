"""Loader throughput, every backend side by side in one run (`make bench`).

One epoch over the train split with RandomResizedCrop + flip + normalise, batch 256, on this
machine's CPU cores: the stock torchvision pipeline users run (the table's baseline: PIL transforms in a
DataLoader, one worker per core, as benchmarks/loaders_vs_dataloader.py builds it — that script also tries
0/1/2/4 workers), the tensor backend, the torch backend (one worker per core, kept across epochs), FFCV
and DALI each from raw and from JPEG pages (quality 90). `first_epoch_s` (extra_info, its own
table column) is building the loader plus its first epoch — numba/FFCV compilation, DALI's pipeline
build, worker start; the benchmark's mean is the steady state (3 epochs after that one).
"""
import time

import pytest

from fastccfs.loaders import make_loader

BACKENDS = ["stock", "tensor", "torch", "ffcv-raw", "ffcv-jpg", "dali-raw", "dali-jpg"]


@pytest.fixture(scope="module")
def forms(stores, tmp_path_factory):
    """{(dataset, pages): train store with its FFCV and DALI forms in those pages}; one cache per pages."""
    import shutil

    from fastccfs.formats import convert_store
    from fastccfs.store import Store

    out = {}
    for pages in ("raw", "jpg"):
        cache = tmp_path_factory.mktemp(f"forms-{pages}")
        for name, store in stores.items():
            shutil.copytree(store.path.parent, cache / name, ignore=shutil.ignore_patterns("ffcv", "dali"))
            copy = Store.open(cache / name / "train")
            for fmt in ("ffcv", "dali"):
                convert_store(copy, fmt, pages=pages, progress=False)
            out[name, pages] = copy
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dataset", ["cifar10", "tiny-imagenet"])
def test_loader_epoch(benchmark, stores, forms, dataset, backend):
    import os

    name, _, pages = backend.partition("-")
    store = forms[dataset, pages] if pages else stores[dataset]
    options = {"num_workers": os.cpu_count()} if name == "torch" else {}
    start = time.perf_counter()
    if name == "stock":
        import numpy as np

        from loaders_vs_dataloader import stock_loader

        loader = stock_loader(np.asarray(store.images), np.asarray(store.labels), store.mean, store.std, 256, "rrc",
                              os.cpu_count())
    else:
        loader = make_loader(store, backend=name, batch_size=256, device="cpu", **options)

    def epoch():
        n = 0
        for x, *_ in loader:
            n += len(x)
        return n

    epoch()
    first = time.perf_counter() - start
    n = benchmark.pedantic(epoch, rounds=3)
    benchmark.extra_info.update(images=n, pixels=store.image_size[0], group=f"loader {dataset}",
                                first_epoch_s=first)


@pytest.mark.parametrize("dataset", ["cifar10", "tiny-imagenet"])
def test_convert(benchmark, roots, tmp_path_factory, dataset):
    from fastccfs.store import convert

    def fresh():
        return (dataset, roots[dataset], tmp_path_factory.mktemp("cache")), {"progress": False}

    stores = benchmark.pedantic(convert, setup=fresh, rounds=3)
    benchmark.extra_info.update(images=len(stores["train"]) + len(stores["test"]), group="convert")


@pytest.mark.parametrize("target", ["ffcv-raw", "ffcv-jpg", "dali-raw", "dali-jpg"])
def test_convert_to(benchmark, stores, tmp_path_factory, target):
    """Writing CIFAR-10's train store as a .beton / as DALI's per-sample files."""
    import shutil

    from fastccfs.formats import convert_store
    from fastccfs.store import Store

    fmt, pages = target.split("-")

    def fresh():
        cache = tmp_path_factory.mktemp("convert-to")
        shutil.copytree(stores["cifar10"].path.parent, cache / "cifar10", ignore=shutil.ignore_patterns("ffcv", "dali"))
        return (Store.open(cache / "cifar10" / "train"), fmt), {"pages": pages, "progress": False}

    benchmark.pedantic(convert_store, setup=fresh, rounds=2)
    benchmark.extra_info.update(images=len(stores["cifar10"]), group="convert to")
