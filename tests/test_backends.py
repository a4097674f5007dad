"""The FFCV and DALI backends on real data: conversion next to the store, the loader protocol, pixel
exactness of raw pages, augmentation statistics equal to the tensor backend's, and clear errors."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, quick_numba, run
from fastccfs.cli import main
from fastccfs.errors import UserError
from fastccfs.formats import convert_store, location
from fastccfs.loaders import make_loader
from fastccfs.store import convert

BACKENDS = ["ffcv", "dali"]


def denormalize(x, store):
    mean = torch.tensor(store.mean)[None, :, None, None]
    std = torch.tensor(store.std)[None, :, None, None]
    return ((x.float() * std + mean) * 255).permute(0, 2, 3, 1).numpy()  # NHWC in pixel units


@pytest.fixture(scope="module")
def demo(demo_stores, cache):
    """The bundled real CIFAR-10 subset, converted to both forms (raw pages) through the CLI."""
    for fmt in BACKENDS:
        assert main(["convert", "demo", "--cache", str(cache), "--to", fmt, "--quiet"]) == 0
    return demo_stores["train"]


def epoch(loader):
    xs, ys, ids = zip(*loader)
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def test_convert_writes_next_to_the_store_and_skips_when_up_to_date(demo, cache, capsys):
    beton = cache / "demo" / "ffcv" / "train.beton"
    files = cache / "demo" / "dali" / "train"
    assert beton.is_file() and (cache / "demo" / "ffcv" / "test.beton").is_file()
    assert len(list(files.glob("*.rgb"))) == len(demo) and (files / "0000042.rgb").stat().st_size == 32 * 32 * 3
    np.testing.assert_array_equal(np.frombuffer((files / "0000042.rgb").read_bytes(), np.uint8).reshape(32, 32, 3),
                                  demo.images[42])
    marks = beton.stat().st_mtime_ns, (files / "index.json").stat().st_mtime_ns
    assert main(["convert", "demo", "--cache", str(cache), "--to", "ffcv", "--quiet"]) == 0
    assert main(["convert", "demo", "--cache", str(cache), "--to", "dali", "--quiet"]) == 0
    assert (beton.stat().st_mtime_ns, (files / "index.json").stat().st_mtime_ns) == marks
    assert "demo/train as ffcv (raw pages)" in capsys.readouterr().out
    assert not list((cache / "demo" / "ffcv").glob(".*tmp*")), "no temporary files left behind"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("augmented", [True, False])
def test_one_epoch_yields_every_index_once_with_its_label(demo, backend, augmented):
    loader = make_loader(demo, backend=backend, batch_size=256, augment=augmented, device="cpu")
    assert len(loader) == math.ceil(len(demo) / 256)
    for _ in range(2):  # the second epoch too: a new order, the same coverage
        x, y, idx = epoch(loader)
        assert x.dtype == torch.float32 and x.shape == (len(demo), 3, 32, 32)
        assert x.is_contiguous() and y.dtype == idx.dtype == torch.int64
        assert sorted(idx.tolist()) == list(range(len(demo)))
        np.testing.assert_array_equal(y.numpy(), demo.labels[idx.numpy()])
        if not augmented:
            np.testing.assert_array_equal(idx.numpy(), np.arange(len(demo)))  # the stored order


@pytest.mark.parametrize("backend", BACKENDS)
def test_subset_serves_exactly_its_indices(demo, backend):
    subset = np.sort(np.random.default_rng(1).choice(len(demo), 333, replace=False))
    loader = make_loader(demo, backend=backend, batch_size=64, device="cpu", indices=subset)
    _, y, idx = epoch(loader)
    assert sorted(idx.tolist()) == subset.tolist()
    np.testing.assert_array_equal(y.numpy(), demo.labels[idx.numpy()])
    with pytest.raises(UserError, match=f"the {backend} backend serves store images only"):
        make_loader(demo, backend=backend, device="cpu", indices=subset,
                    extra_images=np.zeros((2, 32, 32, 3), np.uint8), extra_labels=[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_pages_are_pixel_exact_without_augmentation(demo, backend):
    x, _, idx = epoch(make_loader(demo, backend=backend, batch_size=500, augment=False, device="cpu"))
    reference, _, _ = epoch(make_loader(demo, backend="tensor", batch_size=500, augment=False, device="cpu"))
    torch.testing.assert_close(x, reference, atol=1e-5, rtol=0)  # the same normalised floats
    np.testing.assert_allclose(denormalize(x, demo), demo.images.astype(np.float32), atol=2e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jpeg_pages_decode_close_to_the_store(demo_stores, tmp_path, backend):
    cache = tmp_path / "cache"
    shutil.copytree(demo_stores["train"].path.parent, cache / "demo", ignore=shutil.ignore_patterns("ffcv", "dali"))
    store = convert("demo", cache=cache, progress=False)["train"]
    convert_store(store, backend, pages="jpg", jpeg_quality=95, progress=False)
    x, _, idx = epoch(make_loader(store, backend=backend, batch_size=500, augment=False, device="cpu"))
    np.testing.assert_array_equal(idx.numpy(), np.arange(len(store)))
    error = np.abs(denormalize(x, store) - store.images.astype(np.float32))
    assert 0 < error.mean() < 3, error.mean()  # lossy, but the same images


def coordinate_store(tmp_path):
    """Images whose red channel is 8·x + 4 and green 8·y + 4: a crop's box and mirror can be read back."""
    x = np.arange(32) * 8 + 4
    red, green = np.broadcast_to(x[None, :], (32, 32)), np.broadcast_to(x[:, None], (32, 32))
    image = np.stack([red, green, (red + green) // 2], axis=2).astype(np.uint8)
    images = np.broadcast_to(image, (1000, 32, 32, 3))
    labels = np.arange(1000) % 2
    np.savez(tmp_path / "coords.npz", x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    return convert(str(tmp_path / "coords.npz"), cache=tmp_path / "cache", progress=False)["train"]


def crop_statistics(x, store):
    """Per image: area fraction, log aspect ratio (w/h) and mirror, read off the coordinate channels."""
    p = denormalize(x, store)
    red, green = p[..., 0], p[..., 1]
    # A crop of w source pixels resized to 32 spans 8·w·31/32 in red between the outer columns.
    span_x = np.abs(red[:, :, -1] - red[:, :, 0]).mean(axis=1)
    span_y = np.abs(green[:, -1, :] - green[:, 0, :]).mean(axis=1)
    w, h = span_x / 8 * 32 / 31, span_y / 8 * 32 / 31
    mirrored = red[:, :, 0].mean(axis=1) > red[:, :, -1].mean(axis=1)
    return w * h / 32**2, np.log(w / h), mirrored


@pytest.mark.parametrize("backend", BACKENDS)
def test_augmentation_statistics_match_the_tensor_backend(tmp_path, backend):
    store = coordinate_store(tmp_path)
    convert_store(store, backend, progress=False)
    stats = {}
    for name in ("tensor", backend):
        loader = make_loader(store, backend=name, batch_size=250, device="cpu", seed=0)
        xs = [epoch(loader)[0] for _ in range(3)]  # 3,000 crops
        stats[name] = crop_statistics(torch.cat(xs), store)
    (area_t, aspect_t, flip_t), (area_b, aspect_b, flip_b) = stats["tensor"], stats[backend]
    assert 0.4 < area_t.mean() < 0.6 and abs(aspect_t.mean()) < 0.05  # the RandomResizedCrop law
    assert abs(area_b.mean() - area_t.mean()) < 0.03, (area_b.mean(), area_t.mean())
    assert abs(np.median(area_b) - np.median(area_t)) < 0.04
    assert abs(aspect_b.mean() - aspect_t.mean()) < 0.04 and abs(aspect_b.std() - aspect_t.std()) < 0.04
    assert abs(flip_b.mean() - 0.5) < 0.04 and abs(flip_t.mean() - 0.5) < 0.04


def test_missing_and_truncated_forms_are_one_line_errors(demo_stores, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(demo_stores["train"].path.parent, cache / "demo", ignore=shutil.ignore_patterns("ffcv", "dali"))
    store = convert("demo", cache=cache, progress=False)["train"]
    for backend in BACKENDS:
        with pytest.raises(UserError, match=f"no {backend} form of demo/train .* run `fastccfs convert demo --to {backend}`"):
            make_loader(store, backend=backend, device="cpu")
        convert_store(store, backend, progress=False)
    beton = location(store, "ffcv")
    with open(beton, "r+b") as f:
        f.truncate(beton.stat().st_size // 2)
    with pytest.raises(UserError, match=r"train.beton is truncated or damaged \(\d+ of \d+ bytes\)"):
        make_loader(store, backend="ffcv", device="cpu")
    files = location(store, "dali")
    (files / "0000007.rgb").write_bytes(b"\0" * 100)
    (files / "0000009.rgb").unlink()
    with pytest.raises(UserError, match=r"2 sample file\(s\) of .* are missing or truncated .*0000007.rgb: 100 of 3072"):
        make_loader(store, backend="dali", device="cpu")


@pytest.mark.parametrize("backend,module", [("ffcv", "ffcv.loader"), ("dali", "nvidia.dali")])
def test_a_missing_library_names_the_install_command(demo, cache, monkeypatch, capsys, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(UserError, match="install it with: .*pip install"):
        make_loader(demo, backend=backend, device="cpu")
    assert run(cache, cache.parent / f"nolib-{backend}", "--loader", backend) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("ffcv==1.0.2" if backend == "ffcv" else "nvidia-dali-cuda120") in err[0]


def test_run_with_the_dali_loader(demo, cache, tmp_path, own_run):
    """`fastccfs run --loader dali`: whole-split passes read DALI's files (the given teacher's predictions,
    each phase's inference); the set with real images only too."""
    import fastccfs

    out = tmp_path / "dali"
    assert run(cache, out, "--loader", "dali", "--num-eval", "1", "--teacher", str(own_run / "teacher.pt"),
               "--scores", str(fastccfs.DEMO_SCORES)) == 0
    sel = json.loads((out / "selected_indices.json").read_text())["idx_selected"]
    assert len(sel) == len(set(sel)) == 200
    assert json.loads((out / "eval.json").read_text())["models"]["convnet_bn"]["final_epoch_acc"]["mean"] > 0.1


@pytest.fixture(scope="module")
def small(demo_stores, tmp_path_factory):
    """A 500/100-image store of real CIFAR-10 (the demo's first images), converted from an .npz: the
    example's loop is what is tested, not the epoch's length."""
    from fastccfs.store import convert

    folder = tmp_path_factory.mktemp("small")
    train, test = demo_stores["train"], demo_stores["test"]
    np.savez(folder / "small.npz", x_train=np.asarray(train.images[:500]), y_train=train.labels[:500],
             x_test=np.asarray(test.images[:100]), y_test=test.labels[:100])
    convert(str(folder / "small.npz"), cache=folder / "cache", progress=False)
    return folder / "cache"


@pytest.mark.parametrize("backend", ["tensor", "torch", "ffcv", "dali"])
def test_example_trains_with_every_backend(small, backend, tmp_path):
    quick = quick_numba(tmp_path) if backend == "ffcv" else {}  # 24 → 16 s
    result = subprocess.run([sys.executable, str(REPO / "examples" / "train_with_fastccfs_loaders.py"), "small",
                             "--backend", backend, "--epochs", "1", "--cache", str(small)],
                            capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, **quick})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"backend {backend}: epoch 1" in result.stdout and "test accuracy" in result.stdout
