"""Built-in distillation (CDA) on CPU with a small teacher trained on the real CIFAR-10 subset."""
import numpy as np
import pytest
import torch

from conftest import run
from fastccfs import cda as distill_module
from fastccfs.cda import DistillConfig, distill, min_crop_scale, recover
from fastccfs.distilled import read_distilled
from fastccfs.errors import UserError
from fastccfs.loaders import make_loader
from fastccfs.models import create_model, load_checkpoint
from fastccfs.trainer import predict


@pytest.fixture(scope="module")
def teacher(own_run):
    return load_checkpoint(create_model("convnet_bn", 10), own_run / "teacher.pt")


@pytest.fixture(scope="module")
def recovered(teacher, demo_stores, tmp_path_factory):
    store = demo_stores["train"]
    out = tmp_path_factory.mktemp("distilled") / "cda"
    cfg = DistillConfig(iterations=150, batch_size=20, seed=3)
    distill(teacher, store.classes, 2, 32, store.mean, store.std, cfg, out, progress=False)
    return out


def test_crop_curriculum_falls_from_whole_image_to_008():
    cfg = DistillConfig(iterations=100, milestone=0.5)
    assert min_crop_scale(0, cfg) == 1.0
    assert min_crop_scale(25, cfg) == pytest.approx(0.54)
    assert min_crop_scale(50, cfg) == min_crop_scale(99, cfg) == 0.08


def test_bn_statistics_term_falls(teacher, demo_stores):
    store = demo_stores["train"]
    _, history = recover(teacher, torch.arange(10), 32, store.mean, store.std, DistillConfig(iterations=60), 0,
                         "cpu", progress=False)
    assert np.mean(history["bn"][-5:]) < 0.5 * np.mean(history["bn"][:5])
    assert history["ce"][-1] < history["ce"][0]


def test_teacher_recognises_the_recovered_images(recovered, teacher, demo_stores):
    store = demo_stores["train"]
    x, y = read_distilled(recovered, store.classes, 2, (32, 32, 3))
    loader = make_loader(store, augment=False, batch_size=100, device="cpu", indices=[], extra_images=x,
                         extra_labels=y)
    logits, labels, _ = predict(teacher, loader)
    assert (logits.argmax(1) == labels).mean() >= 0.9


def test_layout_reads_back_to_the_same_tensors(recovered, demo_stores):
    names = sorted(p.relative_to(recovered).as_posix() for p in recovered.rglob("*.png"))
    assert names[:3] == ["new000/class000_id000.png", "new000/class000_id001.png", "new001/class001_id000.png"]
    assert len(names) == 20
    saved = np.load(recovered / "distilled.npz")
    x, y = read_distilled(recovered, demo_stores["train"].classes, 2, (32, 32, 3))
    np.testing.assert_array_equal(x, saved["images"])
    np.testing.assert_array_equal(y, saved["labels"])
    assert not (recovered / ".parts").exists()


def test_interrupted_distillation_resumes_by_batch_to_the_same_images(teacher, demo_stores, tmp_path, monkeypatch,
                                                                     recovered):
    store = demo_stores["train"]
    cfg = DistillConfig(iterations=30, batch_size=10, seed=3)  # resuming does not depend on how long a batch runs
    calls = []
    real_recover = distill_module.recover

    def failing(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return real_recover(*args, **kwargs)

    monkeypatch.setattr(distill_module, "recover", failing)
    with pytest.raises(KeyboardInterrupt):
        distill(teacher, store.classes, 2, 32, store.mean, store.std, cfg, tmp_path / "d", progress=False)
    assert len(list((tmp_path / "d" / ".parts").glob("*.npz"))) == 1
    monkeypatch.setattr(distill_module, "recover", lambda *a, **k: (calls.append(2), real_recover(*a, **k))[1])
    distill(teacher, store.classes, 2, 32, store.mean, store.std, cfg, tmp_path / "d", progress=False)
    assert calls == [1, 2]  # only the unfinished batch was recomputed
    # Same seed, same batches → same images as an uninterrupted run with this batch size.
    again = tmp_path / "again"
    distill(teacher, store.classes, 2, 32, store.mean, store.std, cfg, again, progress=False)
    np.testing.assert_array_equal(np.load(again / "distilled.npz")["images"],
                                  np.load(tmp_path / "d" / "distilled.npz")["images"])
    other = DistillConfig(iterations=30, batch_size=10, seed=4)
    distill(teacher, store.classes, 2, 32, store.mean, store.std, other, tmp_path / "other", progress=False)
    assert not np.array_equal(np.load(tmp_path / "other" / "distilled.npz")["images"],
                              np.load(again / "distilled.npz")["images"])


def test_teacher_without_batchnorm_is_refused(demo_stores):
    store = demo_stores["train"]
    with pytest.raises(UserError, match="needs a teacher with BatchNorm layers"):
        recover(create_model("convnet", 10), torch.arange(2), 32, store.mean, store.std,
                DistillConfig(iterations=1), 0, "cpu", progress=False)


def test_run_distills_its_own_starting_set(own_run, cache, tmp_path):
    out = tmp_path / "cda-run"
    assert run(cache, out, "--teacher", own_run / "teacher.pt", "--scores", own_run / "scores.npy",
               "--init", "none", "--distill-iterations", "5", "--num-eval", "0") == 0
    start = np.load(out / "start.npz")
    assert start["distilled_images"].shape == (40, 32, 32, 3) and len(start["real_indices"]) == 0
    assert len(list((out / "distilled").rglob("*.png"))) == 40


def test_kd_example_trains_on_a_distilled_folder_through_the_loader(recovered, own_run, cache, demo_stores):
    """examples/kd_relabel_with_fastccfs_loader.py: the SRe²L/CDA evaluation loop, loader swapped in."""
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, str(REPO / "examples" / "kd_relabel_with_fastccfs_loader.py"),
                             str(recovered), "--dataset", "demo", "--cache", str(cache), "--teacher",
                             str(own_run / "teacher.pt"), "--teacher-model", "convnet_bn", "--model", "convnet_bn",
                             "--epochs", "3", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "20 distilled images, 3 epochs" in result.stdout and "test accuracy" in result.stdout


def test_distill_command_writes_the_cda_layout(own_run, cache, tmp_path, capsys):
    from fastccfs.cli import main

    out = tmp_path / "cli"
    assert main(["distill", "demo", "--ipc", "1", "--teacher", str(own_run / "teacher.pt"), "--teacher-model",
                 "convnet_bn", "--iterations", "3", "--cache", str(cache), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("new00*/*.png"))[:2] == ["class000_id000.png", "class001_id000.png"]
    assert np.load(out / "distilled.npz")["images"].shape == (10, 32, 32, 3)
    assert main(["distill", "demo", "--ipc", "0", "--cache", str(cache), "--out", str(tmp_path / "x")]) == 2
    assert "ipc must be a whole number ≥ 1; got 0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_distilled_images_are_never_reused_under_other_settings(teacher, demo_stores, tmp_path):
    store = demo_stores["train"]
    cfg = DistillConfig(iterations=2, batch_size=10, seed=3)
    distill(teacher, store.classes, 1, 32, store.mean, store.std, cfg, tmp_path / "d", progress=False)
    before = np.load(tmp_path / "d" / "distilled.npz")["images"]
    for other in (DistillConfig(iterations=3, batch_size=10, seed=3), DistillConfig(iterations=2, batch_size=10,
                                                                                      seed=3, lr=0.1)):
        with pytest.raises(UserError, match="distilled with other settings"):
            distill(teacher, store.classes, 1, 32, store.mean, store.std, other, tmp_path / "d", progress=False)
    with pytest.raises(UserError, match=r"other settings \(ipc\)"):
        distill(teacher, store.classes, 2, 32, store.mean, store.std, cfg, tmp_path / "d", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "distilled.npz")["images"], before)
    mine = tmp_path / "mine" / "new000"
    mine.mkdir(parents=True)
    (mine / "class000_id000.png").write_bytes(b"the user's")
    with pytest.raises(UserError, match="holds files this distillation did not write"):
        distill(teacher, store.classes, 1, 32, store.mean, store.std, cfg, tmp_path / "mine", progress=False)
    assert (mine / "class000_id000.png").read_bytes() == b"the user's"
