"""The benchmark entry points run and report what they promise (speeds are not asserted here)."""
import json
import os
import subprocess
import sys

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
    phase = result["ccfs_phase_tiny_ipc100"]
    assert set(phase["seconds"]) >= {"train", "inference", "selection"} and phase["projected_three_phases_s"] > 0


def _bench(tmp_path, cache, *extra):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "fastccfs", "bench", "curriculum", "demo", "--ipc", "10", "--epochs", "1",
                    "--model", "convnet_bn", "--cache", str(cache), "--json", str(out), "--quiet", *extra], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return json.loads(out.read_text())


def test_bench_curriculum_reports_every_stage(tmp_path, cache, demo_stores):
    result = _bench(tmp_path, cache)
    assert set(result["stages"]) == {"train", "inference", "selection"}
    for row in [*result["stages"].values(), result["total"]]:
        assert row["fast_s"] > 0 and row["reference_s"] > 0 and row["ratio"] == row["reference_s"] / row["fast_s"]
    assert result["machine"]["cores"] >= 1 and result["set_size"] == 20
    # IPC 10, α 0.2, J 3: 8 real per class → 3 in phase 1; fastccfs predicts only what it can pick from.
    assert result["inference"] == "needed" and 30 <= result["inferred"] < result["train_split"] == 3000
    assert _bench(tmp_path, cache, "--inference", "all")["inferred"] == 3000
