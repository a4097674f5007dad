"""Loader throughput, tensor vs torch backend, one run (`make bench`).

One epoch over the train split with RandomResizedCrop + flip + normalise, batch 256, on this
machine's CPU cores; the torch backend gets one worker per core, kept across epochs. The first
(warm-up) epoch — numba compilation, worker start — is excluded.
"""
import pytest

from fastccfs.loaders import make_loader


@pytest.mark.parametrize("backend", ["tensor", "torch"])
@pytest.mark.parametrize("dataset", ["cifar10", "tiny-imagenet"])
def test_loader_epoch(benchmark, stores, dataset, backend):
    import os

    store = stores[dataset]
    options = {"num_workers": os.cpu_count()} if backend == "torch" else {}
    loader = make_loader(store, backend=backend, batch_size=256, device="cpu", **options)

    def epoch():
        n = 0
        for x, _, _ in loader:
            n += len(x)
        return n

    n = benchmark.pedantic(epoch, warmup_rounds=1, rounds=3)
    benchmark.extra_info.update(images=n, pixels=store.image_size[0], group=f"loader {dataset}")


@pytest.mark.parametrize("dataset", ["cifar10", "tiny-imagenet"])
def test_convert(benchmark, roots, tmp_path_factory, dataset):
    from fastccfs.store import convert

    def fresh():
        return (dataset, roots[dataset], tmp_path_factory.mktemp("cache")), {"progress": False}

    stores = benchmark.pedantic(convert, setup=fresh, rounds=3)
    benchmark.extra_info.update(images=len(stores["train"]) + len(stores["test"]), group="convert")
