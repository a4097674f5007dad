"""Fidelity to the published CCFS: presets as its scripts set them, the teacher recipe of SRe²L's squeeze
step, the reference's exact selections (--semantics reference), and score files told by content."""
import random

import numpy as np
import pytest
import torch

from conftest import SCORES, need, run
from fastccfs.augment import pad_crop_flip_normalize, pad_crop_flip_normalize_torch, sample_pad_offsets
from fastccfs.config import resolve_run_config
from fastccfs.selection import coarse_to_fine, coarse_to_fine_reference, phase_budgets

# The reference repository's scripts/ccfs_*.sh, command by command: (IPC, epochs, α, lr, weight decay, batch).
PUBLISHED = {
    "cifar10": [(250, 500, 0.2), (500, 500, 0.1), (1000, 250, 0.3), (1500, 200, 0.3)],
    "cifar100": [(25, 500, 0.2), (50, 500, 0.1), (100, 250, 0.1), (150, 200, 0.2)],
    "tiny-imagenet": [(50, 100, 0.2), (100, 100, 0.2)],
}
# SRe²L's squeeze recipes: (augmentation, epochs, lr, weight decay, batch, warm-up epochs).
TEACHERS = {"cifar10": ("crop_pad", 200, 0.1, 5e-4, 128, 0), "cifar100": ("crop_pad", 200, 0.1, 5e-4, 128, 0),
            "tiny-imagenet": ("rrc", 200, 0.2, 1e-4, 256, 5)}


@pytest.mark.parametrize("dataset", PUBLISHED)
def test_presets_are_the_published_commands(dataset):
    for ipc, epochs, alpha in PUBLISHED[dataset]:
        cfg = resolve_run_config(dataset, ipc, None, {})
        assert (cfg.epochs, cfg.alpha, cfg.lr, cfg.weight_decay, cfg.momentum) == (epochs, alpha, 0.2, 1e-4, 0.9)
        assert (cfg.warmup_epochs, cfg.temperature, cfg.phases) == (5, 20.0, 3)
        assert cfg.batch_size == (64 if dataset == "tiny-imagenet" else None)  # None: the share rule
        assert (cfg.teacher_augment, cfg.teacher_epochs, cfg.teacher_lr, cfg.teacher_weight_decay,
                cfg.teacher_batch_size, cfg.teacher_warmup_epochs) == TEACHERS[dataset]


def test_every_preset_value_names_its_source():
    from fastccfs.config import configs_dir

    for name in ("cifar10.yaml", "cifar100.yaml", "tiny-imagenet.yaml"):
        lines = (configs_dir() / name).read_text().splitlines()
        for line in lines:  # each top-level setting, and each IPC line, cites its script line or table
            if line and not line.startswith(("#", " ")) or line.startswith("  ") and "{" in line:
                assert "#" in line and ("line" in line or ".py" in line or ".sh" in line), line


# ---------------------------------------------------------------------------- the teacher's augmentation


def test_padded_crop_equals_torchvision_random_crop(demo_stores):
    import torchvision.transforms.functional as TF

    store = demo_stores["train"]
    images = torch.from_numpy(np.array(store.images[:16]))
    gen = torch.Generator().manual_seed(0)
    offsets, flips = sample_pad_offsets(16, gen), torch.rand(16, generator=gen) < 0.5
    x = pad_crop_flip_normalize(images, torch.arange(16), offsets, flips, store.mean, store.std)  # numba
    twin = pad_crop_flip_normalize_torch(images, torch.arange(16), offsets, flips, store.mean, store.std)
    assert x.shape == twin.shape == (16, 3, 32, 32)
    torch.testing.assert_close(x, twin, atol=1e-5, rtol=1e-5)
    for b in range(16):
        img = TF.pad(images[b].permute(2, 0, 1), [4])  # zeros around, as RandomCrop(32, padding=4)
        img = TF.crop(img, int(offsets[b, 0]), int(offsets[b, 1]), 32, 32)
        img = TF.hflip(img) if flips[b] else img
        expected = TF.normalize(img.float() / 255, store.mean, store.std)
        torch.testing.assert_close(x[b], expected, atol=1e-5, rtol=1e-5)


def test_padded_crop_offsets_are_uniform_over_the_padding():
    offsets = sample_pad_offsets(90_000, torch.Generator().manual_seed(1))
    counts = torch.bincount(offsets.flatten(), minlength=9).float()
    assert offsets.min() == 0 and offsets.max() == 8 and (counts / counts.mean() - 1).abs().max() < 0.05


def test_loaders_train_the_teacher_with_padded_crops(demo_stores):
    from fastccfs.loaders import make_loader

    store = demo_stores["train"]
    for backend in ("tensor", "torch"):
        loader = make_loader(store, backend=backend, augment="crop_pad", batch_size=3000, device="cpu", seed=0)
        x, y, idx = next(iter(loader))
        pad_value = -torch.tensor(store.mean) / torch.tensor(store.std)
        # Some images are shifted: a border row or column holds the padding's value in every channel.
        border = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
        padded = (border - pad_value[None, :, None]).abs().amax(dim=1) < 1e-4
        assert 0.5 < padded.any(dim=1).float().mean() < 1.0, backend
        assert sorted(idx.tolist()) == list(range(3000))


# --------------------------------------------------------------------------------- --semantics reference


def reference_step(pred, labels, scores, selected_idx, k, teacher_pred, misclassified=True, method="simple",
                   seed=0):
    """The reference's selection_score, transcribed as the oracle (forgetting: reverse=True)."""
    true_labels = list(labels)
    target_indices = np.flatnonzero((pred != labels) if misclassified else (pred == labels)).tolist()
    teacher_correct_idx = np.flatnonzero(teacher_pred == labels).tolist()
    target_indices = list(set(teacher_correct_idx) & set(target_indices) - set(selected_idx))
    per_class = [[] for _ in range(int(labels.max()) + 1)]
    for idx in target_indices:
        per_class[true_labels[idx]].append(idx)
    rng, selection = random.Random(seed), []
    for c in range(len(per_class)):
        if method == "random":
            selection += rng.sample(per_class[c], min(k, len(per_class[c])))
        elif method == "hard":
            selection += sorted(per_class[c], key=lambda i: scores[i], reverse=True)[:k]
        else:
            selection += sorted(per_class[c], key=lambda i: scores[i], reverse=False)[:k]
    return selection


def test_reference_ties_follow_set_order_not_index_order():
    # {1, 8} as a CPython set iterates 8 first (table of 8 slots: 8 lands in slot 0), so the reference,
    # sorting stably by equal scores, takes 8 where fastccfs takes 1.
    assert list({1, 8}) == [8, 1]
    labels, teacher, scores = np.zeros(10, np.int64), np.zeros(10, np.int64), np.zeros(10)
    pred = np.where(np.isin(np.arange(10), [1, 8]), 1, 0)  # the filter misclassifies samples 1 and 8
    ref = coarse_to_fine_reference(pred, labels, scores, [], 1, teacher)
    ours = coarse_to_fine(pred, labels, scores, None, 1, teacher)
    assert ref.indices.tolist() == [8] and ours.indices.tolist() == [1]


@pytest.mark.parametrize("misclassified", [True, False])
@pytest.mark.parametrize("method", ["simple", "hard", "random"])
def test_reference_semantics_replays_the_reference_on_random_cases(misclassified, method):
    rng = np.random.default_rng(7)
    for trial in range(6):
        n, classes = 5000, 10
        labels = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.3, rng.integers(0, classes, n), labels)
        teacher = np.where(rng.random(n) < 0.1, rng.integers(0, classes, n), labels)
        scores = rng.integers(0, 6, n) * 0.2  # few values: ties everywhere, as in the published scores
        selected = rng.choice(n, 400, replace=False).tolist()
        k = 40 if trial < 3 else 200  # the larger k leaves classes short: the reference gives fewer
        expected = reference_step(pred, labels, scores, selected, k, teacher, misclassified, method, seed=trial)
        got = coarse_to_fine(pred, labels, scores, selected, k, teacher,
                             coarse="misclassified" if misclassified else "classified", fine=method, seed=trial,
                             num_classes=classes, semantics="reference")
        assert got.indices.tolist() == expected and got.filled.sum() == 0
        if k == 200 and misclassified:
            assert len(expected) < k * classes  # shortfall: fewer, no fill, no error


def test_reference_distilled_count_and_file_order(tmp_path, demo_stores):
    from PIL import Image

    from fastccfs.distilled import read_distilled

    assert phase_budgets(90, 0.7, 3, "reference") == (62, [10, 9, 9])  # int(90 · 0.7) = int(62.99…) = 62
    assert phase_budgets(90, 0.7, 3) == (63, [9, 9, 9])
    assert phase_budgets(500, 0.1, 3, "reference") == phase_budgets(500, 0.1, 3)  # the published settings agree
    store = demo_stores["train"]
    for c in range(10):
        folder = tmp_path / f"new{c:03d}"
        folder.mkdir()
        for n, i in enumerate((100, 101, 1000)):  # string order: id100, id1000, id101
            Image.fromarray(np.full((32, 32, 3), i % 251, np.uint8)).save(folder / f"class{c:03d}_id{i:03d}.png")
    numeric, _ = read_distilled(tmp_path, store.classes, 2, (32, 32, 3))
    string, _ = read_distilled(tmp_path, store.classes, 2, (32, 32, 3), name_order="string")
    assert numeric[:2, 0, 0, 0].tolist() == [100, 101] and string[:2, 0, 0, 0].tolist() == [100, 1000 % 251]


def test_reference_semantics_run(own_run, cache, tmp_path):
    import json

    scores = need(SCORES / "forgetting_CIFAR10.npy")
    out = tmp_path / "ref"
    assert run(cache, out, "--teacher", own_run / "teacher.pt", "--scores", scores, "--semantics", "reference",
               "--alpha", "0.7", "--ipc", "90", "--num-eval", "0", "--no-filter-test", "--epochs", "1") == 0
    phases = json.loads((out / "phases.json").read_text())
    assert [p["k_per_class"] for p in phases] == [10, 9, 9]  # int(90 · 0.7) = 62 random real to start
    assert all(p["inferred"] == 3000 and p["filled"] == 0 for p in phases)  # the reference predicts all
    sel = json.loads((out / "selected_indices.json").read_text())
    assert len(sel["idx_selected"]) == 620 + sum(10 * p["k_per_class"] - p["short"] for p in phases)


# ------------------------------------------------------------------------------------------ score files


def test_score_files_are_told_by_content(own_run, cache, tmp_path, capsys):
    from fastccfs.scores import score_kind

    assert score_kind(own_run / "forgetting.npz") == "forgetting"
    assert score_kind(need(SCORES / "cscores_CIFAR10.npz")) == "cscore"
    assert score_kind(SCORES / "forgetting_CIFAR10.npy") == "forgetting"
    teacher = own_run / "teacher.pt"
    assert run(cache, tmp_path / "own", "--teacher", teacher, "--scores", own_run / "forgetting.npz",
               "--num-eval", "0") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "own" / "scores.npy"),
                                  np.load(own_run / "forgetting.npz")["scores"])
    assert run(cache, tmp_path / "bad", "--teacher", teacher, "--scores", own_run / "forgetting.npz",
               "--score", "cscore", "--num-eval", "0") == 2
    assert "holds forgetting scores but --score is cscore: pass --score forgetting" in capsys.readouterr().err
