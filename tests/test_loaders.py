"""The loader protocol on real data: coverage, determinism, pixel exactness, augmentation statistics."""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from fastccfs import augment
from fastccfs.loaders import make_loader
from fastccfs.loaders.order import epoch_order


def denormalize(x, store):
    mean = torch.tensor(store.mean)[None, :, None, None]
    std = torch.tensor(store.std)[None, :, None, None]
    return ((x.float() * std + mean) * 255).permute(0, 2, 3, 1)  # NHWC in pixel units


@pytest.fixture(scope="module")
def demo(demo_stores):
    return demo_stores["train"]


@pytest.mark.parametrize("backend", ["tensor", "torch"])
@pytest.mark.parametrize("augmented", [True, False])
def test_one_epoch_yields_every_index_once_with_its_label(demo, backend, augmented):
    loader = make_loader(demo, backend=backend, batch_size=256, augment=augmented, device="cpu",
                         **({"num_workers": 1} if backend == "torch" else {}))
    ids, labels = [], []
    for x, y, idx in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert x.is_contiguous()  # as a DataLoader gives it
        ids.append(idx)
        labels.append(y)
    ids, labels = torch.cat(ids).numpy(), torch.cat(labels).numpy()
    assert sorted(ids) == list(range(len(demo)))
    np.testing.assert_array_equal(labels, demo.labels[ids])
    assert len(loader) == math.ceil(len(demo) / 256)
    if not augmented:
        np.testing.assert_array_equal(ids, np.arange(len(demo)))  # evaluation keeps the stored order


@pytest.mark.parametrize("backend", ["tensor", "torch"])
def test_evaluation_mode_returns_the_stored_pixels(demo, backend):
    loader = make_loader(demo, backend=backend, batch_size=500, augment=False, device="cpu",
                         **({"num_workers": 0} if backend == "torch" else {}))
    x, y, idx = next(iter(loader))
    np.testing.assert_allclose(denormalize(x, demo).numpy(), demo.images[:500].astype(np.float32), atol=2e-3)


def test_same_seed_same_batches_other_seed_other_batches(demo):
    def epochs(seed):
        loader = make_loader(demo, batch_size=128, device="cpu", seed=seed)
        return [[(x.clone(), idx.clone()) for x, _, idx in loader] for _ in range(2)]

    a, b, c = epochs(3), epochs(3), epochs(4)
    for ea, eb in zip(a, b):
        for (xa, ia), (xb, ib) in zip(ea, eb):
            assert torch.equal(ia, ib) and torch.equal(xa, xb)
    assert not torch.equal(a[0][0][1], a[1][0][1]), "each epoch reshuffles"
    assert not torch.equal(a[0][0][1], c[0][0][1]), "another seed gives another order"


def test_set_epoch_replays_an_epoch(demo):
    loader = make_loader(demo, batch_size=300, device="cpu", seed=1)
    first = [idx for _, _, idx in loader]
    _ = [idx for _, _, idx in loader]
    loader.set_epoch(0)
    assert all(torch.equal(p, q) for p, q in zip(first, [idx for _, _, idx in loader]))


def test_kernel_equals_torchvision_resized_crop_and_the_torch_twin(demo):
    images = torch.from_numpy(np.array(demo.images[:64]))
    gen = torch.Generator().manual_seed(0)
    rows = torch.arange(64)
    boxes = augment.sample_crop_boxes(64, 32, 32, gen)
    flips = augment.sample_flips(64, gen)
    fast = augment.crop_flip_normalize(images, rows, boxes, flips, demo.mean, demo.std)
    twin = augment.crop_flip_normalize_torch(images, rows, boxes, flips, demo.mean, demo.std)
    torch.testing.assert_close(fast, twin, atol=1e-4, rtol=0)
    normalize = T.Normalize(demo.mean, demo.std)
    for k in range(64):
        top, left, h, w = boxes[k].tolist()
        ref = TF.resized_crop(images[k].permute(2, 0, 1).float(), top, left, h, w, [32, 32], antialias=False)
        ref = normalize((TF.hflip(ref) if flips[k] else ref) / 255)
        torch.testing.assert_close(fast[k], ref, atol=1e-4, rtol=0)


def test_crop_boxes_follow_torchvision_distribution():
    """Area fraction and aspect ratio of our batched sampler vs torchvision's get_params (64 px)."""
    n = 8000  # quantiles to ±0.006 (area) and ±0.004 (log aspect), well inside the tolerances below
    gen = torch.Generator().manual_seed(0)
    ours = augment.sample_crop_boxes(n, 64, 64, gen).double()
    torch.manual_seed(0)
    img = torch.zeros(3, 64, 64)
    ref = torch.tensor([T.RandomResizedCrop.get_params(img, augment.SCALE, augment.RATIO) for _ in range(n)]).double()
    for boxes in (ours, ref):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 64).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= 64).all()
    area = lambda b: (b[:, 2] * b[:, 3] / 64**2).numpy()  # noqa: E731
    aspect = lambda b: np.log((b[:, 3] / b[:, 2]).numpy())  # noqa: E731
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(area(ours), qs), np.quantile(area(ref), qs), atol=0.02)
    np.testing.assert_allclose(np.quantile(aspect(ours), qs), np.quantile(aspect(ref), qs), atol=0.03)
    # Area ~ U(0.08, 1) where the box fits: the median sits near 0.54 before the fit's rejection.
    assert 0.45 < np.median(area(ours)) < 0.6


@pytest.mark.parametrize("backend", ["tensor", "torch"])
def test_flip_rate_is_one_half_and_crops_cover_the_image(demo, backend):
    """With scale = ratio = 1 the crop is the whole image, so each output is the image or its mirror."""
    loader = make_loader(demo, backend=backend, batch_size=500, device="cpu", scale=(1.0, 1.0), ratio=(1.0, 1.0),
                         **({"num_workers": 1} if backend == "torch" else {}))
    flipped = total = 0
    for x, _, idx in loader:
        pixels = denormalize(x, demo).numpy()
        orig = demo.images[idx.numpy()].astype(np.float32)
        same = np.abs(pixels - orig).max(axis=(1, 2, 3)) < 1e-2
        mirror = np.abs(pixels - orig[:, :, ::-1]).max(axis=(1, 2, 3)) < 1e-2
        assert (same | mirror).all()
        flipped += int((mirror & ~same).sum())
        total += int((~(same & mirror)).sum())
    rate = flipped / total
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / total), rate


def test_augmented_batches_vary_in_crop_area(demo):
    """The loader really crops: the mean absolute difference to the plain image grows with zoom."""
    loader = make_loader(demo, batch_size=1000, device="cpu", seed=0)
    x, _, idx = next(iter(loader))
    changed = (denormalize(x, demo).numpy() - demo.images[idx.numpy()]).__abs__().mean(axis=(1, 2, 3))
    assert (changed > 1).mean() > 0.8


def test_synthetic_set_serves_real_indices_and_distilled_images(demo):
    gen = np.random.default_rng(0)
    real = np.sort(gen.choice(len(demo), 100, replace=False))
    distilled = gen.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    dlabels = np.arange(20) % 10
    loader = make_loader(demo, batch_size=32, device="cpu", indices=real, extra_images=distilled,
                         extra_labels=dlabels)
    seen = torch.cat([idx for _, _, idx in loader]).numpy()
    assert sorted(seen) == sorted(list(real) + list(-1 - np.arange(20)))
    evaluation = make_loader(demo, batch_size=200, augment=False, device="cpu", indices=real,
                             extra_images=torch.from_numpy(distilled).permute(0, 3, 1, 2), extra_labels=dlabels)
    x, y, idx = next(iter(evaluation))
    assert idx[:100].tolist() == real.tolist() and idx[100:].tolist() == (-1 - np.arange(20)).tolist()
    np.testing.assert_array_equal(y[100:].numpy(), dlabels)
    np.testing.assert_array_equal(y[:100].numpy(), demo.labels[real])
    np.testing.assert_allclose(denormalize(x[100:], demo).numpy(), distilled.astype(np.float32), atol=2e-3)


def test_synthetic_set_refuses_mismatched_images(demo):
    from fastccfs.errors import UserError

    with pytest.raises(UserError, match=r"extra images are \(16, 16\)"):
        make_loader(demo, device="cpu", indices=[], extra_images=np.zeros((2, 16, 16, 3), np.uint8),
                    extra_labels=[0, 1])
    with pytest.raises(UserError, match="indices must lie in"):
        make_loader(demo, device="cpu", indices=[0, len(demo)])


def test_bf16_output(demo):
    x, _, _ = next(iter(make_loader(demo, batch_size=8, device="cpu", dtype=torch.bfloat16,
                                    memory_format=torch.channels_last)))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_kernels_write_either_layout_with_the_same_values(demo):
    """The tensor backend's kernels write the asked layout themselves (no copy after them): same pixels."""
    for mode in ("rrc", "crop_pad", False):
        batches = {fmt: next(iter(make_loader(demo, batch_size=64, augment=mode, device="cpu", seed=3,
                                              memory_format=fmt)))[0]
                   for fmt in (torch.contiguous_format, torch.channels_last)}
        assert batches[torch.contiguous_format].is_contiguous()
        assert batches[torch.channels_last].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batches[torch.contiguous_format], batches[torch.channels_last]), mode


def test_ranks_share_one_order_and_split_it(demo):
    n = 1003
    shares = [epoch_order(n, 5, 2, True, rank, 4) for rank in range(4)]
    assert sorted(torch.cat(shares).tolist()) == list(range(n))  # evaluation: each sample once
    padded = [epoch_order(n, 5, 2, True, rank, 4, pad=True) for rank in range(4)]
    assert {len(s) for s in padded} == {251} and set(torch.cat(padded).tolist()) == set(range(n))
    with pytest.raises(ValueError):
        epoch_order(n, 0, 0, True, 4, 4)
    loaders = [make_loader(demo, batch_size=1000, augment=False, device="cpu", rank=r, world_size=2) for r in (0, 1)]
    ids = [torch.cat([idx for _, _, idx in lo]) for lo in loaders]
    assert sorted(torch.cat(ids).tolist()) == list(range(len(demo)))


def test_make_loader_by_name_and_unknown_backend(demo_stores, cache):
    from fastccfs.errors import UserError

    loader = make_loader("demo", split="test", cache=cache, augment=False, batch_size=600, device="cpu")
    _, y, _ = next(iter(loader))
    np.testing.assert_array_equal(y.numpy(), demo_stores["test"].labels)
    with pytest.raises(UserError, match="unknown loader backend 'dali2'"):
        make_loader(demo_stores["train"], backend="dali2")
    with pytest.raises(UserError, match="run `fastccfs convert nope"):
        make_loader("nope", cache=cache)


def test_torch_backend_crops_are_fixed_by_seed_and_epoch(demo):
    """The transforms run in DataLoader workers: their randomness comes from (seed, epoch, sample) alone."""
    def epoch_batches(loader):
        return [x for x, _, _ in loader]

    subset = np.arange(0, 3000, 10)
    a = make_loader(demo, backend="torch", batch_size=100, device="cpu", seed=3, num_workers=2, indices=subset)
    b = make_loader(demo, backend="torch", batch_size=100, device="cpu", seed=3, num_workers=0, indices=subset)
    first, other = epoch_batches(a), epoch_batches(b)
    assert all(torch.equal(x, y) for x, y in zip(first, other))  # workers or not: the same crops
    second = epoch_batches(a)
    assert not torch.equal(first[0], second[0])  # a new epoch, new crops
    a.set_epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(first, epoch_batches(a)))  # replayed
    c = make_loader(demo, backend="torch", batch_size=100, device="cpu", seed=4, num_workers=0, indices=subset)
    assert not torch.equal(first[0], epoch_batches(c)[0])


def test_the_loaders_silent_footguns_and_misuse_are_one_line(demo_stores):
    """Issue 26: a set's real part is never the whole split by accident, a mask is a mask, and every misuse is
    one line naming the argument."""
    from fastccfs.errors import UserError

    store = demo_stores["train"]
    extra = np.zeros((4, 32, 32, 3), np.uint8)
    cases = [
        (dict(extra_images=extra, extra_labels=[0, 1, 2, 3]), "extra_images= without indices= would serve all 3000"),
        (dict(indices=[], extra_images=extra), "extra_images= needs extra_labels="),
        (dict(indices=[], extra_images=extra, extra_labels=np.eye(10)[:4]), "hold 10 values per image (soft labels)"),
        (dict(indices=[0.5, 2.0]), "indices= must be integer store positions (or a boolean mask), got float64"),
        (dict(indices=[3000]), "indices must lie in [0, 3000); got 3000..3000"),
        (dict(indices=np.ones(10, bool)), "a boolean mask as indices= must have one entry per store sample (3000)"),
        (dict(batch_size=0), "batch_size must be a whole number ≥ 1; got 0"),
        (dict(batch_size=-1), "batch_size must be a whole number ≥ 1; got -1"),
        (dict(rank=3, world_size=3), "rank must be in [0, world_size)"),
        (dict(flip=2.0), "flip is a probability in [0, 1]; got 2.0"),
        (dict(scale=(1.0, 0.08)), "scale must be (low, high) with 0 < low ≤ high ≤ 1; got (1.0, 0.08)"),
        (dict(split="val"), "split must be train or test; got 'val'"),
    ]
    for kwargs, message in cases:
        source = store.path.parent if "split" in kwargs else store  # a folder of splits, or the store itself
        with pytest.raises(UserError) as e:
            make_loader(source, device="cpu", **kwargs)
        assert message in str(e.value) and "\n" not in str(e.value), (kwargs, str(e.value))
    mask = np.zeros(len(store), bool)
    mask[[5, 17, 2999]] = True
    loader = make_loader(store, indices=mask, augment=False, batch_size=2, device="cpu")
    assert sorted(int(i) for _, _, idx in loader for i in idx) == [5, 17, 2999]
    assert repr(store).startswith("Store(") and len(repr(store)) < 200


def test_a_distilled_folder_in_the_sre2l_layout_converts_train_only_and_is_served(demo_stores, tmp_path, capsys):
    """Issue 26: `fastccfs convert` of an SRe²L/CDA folder (class folders at the top, no val/ or test/)."""
    from PIL import Image

    from fastccfs.cli import main
    from fastccfs.store import convert

    images = demo_stores["train"].images
    for c in range(3):
        (tmp_path / "cda" / f"new{c:03d}").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(images[10 * c + i]).save(tmp_path / "cda" / f"new{c:03d}" / f"class{c:03d}_id{i:03d}.png")
    stores = convert(tmp_path / "cda", cache=tmp_path / "cache", progress=False)
    assert "has no val/ or test/ folder: its test split is empty" in capsys.readouterr().err
    assert len(stores["test"]) == 0 and stores["train"].classes == ["new000", "new001", "new002"]
    np.testing.assert_array_equal(stores["train"].images[[0, 2, 4]], images[[0, 10, 20]])
    loader = make_loader(stores["train"], augment=False, batch_size=4, device="cpu")
    assert [y.tolist() for _, y, _ in loader] == [[0, 0, 1, 1], [2, 2]] and len(loader.dataset) == 6
    assert main(["run", str(tmp_path / "cda"), "--ipc", "2", "--phases", "1", "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "the test split of" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_learned_float_set_with_soft_labels_and_dsa_trains_and_its_images_get_gradients(demo_stores):
    """Issue 26: the DC/DSA/DM/MTT case — float images that require grad, soft labels, DSA augmentation —
    through the loader with no store; the gradient of the training loss reaches the images."""
    import fastccfs
    from fastccfs.dsa import dsa
    from fastccfs.models import create_model

    real = torch.from_numpy(np.array(demo_stores["train"].images[:20])).permute(0, 3, 1, 2).float() / 255
    images = real.clone().requires_grad_(True)  # learned images, in [0, 1] pixels
    soft = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    loader = fastccfs.set_loader(images, soft, batch_size=8, augment="dsa", device="cpu", seed=1,
                                 mean=demo_stores["train"].mean, std=demo_stores["train"].std,
                                 weights=torch.linspace(0.5, 1.5, 20))
    net = create_model("convnet_bn", 10)
    total, seen = 0.0, []
    for x, y, idx, w in loader:
        assert x.shape[1:] == (3, 32, 32) and y.shape == (len(x), 10) and x.requires_grad
        loss = (w * torch.sum(-y * torch.log_softmax(net(x), 1), 1)).mean()
        total = total + loss
        seen += idx.tolist()
    total.backward()
    assert sorted(seen) == sorted(-1 - j for j in range(20)) and len(loader) == 3 and len(loader.dataset) == 20
    assert images.grad is not None and images.grad.abs().sum() > 0 and torch.isfinite(images.grad).all()
    # Each DSA transformation alone is differentiable and changes the batch; the same generator state
    # replays the same augmentation (DSA's Siamese use: real and synthetic batches augmented alike).
    for name in ("color", "crop", "cutout", "flip", "scale", "rotate"):
        x = real[:4].clone().requires_grad_(True)
        out = dsa(x, name, torch.Generator().manual_seed(3), siamese=True)
        again = dsa(real[:4], name, torch.Generator().manual_seed(3), siamese=True)
        assert torch.equal(out.detach(), again) and out.shape == x.shape, name
        out.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, name
    from fastccfs.errors import UserError

    with pytest.raises(UserError, match="unknown DSA transformation"):
        dsa(real[:2], "color_blur")
    top = fastccfs.set_loader(real, (soft.topk(2, 1).values, soft.topk(2, 1).indices), num_classes=10,
                              batch_size=20, device="cpu", with_indices=False)
    x, y = next(iter(top))
    assert y.shape == (20, 10) and int((y > -1e29).sum()) == 40
    hard = fastccfs.make_loader(None, extra_images=demo_stores["train"].images[:6], extra_labels=np.arange(6),
                                device="cpu", batch_size=6, shuffle=False)
    x, y, idx = next(iter(hard))
    assert x.dtype == torch.float32 and float(x.max()) <= 1 and y.tolist() == list(range(6))


def test_class_images_draws_n_distinct_real_images_of_a_class(demo_stores):
    """Issue 26: DC/DM/MTT's get_images(c, n), served from the store held on the device."""
    from fastccfs.augment import _affine
    from fastccfs.errors import UserError
    from fastccfs.loaders import ClassImages

    store = demo_stores["train"]
    sampler = ClassImages(store, device="cpu", seed=0)
    x = sampler.get_images(3, 16)
    assert x.shape == (16, 3, 32, 32) and x.is_contiguous()
    scale, shift = _affine(store.mean, store.std)
    pixels = ((x.permute(0, 2, 3, 1).numpy() - shift) / scale).round().astype(np.uint8)
    rows = [int(np.flatnonzero((store.images == p).all(axis=(1, 2, 3)))[0]) for p in pixels]
    assert len(set(rows)) == 16 and set(store.labels[rows]) == {3}
    assert not torch.equal(x, sampler.get_images(3, 16))  # a new draw each call
    assert torch.equal(ClassImages(store, seed=0).get_images(3, 16), x)  # the seed replays it
    assert len(sampler.get_images(0, 10_000)) == 300  # a class's every image when it has fewer than n
    with pytest.raises(UserError, match="needs a class in"):
        sampler.get_images(10, 1)


def test_normalisation_is_the_users_choice(demo_stores):
    """Issue 26: normalize=False gives pixels in [0, 1]; mean=/std= replace the store's statistics."""
    from fastccfs.errors import UserError

    store = demo_stores["train"]
    raw = torch.from_numpy(np.array(store.images[:8])).permute(0, 3, 1, 2).float() / 255
    for backend in ("tensor", "torch"):
        x, _, _ = next(iter(make_loader(store, backend=backend, indices=np.arange(8), normalize=False, augment=False,
                                        device="cpu",
                                        batch_size=8, **({"num_workers": 0} if backend == "torch" else {}))))
        torch.testing.assert_close(x, raw, atol=1e-6, rtol=0)
        x, _, _ = next(iter(make_loader(store, backend=backend, indices=np.arange(8), mean=(0.5,) * 3, std=(0.25,) * 3,
                                        augment=False, device="cpu", batch_size=8, **({"num_workers": 0} if backend == "torch" else {}))))
        torch.testing.assert_close(x, (raw - 0.5) / 0.25, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="normalize=False gives pixels in"):
        make_loader(store, normalize=False, mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(UserError, match="mean= and std= go together"):
        make_loader(store, mean=(0.5,) * 3)
