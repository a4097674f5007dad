"""Evaluation runs side by side (--eval-jobs) and shared soft labels (--soft-labels shared), on the bundled
real CIFAR-10 subset: bitwise-equal runs alone or beside others, resume after a kill, the shared crops and
their stored teacher logits, the up-front size check."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import FAST, REPO, SCORES, need, run

EVAL = ["--num-eval", "3", "--eval-epochs", "3"]


def descendants(pid: int) -> set[int]:
    """Every living process below PID (Linux /proc)."""
    children = {}
    for status in os.listdir("/proc"):
        if status.isdigit():
            try:
                ppid = int(open(f"/proc/{status}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(status))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def records(out):
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "eval").glob("*.json"))}


def same_runs(a, b):
    ra, rb = records(a), records(b)
    assert sorted(ra) == sorted(rb) == [f"convnet_bn_{r}.json" for r in range(3)]
    for name in ra:
        for key in ("weights_sha256", "loss_by_epoch", "test_acc_by_epoch", "threads"):
            assert ra[name][key] == rb[name][key], (name, key)


def run_one_thread(cache, out, *args) -> int:
    """`fastccfs run demo` in this process with one torch thread (each run's threads when run alone)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(cache, out, *args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def args(own_run):
    return ["--teacher", str(own_run / "teacher.pt"), "--scores", str(need(SCORES / "forgetting_CIFAR10.npy")), *EVAL]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, cache, args):
    """Every evaluation run in this process, one thread each."""
    out = tmp_path_factory.mktemp("jobs") / "alone"
    assert run_one_thread(cache, out, *args, "--eval-jobs", "1") == 0
    return out


def test_runs_side_by_side_equal_runs_alone_bitwise(alone, cache, args, tmp_path):
    """--eval-jobs 2 (two worker processes, one thread each) against --eval-jobs 1 (this process, one thread):
    the same weights, losses and accuracies; the run resumes the finished selection and redoes only evaluation."""
    out = tmp_path / "beside"
    shutil.copytree(alone, out)
    shutil.rmtree(out / "eval")
    (out / "eval.json").unlink()
    assert run_one_thread(cache, out, *args, "--eval-jobs", "2") == 0
    same_runs(alone, out)
    assert {r["threads"] for r in records(out).values()} == {1}
    decision = json.loads((out / "timings.json").read_text())["decisions"]["eval_jobs"]
    assert decision == {"jobs": 2, "threads_per_job": 1, "source": "given"}


def test_run_killed_during_evaluation_resumes_to_the_same_runs(alone, cache, args, tmp_path):
    """Killed in the evaluation's second round (the selection copied from `alone`, so only evaluation runs):
    the workers end with the run, and the resumed run redoes only the unwritten run."""
    out = tmp_path / "killed"
    shutil.copytree(alone, out, ignore=shutil.ignore_patterns("eval", "eval.json", "report.html", "fig_*"))
    cmd = [sys.executable, "-m", "fastccfs", "run", "demo", "--cache", str(cache), "--out", str(out), *FAST, *args,
           "--eval-jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per run, as in `alone`
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "eval" / "convnet_bn_1.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    helpers = descendants(proc.pid)  # the forkserver and the worker processes of the evaluation
    assert len(helpers) >= 3
    os.kill(proc.pid, signal.SIGKILL)  # in the second round (run 3 of 3)
    proc.wait()
    deadline = time.time() + 30
    while any(os.path.exists(f"/proc/{p}") for p in helpers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in helpers if os.path.exists(f"/proc/{p}")], "workers outlived the killed run"
    assert sorted(records(out)) == ["convnet_bn_0.json", "convnet_bn_1.json"]
    first = {name: (out / "eval" / name).stat().st_mtime_ns for name in records(out)}
    assert subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode == 0
    assert {name: (out / "eval" / name).stat().st_mtime_ns for name in first} == first  # not redone
    same_runs(alone, out)


def test_shared_soft_labels_end_to_end(own_run, demo_stores, cache, args, tmp_path):
    """The teacher's logits on one crop stream per epoch, stored once (fp16, the stated size); every run
    trains on those crops and targets, in its own order."""
    import fastccfs
    from fastccfs.context import SEED_STREAMS
    from fastccfs.models import create_model, load_checkpoint
    from fastccfs.soft_labels import SharedLabelLoader, SharedLabels
    from fastccfs.synthetic import SyntheticSet

    out = tmp_path / "shared"
    result = fastccfs.run("demo", 20, out, progress=False, cache=str(cache), model="convnet_bn",
                          teacher_model="convnet_bn", eval_models=["convnet_bn"], epochs=2, warmup_epochs=1,
                          teacher=str(own_run / "teacher.pt"), scores=args[3], num_eval=2, eval_epochs=3,
                          soft_labels="shared", eval_jobs="1")
    assert result.evaluation["soft_labels"] == "shared" and result.evaluation["models"]["convnet_bn"]["runs"] == 2
    values = np.load(out / "soft_labels.npy")
    assert values.dtype == np.float16 and values.shape == (3, 200, 10)
    assert json.loads((out / "soft_labels.json").read_text())["epochs_done"] == 3
    train = demo_stores["train"]
    final = SyntheticSet.load(out / "synthetic_set.npz")
    teacher = load_checkpoint(create_model("convnet_bn", 10, 32), own_run / "teacher.pt").eval()
    labels = SharedLabels(str(out), 3, 200, 10, None, SEED_STREAMS["soft_labels"])  # seed 0's stream
    assert labels.epochs_done() == 3
    images = train.images[final.real_indices]
    seen = {}
    for seed in (1, 2):
        loader = SharedLabelLoader(labels, images, train.labels[final.real_indices], final.real_indices, train.mean,
                                   train.std, 64, seed)
        loader.set_epoch(1)
        batches = list(loader)
        order = torch.cat([b[2] for b in batches])
        assert sorted(order.tolist()) == sorted(final.real_indices.tolist())
        for x, y, idx, target in batches:
            for i, row in zip(idx.tolist(), x):
                if i in seen:  # the same crop of image i in epoch 1, whichever run's order
                    assert torch.equal(seen[i], row)
                seen[i] = row
        seen["order", seed] = order
        x, _, idx, target = batches[0]
        rows = [int(np.flatnonzero(final.real_indices == i)[0]) for i in idx.tolist()]
        np.testing.assert_array_equal(target.numpy(), values[1, rows].astype(np.float32))
        from fastccfs.models import folded

        with torch.no_grad():  # the stored targets are the teacher's logits on exactly these crops (fp16-rounded)
            expected = folded(teacher)(x).float()
        torch.testing.assert_close(target, expected, atol=0.02, rtol=0.01)
    assert not torch.equal(seen["order", 1], seen["order", 2])  # runs differ in their batch order


def test_shared_soft_labels_too_large_for_the_disk_is_refused_before_work(own_run, cache, args, tmp_path, capsys,
                                                                            monkeypatch):
    from fastccfs import context, resources

    monkeypatch.setattr(resources, "free_disk", lambda path: 10_000)
    monkeypatch.setattr(context, "fit", lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "full"
    assert run(cache, out, *args, "--soft-labels", "shared") == 2
    err = capsys.readouterr().err
    assert "--soft-labels shared stores 12 KB" in err and "10 KB are free" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert run(cache, out, *args, "--soft-labels-topk", "2") == 2  # top-K belongs to shared soft labels
    assert run(cache, out, *args, "--eval-jobs", "0") == 2 and run(cache, out, *args, "--eval-jobs", "two") == 2
    assert not out.exists()


def _constant_probe(seconds, barrier=None):
    if barrier is not None:
        barrier.wait()
    return seconds


def test_auto_measures_once_per_machine_and_keeps_the_faster(tmp_path, monkeypatch):
    """auto: each candidate's step time is measured with that many processes stepping at once; with equal
    step times the most jobs finish the runs in the fewest rounds; the decision is kept for the machine."""
    from fastccfs import eval_jobs

    monkeypatch.setenv("FASTCCFS_CACHE", str(tmp_path))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    probe = (_constant_probe, (0.01,))
    decision = eval_jobs.decide("auto", 5, torch.device("cpu"), probe, "model|batch 64")
    assert decision["jobs"] == 2 and decision["threads_per_job"] == 1 and decision["source"] == "measured"
    assert decision["predicted_relative_time"] == {"1": 1.0, "2": 0.6}  # 3 rounds instead of 5
    again = eval_jobs.decide("auto", 5, torch.device("cpu"), None, "model|batch 64")  # no probe: not measured
    assert again["jobs"] == 2 and again["source"] == "measured earlier on this machine"
    assert eval_jobs.decide("3", 2, torch.device("cpu"), probe, "k")["jobs"] == 2  # no more jobs than runs


def test_plan_is_printed_kept_and_compared(own_run, cache, tmp_path, capsys):
    """Every run keeps its plan (each stage's image-epochs and estimate) beside the measured times; --plan
    prints it and exits without touching the run folder."""
    plan = json.loads((own_run / "timings.json").read_text())["decisions"]["plan"]
    assert list(plan["stages"]) == ["teacher", "phase_1", "phase_2", "phase_3", "evaluation"]
    for row in plan["stages"].values():
        assert row["estimate_s"] > 0 and row["measured_s"] > 0 and row["image_epochs"] > 0
    assert plan["stages"]["phase_2"]["image_epochs"] == 2 * 100  # 2 epochs × (⌊α·IPC⌋ + k_1 = 4 + 6) × 10 classes
    assert plan["estimate_s"] == pytest.approx(sum(r["estimate_s"] for r in plan["stages"].values()), abs=0.2)
    assert plan["measured_s"] == pytest.approx(sum(r["measured_s"] for r in plan["stages"].values()), abs=0.2)
    assert "plan: demo IPC 20" in (own_run / "run.log").read_text()
    capsys.readouterr()
    out = tmp_path / "planned"
    assert run(cache, out, "--teacher-epochs", "2", "--num-eval", "1", "--plan") == 0
    printed = capsys.readouterr().out
    assert "teacher" in printed and "phase_3" in printed and "evaluation" in printed and "total" in printed
    assert not out.exists()
