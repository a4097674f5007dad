"""`fastccfs run` end to end on the bundled real CIFAR-10 subset: outputs, determinism, resume, baselines."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, REPO, SCORES, need, run
from fastccfs.cli import main
from fastccfs.distilled import read_distilled
from fastccfs.errors import UserError

def selected(out):
    return np.array(json.loads((out / "selected_indices.json").read_text())["idx_selected"])


def test_run_writes_everything_a_researcher_needs(own_run, demo_stores):
    labels = demo_stores["train"].labels
    sel = json.loads((own_run / "selected_indices.json").read_text())
    assert sel["ipc"] == 20 and sel["alpha"] == 0.2
    idx = np.array(sel["idx_selected"])
    # --init random puts 4 real images per class in place of the distilled part; phases add 6, 5, 5.
    assert np.bincount(labels[idx], minlength=10).tolist() == [20] * 10 and len(set(idx)) == 200
    phases = json.loads((own_run / "phases.json").read_text())
    assert [p["k_per_class"] for p in phases] == [6, 5, 5]
    assert [p["set_size"] for p in phases] == [40, 100, 150]
    for p in phases:
        assert set(p["seconds"]) >= {"train", "inference", "selection"}
        assert 0 <= p["filter_test_acc"] <= 1
        # --inference needed (the default): only what the fine stage can reach, no full-split accuracy.
        assert p["selected"] <= p["inferred_misclassified"] <= p["inferred"] < 3000 and "filter_train_acc" not in p
    forgetting = np.load(own_run / "forgetting.npz")["scores"]
    assert forgetting.shape == (3000,) and forgetting.max() <= 2  # 2 teacher epochs
    np.testing.assert_array_equal(np.load(own_run / "scores.npy"), forgetting)
    picks = np.load(own_run / "phase_2.npz")["indices"]
    assert phases[1]["difficulty"]["median"] == float(np.median(forgetting[picks]))
    ev = json.loads((own_run / "eval.json").read_text())
    result = ev["models"]["convnet_bn"]
    assert result["runs"] == 1 and 0 < result["final_epoch_acc"]["mean"] <= result["max_last_20pct_acc"]["mean"]
    assert "max test accuracy over epochs > 0.8·epochs" in ev["labels"]["max_last_20pct_acc"]
    synthetic = np.load(own_run / "synthetic_set.npz")
    np.testing.assert_array_equal(synthetic["real_indices"], idx)
    np.testing.assert_array_equal(synthetic["real_labels"], labels[idx])


def test_export_never_replaces_what_it_did_not_write(own_run, cache, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("the user's")
    for out in (target, tmp_path / "mine" / "notes.txt", tmp_path):
        assert main(["export", str(own_run), "--out", str(out), "--cache", str(cache)]) == 2
        assert "is not an empty folder" in capsys.readouterr().err
    assert (target / "notes.txt").read_text() == "the user's"


def test_export_writes_an_imagefolder_of_the_set(own_run, cache, tmp_path, demo_stores):
    assert main(["export", str(own_run), "--out", str(tmp_path / "png"), "--cache", str(cache)]) == 0
    files = sorted((tmp_path / "png").rglob("*.png"))
    assert len(files) == 200 and len(list((tmp_path / "png" / "cat").glob("real_*.png"))) == 20
    first = files[0]
    index = int(first.stem.split("_")[1])
    np.testing.assert_array_equal(np.asarray(Image.open(first)), demo_stores["train"].images[index])


@pytest.fixture(scope="module")
def published_args(own_run):
    return ["--teacher", str(own_run / "teacher.pt"), "--scores", str(need(SCORES / "forgetting_CIFAR10.npy")),
            "--num-eval", "0"]


@pytest.fixture(scope="module")
def published_run(tmp_path_factory, cache, published_args):
    out = tmp_path_factory.mktemp("runs") / "published"
    assert run(cache, out, *published_args) == 0
    return out


def test_same_seed_same_selection_other_seed_other_selection(published_run, published_args, cache, tmp_path):
    assert run(cache, tmp_path / "again", *published_args) == 0
    np.testing.assert_array_equal(selected(tmp_path / "again"), selected(published_run))
    assert run(cache, tmp_path / "seed1", *published_args, "--seed", "1") == 0
    assert not np.array_equal(selected(tmp_path / "seed1"), selected(published_run))


def test_inference_of_every_sample_picks_the_same_set(published_run, published_args, cache, tmp_path):
    out = tmp_path / "all"
    assert run(cache, out, *published_args, "--inference", "all") == 0
    np.testing.assert_array_equal(selected(out), selected(published_run))
    lazy, full = (json.loads((d / "phases.json").read_text()) for d in (published_run, out))
    for a, b in zip(lazy, full):
        assert b["inferred"] == 3000 and b["misclassified"] == round((1 - b["filter_train_acc"]) * 3000)
        assert a["inferred"] < b["inferred"] and a["inferred_misclassified"] <= b["misclassified"]
        assert a["filter_test_acc"] == b["filter_test_acc"]  # the same filter
    assert run(cache, tmp_path / "bad", *published_args, "--inference", "some") == 2


def test_published_scores_are_the_difficulties(published_run, demo_stores):
    forgetting = np.load(SCORES / "forgetting_CIFAR10.npy")
    np.testing.assert_array_equal(np.load(published_run / "scores.npy"),
                                  forgetting[demo_stores["train"].parent_indices])


def test_killed_run_resumes_to_the_same_selection(published_run, published_args, cache, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fastccfs", "run", "demo", "--cache", str(cache), "--out", str(out), *FAST,
           *published_args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "phase_1.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "phase_1.json").exists() and not (out / "selected_indices.json").exists()
    assert run(cache, out, *published_args) == 0
    np.testing.assert_array_equal(selected(out), selected(published_run))


def test_finished_run_is_not_recomputed(published_run, published_args, cache, monkeypatch):
    """A finished run read again: no stage entered, no kernel compiled, no model run, no report rebuilt,
    no file rewritten but the log, which says so."""
    import fastccfs.context
    import fastccfs.kernels
    import fastccfs.pipeline
    import fastccfs.report
    import fastccfs.teacher

    work = []
    for module, name in ((fastccfs.kernels, "warm_up"), (fastccfs.context, "fit"), (fastccfs.teacher, "fit"),
                         (fastccfs.teacher, "predict"), (fastccfs.pipeline, "stage_teacher"),
                         (fastccfs.report, "build_report")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: work.append(_n))
    marks = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in published_run.rglob("*") if p.name != "run.log"}
    assert run(cache, published_run, *published_args) == 0
    assert not work
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in published_run.rglob("*") if p.name != "run.log"} == marks
    assert "finished earlier; nothing recomputed" in (published_run / "run.log").read_text().splitlines()[-1]


def test_other_settings_in_the_same_run_dir_are_refused(published_run, published_args, cache, capsys):
    assert run(cache, published_run, *published_args, "--fine", "hard") == 2
    assert "holds a run with other settings (fine)" in capsys.readouterr().err


@pytest.mark.parametrize("method,extra", [("random", []), ("coreset", []), ("window", ["--beta", "0.5"]),
                                          ("full", [])])
def test_baselines(method, extra, published_args, cache, tmp_path, demo_stores):
    out = tmp_path / method
    assert run(cache, out, *published_args, "--method", method, *extra) == 0
    idx = selected(out)
    labels = demo_stores["train"].labels
    if method == "full":
        assert sorted(idx) == list(range(3000))
        return
    assert np.bincount(labels[idx], minlength=10).tolist() == [20] * 10
    if method == "coreset":
        scores = np.load(out / "scores.npy")
        cat = idx[labels[idx] == 3]
        assert scores[cat].min() >= np.sort(scores[labels == 3])[-20]


def test_alpha_zero_starts_without_a_filter(published_args, cache, tmp_path):
    out = tmp_path / "alpha0"
    assert run(cache, out, *published_args, "--alpha", "0", "--init", "none") == 0
    first = json.loads((out / "phase_1.json").read_text())
    assert first["set_size"] == 0 and first["coarse"] == "all" and "no filter" in first["note"]
    assert len(selected(out)) == 200


def test_logits_score_and_hard_fine(published_args, cache, tmp_path):
    out = tmp_path / "logits"
    assert run(cache, out, "--teacher", published_args[1], "--score", "logits", "--fine", "hard",
               "--num-eval", "0") == 0
    assert not (out / "scores.npy").exists() and len(selected(out)) == 200


def test_bad_run_inputs(cache, tmp_path, capsys, published_args):
    assert run(cache, tmp_path / "a", "--teacher", published_args[1], "--scores",
               str(SCORES / "forgetting_Tiny.npy"), "--num-eval", "0") == 2
    assert "holds 100000 scores but" in capsys.readouterr().err
    assert run(cache, tmp_path / "b", *published_args, "--distilled", tmp_path, "--init", "window") == 2
    assert "--distilled and --init window both give the starting set" in capsys.readouterr().err
    assert run(cache, tmp_path / "c", "--teacher", str(tmp_path / "nope.pt"), "--num-eval", "0") == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert run(cache, tmp_path / "d", *published_args, "--fine", "easiest") == 2
    assert "unknown fine 'easiest'" in capsys.readouterr().err
    assert run(cache, tmp_path / "f", "--teacher", published_args[1], "--scores", SCORES / "cscores_CIFAR10.npz",
               "--num-eval", "0") == 2
    assert "holds cscore scores but --score is forgetting: pass --score cscore" in capsys.readouterr().err
    assert run(cache, tmp_path / "e", "--unknown-flag") == 2
    assert "unrecognized arguments: --unknown-flag" in capsys.readouterr().err


def _cda_folder(root, demo, per_class, ids):
    for c in range(10):
        folder = root / f"new{c:03d}"
        folder.mkdir(parents=True)
        for n, k in enumerate(ids):
            img = demo.images[np.flatnonzero(demo.labels == c)[n]]
            Image.fromarray(img).save(folder / f"class{c:03d}_id{k:03d}.png")
    return root


def test_distilled_layouts_read_in_numeric_id_order(tmp_path, demo_stores):
    demo = demo_stores["train"]
    # ids 2, 9, 10: as strings "10" < "2" < "9"; as numbers 2 < 9 < 10.
    root = _cda_folder(tmp_path / "cda", demo, 3, [10, 2, 9])
    x, y = read_distilled(root, demo.classes, 2, demo.images.shape[1:])
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    cls0 = np.flatnonzero(demo.labels == 0)
    np.testing.assert_array_equal(x[0], demo.images[cls0[1]])  # id 2 was written from the 2nd image
    np.testing.assert_array_equal(x[1], demo.images[cls0[2]])  # id 9 from the 3rd
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    torch.save({"images": torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, "labels": torch.from_numpy(y)},
               tmp_path / "d.pt")
    for path in (tmp_path / "d.npz", tmp_path / "d.pt"):
        x2, y2 = read_distilled(path, demo.classes, 1, demo.images.shape[1:])
        np.testing.assert_array_equal(x2, x[::2])
        np.testing.assert_array_equal(y2, y[::2])
    with pytest.raises(UserError, match=r"class 0 \(airplane\) has 3 distilled images, 4 needed"):
        read_distilled(root, demo.classes, 4, demo.images.shape[1:])
    with pytest.raises(UserError, match="distilled images are 32×32 but the dataset's are 64×64"):
        read_distilled(root, demo.classes, 1, (64, 64, 3))


def test_run_with_a_distilled_folder(tmp_path, demo_stores, cache, published_args):
    root = _cda_folder(tmp_path / "cda", demo_stores["train"], 4, [0, 1, 2, 3])
    out = tmp_path / "distilled"
    assert run(cache, out, *published_args, "--distilled", root, "--init", "none") == 0
    start = np.load(out / "start.npz")
    assert start["distilled_images"].shape == (40, 32, 32, 3) and len(start["real_indices"]) == 0
    idx = selected(out)
    assert np.bincount(demo_stores["train"].labels[idx], minlength=10).tolist() == [16] * 10
    assert len(np.load(out / "synthetic_set.npz")["distilled_labels"]) == 40


def test_cscore_run_uses_negated_published_cscores(published_args, cache, tmp_path, demo_stores):
    out = tmp_path / "cscore"
    assert run(cache, out, "--teacher", published_args[1], "--score", "cscore", "--scores",
               SCORES / "cscores_CIFAR10.npz", "--num-eval", "0") == 0
    cscores = np.load(SCORES / "cscores_CIFAR10.npz")["scores"]
    np.testing.assert_allclose(np.load(out / "scores.npy"), -cscores[demo_stores["train"].parent_indices])
    assert len(selected(out)) == 200


def test_eval_from_and_filter_test_control_what_is_measured(published_args, cache, tmp_path):
    out = tmp_path / "lean"
    args = [a for a in published_args if a not in ("--num-eval", "0")]
    assert run(cache, out, *args, "--num-eval", "1", "--eval-epochs", "3", "--eval-from", "1.0",
               "--no-filter-test", "--inference", "all") == 0
    ev = json.loads((out / "eval" / "convnet_bn_0.json").read_text())
    assert list(ev["test_acc_by_epoch"]) == ["2"]  # only after the last epoch
    assert ev["final_epoch_acc"] == ev["max_last_20pct_acc"]
    phases = json.loads((out / "phases.json").read_text())
    assert all("filter_test_acc" not in p and "filter_train_acc" in p for p in phases)
    assert (out / "fig_filter_accuracy.png").is_file()  # the train-split curve alone
    assert run(cache, tmp_path / "bad", *published_args, "--eval-from", "1.5") == 2
