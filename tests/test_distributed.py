"""torch.distributed (gloo, 2 CPU processes): what is identical to one process is tested equal; the whole
pipeline under torchrun completes and writes its run directory once; a dead rank ends the job."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import FAST, REPO, quick_numba

from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.store import Store
from fastccfs.trainer import predict

ENV_1_THREAD = {"OMP_NUM_THREADS": "1", "FASTCCFS_DIST_TIMEOUT": "60"}
NO_WORKERS = {"torch": {"num_workers": 0}}  # the sharding is the sampler's: worker processes only cost time here


def torchrun(*args, env=None, timeout=600):
    """`torchrun --standalone --nproc_per_node 2 -m fastccfs ARGS` with the test interpreter."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV_1_THREAD, **(env or {})})


def _spawn(fn, tmp_path, *args):
    mp.spawn(_entry, args=(fn, str(tmp_path / "init"), *args), nprocs=2)


def _entry(rank, fn, init_file, *args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def _predict_shard(rank, store_path, backend, out):
    torch.manual_seed(0)
    model = create_model("convnet_bn", 10)
    loader = make_loader(Store.open(store_path), backend=backend, augment=False, batch_size=64, device="cpu",
                         indices=np.arange(301), rank=rank, world_size=2, **NO_WORKERS.get(backend, {}))
    logits, labels, ids = predict(model, loader, amp="off")
    np.savez(f"{out}_{rank}.npz", logits=logits, labels=labels, ids=ids)


@pytest.mark.parametrize("backend", ["tensor", "torch", "ffcv", "dali"])
def test_sharded_inference_equals_one_process_for_every_backend(demo_stores, cache, tmp_path, backend, monkeypatch):
    """Each backend shards in its own way (interleaved, DALI contiguous and padded, FFCV its own order):
    every rank ends with the whole split in the loader's order."""
    from fastccfs.formats import convert_store

    store = demo_stores["train"]
    if backend in ("ffcv", "dali"):
        convert_store(store, backend, progress=False)
    if backend == "ffcv":  # the ranks' order is tested, not their speed
        for name, value in quick_numba(tmp_path).items():
            monkeypatch.setenv(name, value)
    _spawn(_predict_shard, tmp_path, str(store.path), backend, str(tmp_path / "out"))
    torch.manual_seed(0)
    model = create_model("convnet_bn", 10)
    whole = predict(model, make_loader(store, backend=backend, augment=False, batch_size=64, device="cpu",
                                       indices=np.arange(301), **NO_WORKERS.get(backend, {})), amp="off")
    np.testing.assert_array_equal(whole[2], np.arange(301))
    for rank in (0, 1):
        got = np.load(tmp_path / f"out_{rank}.npz")
        np.testing.assert_array_equal(got["ids"], np.arange(301))
        np.testing.assert_array_equal(got["labels"], store.labels[:301])
        np.testing.assert_allclose(got["logits"], whole[0], atol=1e-4)


def _soft_label_shard(rank, folder):
    from fastccfs import augment
    from fastccfs.soft_labels import SharedLabels, generate

    torch.manual_seed(0)
    teacher, images = create_model("convnet_bn", 10), np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), np.uint8)
    batches, crop = [], augment.crop_flip_normalize
    augment.crop_flip_normalize = lambda *a, **k: batches.append(1) or crop(*a, **k)  # count this rank's batches
    try:
        generate(SharedLabels(folder, 5, 20, 10, 3, 200), teacher, images, (0.5,) * 3, (0.25,) * 3, "cpu", "off",
                 batch=8, progress=False)
    finally:
        augment.crop_flip_normalize = crop
    Path(folder, f"batches_{rank}").write_text(str(len(batches)))


def test_shared_soft_labels_are_generated_by_every_rank_as_by_one_process(tmp_path):
    """Two ranks take alternate epochs (5: one round with rank 1 idle) into the same files; the arrays and the
    record (each epoch's SHA-256) are those one process writes alone."""
    (tmp_path / "two").mkdir(), (tmp_path / "one").mkdir()
    _spawn(_soft_label_shard, tmp_path, str(tmp_path / "two"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _soft_label_shard(0, str(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)
    for name in ("soft_labels.npy", "soft_labels_classes.npy", "soft_labels.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert json.loads((tmp_path / "one" / "soft_labels.json").read_text())["epochs_done"] == 5
    # 3 batches per epoch: alone all 15; rank 0 epochs 1, 3, 5 and rank 1 epochs 2, 4
    assert [int((tmp_path / d / f"batches_{r}").read_text()) for d, r in (("one", 0), ("two", 0), ("two", 1))] == \
        [15, 9, 6]


def _forgetting_shard(rank, epochs_path, out):
    from fastccfs.scores import ForgettingCounter
    from fastccfs.trainer import _gathered_by_sample

    epochs = np.load(epochs_path)["pred"]  # epochs × samples: the predicted labels of each presentation
    n, labels = epochs.shape[1], np.arange(epochs.shape[1]) % 3
    counter = ForgettingCounter(n)
    for e, pred in enumerate(epochs):
        # this rank's share of the epoch, padded as a training loader pads it (a sample seen twice)
        order = np.random.default_rng(e).permutation(n)
        order = np.concatenate([order, order[:1]])[rank::2]
        batches = [(torch.nn.functional.one_hot(torch.from_numpy(pred[chunk]), 3).float(),
                    torch.from_numpy(labels[chunk]), torch.from_numpy(chunk)) for chunk in np.array_split(order, 3)]
        counter.update(*_gathered_by_sample(batches, "cpu"))
    np.save(f"{out}_{rank}.npy", counter.scores(len(epochs)))


def test_forgetting_counts_equal_one_process_given_the_same_predictions(tmp_path):
    from fastccfs.scores import ForgettingCounter

    rng = np.random.default_rng(0)
    pred = rng.integers(0, 3, (6, 101))
    np.savez(tmp_path / "epochs.npz", pred=pred)
    _spawn(_forgetting_shard, tmp_path, str(tmp_path / "epochs.npz"), str(tmp_path / "f"))
    one = ForgettingCounter(101)
    labels = torch.arange(101) % 3
    for p in pred:
        one.update(torch.nn.functional.one_hot(torch.from_numpy(p), 3).float(), labels, torch.arange(101))
    expected = one.scores(6)
    assert expected.max() > 1, "a case with repeated forgetting"
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"f_{rank}.npy"), expected)


def _distill_shard(rank, teacher_path, out):
    from fastccfs.cda import DistillConfig, distill

    teacher = create_model("convnet_bn", 10)
    teacher.load_state_dict(torch.load(teacher_path))
    distill(teacher, [f"c{c}" for c in range(10)], 3, 32, (0.5,) * 3, (0.25,) * 3,
            DistillConfig(iterations=3, batch_size=8, amp="off"), out, progress=False)


def test_distillation_under_two_ranks_equals_one_process(tmp_path):
    """4 batches of 8 (30 images) over 2 ranks: the same images as one process, written once by rank 0."""
    from fastccfs.cda import DistillConfig, distill

    torch.manual_seed(0)
    teacher = create_model("convnet_bn", 10)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    _spawn(_distill_shard, tmp_path, str(tmp_path / "teacher.pt"), str(tmp_path / "two"))
    torch.set_num_threads(1)
    try:
        distill(teacher, [f"c{c}" for c in range(10)], 3, 32, (0.5,) * 3, (0.25,) * 3,
                DistillConfig(iterations=3, batch_size=8, amp="off"), tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(os.cpu_count())
    one, two = np.load(tmp_path / "one" / "distilled.npz"), np.load(tmp_path / "two" / "distilled.npz")
    np.testing.assert_array_equal(two["labels"], one["labels"])
    np.testing.assert_array_equal(two["images"], one["images"])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_torchrun_runs_the_pipeline_and_writes_the_run_once(demo_stores, cache, tmp_path):
    """`torchrun --nproc_per_node 2 -m fastccfs run demo`: teacher and filters under DDP, evaluation runs
    dealt to the ranks and run two at a time in each (ranks × jobs; bitwise equal to the same runs in one
    process), one run directory."""
    out = tmp_path / "ddp"
    args = (*FAST, "--teacher-epochs", "1", "--num-eval", "4", "--eval-jobs", "2", "--amp", "off")
    result = torchrun("-m", "fastccfs", "run", "demo", "--cache", str(cache), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    timings = json.loads((out / "timings.json").read_text())
    assert timings["world_size"] == 2 and timings["backend"] == "gloo"
    assert {p["world_size"] for p in json.loads((out / "phases.json").read_text())} == {2}
    log = (out / "run.log").read_text()
    assert log.count("fastccfs run demo") == 1 and log.count("phase 1: set") == 1, "rank 0 alone writes the log"
    assert [json.loads((out / "eval" / f"convnet_bn_{r}.json").read_text())["rank"] for r in range(4)] == [0, 0, 1, 1]
    assert timings["decisions"]["eval_jobs"]["jobs"] == 2
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    selected = json.loads((out / "selected_indices.json").read_text())["idx_selected"]
    assert len(selected) == len(set(selected)) == 10 * 20  # IPC 20: the random real start and three phases
    # the same command under torchrun again: every rank finds the finished stages, nothing is recomputed
    stamp = (out / "phase_3.npz").stat().st_mtime_ns
    again = torchrun("-m", "fastccfs", "run", "demo", "--cache", str(cache), "--out", str(out), *args)
    assert again.returncode == 0 and (out / "phase_3.npz").stat().st_mtime_ns == stamp, again.stderr[-2000:]

    # The evaluation runs of the same final set in one process, one after another (1 thread, as each job had)
    # are the same bit for bit: each run's seed and thread count alone decide it. Runs 1 (rank 0's second job,
    # trained beside run 0) and 2 (rank 1's first) are redone; the records of runs 0 and 3 are copied.
    from fastccfs.cli import main

    seq = tmp_path / "seq"
    seq.mkdir()
    for name in ("config.yaml", "data.json", "teacher.pt", "teacher.json", "teacher_pred.npy", "forgetting.npz",
                 "teacher_training.json", "scores.npy", "start.npz", "phases.json", "selected_indices.json",
                 "synthetic_set.npz", *[f"phase_{j}.{e}" for j in (1, 2, 3) for e in ("json", "npz")]):
        (seq / name).write_bytes((out / name).read_bytes())
    (seq / "eval").mkdir()
    for r in (0, 3):
        (seq / "eval" / f"convnet_bn_{r}.json").write_bytes((out / "eval" / f"convnet_bn_{r}.json").read_bytes())
    kept = {r: (seq / "eval" / f"convnet_bn_{r}.json").stat().st_mtime_ns for r in (0, 3)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", "demo", "--cache", str(cache), "--out", str(seq), *args[:-4], "--eval-jobs", "1",
                     "--amp", "off"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert {r: (seq / "eval" / f"convnet_bn_{r}.json").stat().st_mtime_ns for r in (0, 3)} == kept
    for r in (1, 2):
        a, b = (json.loads((d / "eval" / f"convnet_bn_{r}.json").read_text()) for d in (out, seq))
        assert a["weights_sha256"] == b["weights_sha256"] and a["test_acc_by_epoch"] == b["test_acc_by_epoch"]
        assert a["threads"] == b["threads"] == 1


def test_a_dead_rank_ends_the_job_with_a_clear_error(demo_stores, cache, tmp_path):
    """Rank 1 is killed (SIGKILL) while training: the job ends (no hang: a generous guard of 5 minutes,
    where a healthy end takes well under one), non-zero, naming the failed rank, and leaves no
    half-written file."""
    script = tmp_path / "die.py"
    script.write_text(
        "import os, signal, sys, threading, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    threading.Timer(8.0, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()\n"
        "from fastccfs.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "dead"
    result = torchrun(str(script), "run", "demo", "--cache", str(cache), "--out", str(out), *FAST,
                      "--teacher-epochs", "30", env={"PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode != 0
    assert "rank" in result.stderr.lower() and ("Signals.SIGKILL" in result.stderr or "exitcode" in result.stderr)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
