"""The benchmark entry points run and report what they promise (speeds are not asserted here)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def poisoned_path(tmp_path) -> str:
    """A PATH whose `python` and `python3` fail, as on a fresh machine whose PATH Python has no torch."""
    bin_dir = tmp_path / "fresh-machine-bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'the PATH python was used (it has no torch)' >&2\nexit 97\n")
        (bin_dir / name).chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_gpu_script_smoke_writes_its_json_without_the_path_python(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PATH": poisoned_path(tmp_path), "PYTHON": sys.executable}
    subprocess.run(["bash", "benchmarks/gpu.sh", "--smoke", "--out", str(out)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, timeout=600, env=env)
    result = json.loads(out.read_text())
    assert result["smoke"] and set(result["train"]) >= {"32px-batch4-eager", "64px-batch4-eager",
                                                         "64px-batch4-kd-eager"}
    assert all(v["images_per_s"] > 0 for v in result["train"].values())
    assert result["inference_64px_images_per_s"] > 0 and result["forward_gflops_per_image_32px"] > 0.5
    assert set(result["loaders_64px"]) == {"tensor", "torch", "ffcv-raw", "dali-jpg"}
    loaders = result["loaders_64px"]
    assert loaders.pop("ffcv-raw")["built"] == 2  # written and built; iterated by tests/test_backends.py
    assert all(v.get("images_per_s", 0) > 0 for v in loaders.values()), loaders
    phase = result["ccfs_phase_tiny_ipc100"]
    assert set(phase["seconds"]) >= {"train", "inference", "selection"} and phase["projected_three_phases_s"] > 0
    whole = result["whole_run_64px"]  # `fastccfs bench whole` end to end, both sides, both soft-label modes
    assert list(whole["stages"]) == ["phase_1", "phase_2", "phase_3", "evaluation_online", "evaluation_shared"]
    assert whole["extrapolated"] and whole["settings"]["num_eval"] == 2 and whole["stages"]["phase_2"]["set_size"] == 30
    for mode in ("online", "shared"):
        row = whole["total"][mode]
        assert row["fast_s"] > 0 and row["reference_s"] > 0 and row["ratio"] == pytest.approx(
            row["reference_s"] / row["fast_s"], rel=0.01)
        assert sum(share["fast"] for share in whole["share"][mode].values()) == pytest.approx(1, abs=0.01)
    assert whole["stages"]["evaluation_shared"]["soft_labels_s"] > 0 == whole["stages"]["evaluation_online"]["soft_labels_s"]
    assert whole["reference"]["dataloader_workers"] in (0, 1, 2, 4)


def _bench(tmp_path, cache, *extra, check=True):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "fastccfs", "bench", "curriculum", "demo", "--ipc", "20",
                             "--cache", str(cache), "--json", str(out), "--quiet", *extra], cwd=REPO, check=check,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    return json.loads(out.read_text()) if check else result


def test_bench_curriculum_with_a_trained_teacher_reports_both_inference_modes(tmp_path, cache, demo_stores):
    """The demo preset (IPC 20, α 0.2, J 3, ConvNet-BN) at phase 2 with a teacher trained here for 1 epoch;
    10 filter epochs stood for by 5 measured ones."""
    from fastccfs.selection import phase_budgets

    result = _bench(tmp_path, cache, "--phase", "2", "--epochs", "10", "--measure-epochs", "5", "--teacher-epochs", "1",
                    "--save-teacher", str(tmp_path / "teacher.pt"))
    assert set(result["stages"]) == {"train", "inference", "selection"}
    for row in [*result["stages"].values(), result["total"], result["total_inference_all"]]:
        assert row["fast_s"] > 0 and row["reference_s"] > 0 and row["ratio"] == row["reference_s"] / row["fast_s"]
    per_class, budgets = phase_budgets(20, 0.2, 3)
    assert result["phase"] == 2 and result["set_size"] == 10 * (per_class + budgets[0]) and result["batch_size"] == 32
    assert result["extrapolated"] and (result["epochs"], result["measured_epochs"]) == (10, 5)
    teacher = result["teacher"]
    assert teacher["source"] == "trained here" and teacher["epochs"] == 1 and 0.1 < teacher["train_acc"] <= 1
    assert (tmp_path / "teacher.pt").is_file()
    inference = result["inference"]
    assert 0 < inference["needed"]["images"] < inference["all"]["images"] == inference["reference"]["images"] == 3000
    assert inference["all"]["same_picks"]
    flops = result["flops"]
    assert 0.001 < flops["inference_gflop_per_image"] < flops["train_gflop_per_image"]
    assert 0 < flops["share_of_peak"]["fast_train"] < 1 and 0 < flops["share_of_peak"]["reference_train"] < 1
    assert result["filter_dtype"] in ("bf16", "fp32") and result["machine"]["cores"] >= 1


def test_bench_curriculum_refuses_what_it_cannot_measure_honestly(tmp_path, cache, capsys):
    from fastccfs.cli import main

    for extra, message in [(["--epochs", "10", "--measure-epochs", "3"], "measure at least 5 epochs"),
                           (["--phase", "4"], "the preset runs phases 1 to 3"),
                           (["--teacher", str(tmp_path / "nope.pt")], "no such file"),
                           (["--teacher", __file__], "give --scores FILE too")]:
        code = main(["bench", "curriculum", "demo", "--ipc", "20", "--cache", str(cache), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_bench_run_prints_the_pipelines_wall_clock_and_leaves_no_run(tmp_path, cache, own_run, monkeypatch):
    import tempfile

    import fastccfs
    from conftest import FAST

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # the child process reads TMPDIR itself
    out = tmp_path / "timings.json"
    result = subprocess.run([sys.executable, "-m", "fastccfs", "bench", "run", "demo", "--ipc", "10", "--cache",
                             str(cache), "--num-eval", "1", "--json", str(out), *FAST,
                             "--teacher", str(own_run / "teacher.pt"), "--scores", str(fastccfs.DEMO_SCORES)], cwd=REPO, check=True,
                            stdout=subprocess.PIPE, text=True, timeout=600, env={**os.environ, "TMPDIR": str(tmp_path)})
    timings = json.loads(out.read_text())
    assert {"convert", "teacher", "phase_1.train", "phase_3.selection", "evaluation"} <= set(timings["stages"])
    for stage in timings["stages"]:
        assert stage in result.stdout
    assert "total" in result.stdout and timings["machine"]["cores"] >= 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fastccfs-bench-")]
