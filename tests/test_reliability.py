"""Reliability: SIGTERM and killed processes leave nothing half-written behind, a full disk and a
damaged store are one line (or a rebuild), and the small refusals of bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FAST, REPO, run
from fastccfs.cli import main
from fastccfs.errors import UserError


def test_sigterm_ends_a_run_cleanly_and_it_resumes(cache, tmp_path, demo_stores):
    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "fastccfs", "run", "demo", "--cache", str(cache), "--out", str(out), *FAST,
           "--teacher-epochs", "30", "--num-eval", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((out / "run.log").exists() and "teacher: training" in (out / "run.log").read_text()) \
            and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the teacher's epochs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    err = proc.stderr.read().strip().splitlines()
    assert err[-1].startswith("fastccfs: terminated (SIGTERM)")
    assert not list(out.glob(".*tmp*")) and not (out / "teacher.pt").exists()


def test_stale_temporaries_of_killed_processes_are_removed(cache, tmp_path, demo_stores):
    from fastccfs.store import convert

    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = cache / f".demo.tmp-{dead}-x1y2"
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"\0" * 1000)
    mine = cache / ".my-own-folder"
    mine.mkdir()
    # A convert that writes (another dataset into this cache) clears the dead process's folder.
    np.savez(tmp_path / "tiny.npz", x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 8, 8, 3), np.uint8), y_test=np.array([0, 1]))
    convert(str(tmp_path / "tiny.npz"), cache=cache, progress=False)
    assert not stale.exists() and mine.exists()


def test_run_dir_temporaries_of_a_killed_run_are_removed_on_resume(own_run, cache, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(own_run, out)
    dead = 2**22 + 12345
    (out / f".teacher.pt.tmp-{dead}").write_bytes(b"half")
    (out / "eval" / f".convnet_bn_0.json.tmp-{dead}").write_text("{")
    assert run(cache, out, "--teacher-epochs", "2", "--num-eval", "1") == 0
    assert not list(out.rglob(".*.tmp-*"))


def test_a_full_disk_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import shutil

    from fastccfs import store

    real = shutil.disk_usage
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert main(["convert", "demo", "--cache", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "demo/train needs 10 MB free in" in err and "which has 1,000 bytes" in err and "\n" not in err
    assert not [p for p in (tmp_path / "c").iterdir()]  # no temp left


def test_a_damaged_store_is_rebuilt_from_its_source_or_named(tmp_path, capsys):
    from fastccfs.store import Store, convert

    cache = tmp_path / "c"
    stores = convert("demo", cache=cache, progress=False)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(cache / "demo").st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: a cache can be shared
    labels = stores["train"].path / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:200])  # truncated
    again = convert("demo", cache=cache, progress=False)  # the source is the bundled zip: rebuilt
    assert "is damaged; converting demo again" in capsys.readouterr().err and len(again["train"]) == 3000
    meta = again["test"].path / "meta.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "num_samples"}))
    with pytest.raises(UserError, match="meta.json is damaged .*delete .* and run `fastccfs convert` again"):
        Store.open(again["test"].path)
    images = again["train"].path / "images.npy"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated or damaged"):
        Store.open(again["train"].path)


def test_small_refusals(tmp_path, capsys):
    from fastccfs.config import resolve_run_config
    from fastccfs.images import decode

    for args, message in ((["convert", "demo", "--size", "0"], "--size must be a positive"),
                          (["convert", "demo", "--workers", "-1"], "--workers must be at least 1")):
        assert main([*args, "--cache", str(tmp_path / "c")]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["convert", "demo", "--cache", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(UserError) as e:
        decode(b"not an image", "class_a/img1.jpg", None)
    assert "BytesIO" not in str(e.value) and str(e.value).startswith("class_a/img1.jpg: cannot decode image")
    # The demo preset starts from random real images; a distilled set given by the user replaces that.
    assert resolve_run_config("demo", None, None, {"distilled": "x"}).init == "none"
    assert resolve_run_config("demo", None, None, {}).init == "random"


def test_a_run_is_not_resumed_on_other_data(own_run, tmp_path, capsys, demo_stores):
    """The demo converted again from changed files (one train label moved): a new store, checksums and all;
    the run started on the old one is refused, not resumed on it."""
    import shutil

    from fastccfs.store import Store, array_checksum

    other = tmp_path / "cache"
    shutil.copytree(demo_stores["train"].path.parent, other / "demo")
    labels = np.load(other / "demo" / "train" / "labels.npy")
    labels[0] = (labels[0] + 1) % 10
    np.save(other / "demo" / "train" / "labels.npy", labels)
    meta = json.loads((other / "demo" / "train" / "meta.json").read_text())
    meta["checksums"]["labels.npy"] = array_checksum(other / "demo" / "train" / "labels.npy")
    (other / "demo" / "train" / "meta.json").write_text(json.dumps(meta))
    assert Store.open(other / "demo" / "train").content_fingerprint() != demo_stores["train"].content_fingerprint()
    out = tmp_path / "resume"
    shutil.copytree(own_run, out)
    assert run(other, out, "--teacher-epochs", "2", "--num-eval", "1") == 2
    assert "was started on other data" in capsys.readouterr().err


def _live_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_run_directory_in_use_is_refused_and_a_dead_owners_lock_taken_over(own_run, cache, tmp_path, capsys):
    import shutil

    out = tmp_path / "locked"
    shutil.copytree(own_run, out)
    other = _live_process()
    try:
        (out / ".lock").write_text(str(other.pid))
        assert run(cache, out, "--teacher-epochs", "2", "--num-eval", "1") == 2
        assert f"another fastccfs process (pid {other.pid}) is running the run in" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    assert run(cache, out, "--teacher-epochs", "2", "--num-eval", "1") == 0  # its owner is gone: taken over
    assert not (out / ".lock").exists()


def test_a_store_being_written_by_another_process_is_waited_for(tmp_path, capsys):
    from fastccfs.store import convert

    cache = tmp_path / "c"
    cache.mkdir()
    import threading

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    threading.Thread(target=other.wait).start()  # reaped when it ends, as its own parent would
    (cache / ".demo.lock").write_text(str(other.pid))
    stores = convert("demo", cache=cache, progress=False)
    assert f"waiting for process {other.pid}, which is converting demo" in capsys.readouterr().err
    assert len(stores["train"]) == 3000 and not (cache / ".demo.lock").exists()


def _in_small_tmpfs(size: str, folder, command: str) -> subprocess.CompletedProcess:
    """COMMAND with a tmpfs of SIZE mounted at FOLDER in a private mount namespace (root, Linux)."""
    folder.mkdir()
    script = f"mount -t tmpfs -o size={size} tmpfs {folder} && {command}"
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    if "unshare failed" in result.stderr or "mount:" in result.stderr and "permission denied" in result.stderr.lower():
        pytest.skip(f"no private mount namespace here for a small disk: {result.stderr.strip()[:200]}")
    return result


def test_a_really_full_disk_is_one_line_with_nothing_half_written(cache, tmp_path, demo_stores):
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is absent: no private mount namespace for a small disk")
    py = f"{sys.executable} -m fastccfs"
    small = tmp_path / "small"
    converted = _in_small_tmpfs("2m", small, f"{py} convert demo --cache {small}/cache --quiet; echo rc=$?; "
                                             f"ls -A {small}/cache")
    assert "needs 10 MB free in" in converted.stderr and "rc=2" in converted.stdout
    assert converted.stdout.split("rc=2")[1].split() == []  # nothing left in the cache (the lock released)
    ran = _in_small_tmpfs("400k", tmp_path / "tiny", f"{py} run demo --cache {cache} --out {tmp_path}/tiny/run "
                                                     f"{' '.join(FAST)} --teacher-epochs 1 --num-eval 0; echo rc=$?; "
                                                     f"ls -A {tmp_path}/tiny")
    # What the run will write is estimated before work: refused in one line, no run folder made.
    assert "fastccfs: error: the run (" in ran.stderr and "which has 400 KB" in ran.stderr, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr and ran.stdout.split("rc=2")[1].split() == []


def test_a_disk_that_fills_during_a_run_is_one_line_and_the_run_resumes(cache, tmp_path, capsys, monkeypatch,
                                                                          demo_stores):
    """A disk filled by someone else after the run's estimate passed: the write fails (ENOSPC), one line, exit 2,
    nothing half-written; the same command resumes once there is room."""
    import errno

    from fastccfs import teacher

    real = teacher.save_checkpoint

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "teacher.pt"))

    monkeypatch.setattr(teacher, "save_checkpoint", full)
    out = tmp_path / "run"
    assert run(cache, out, "--teacher-epochs", "1", "--num-eval", "0") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fastccfs: error: the disk is full (writing ") and "run the same command again" in err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name] and not (out / "teacher.pt").exists()
    monkeypatch.setattr(teacher, "save_checkpoint", real)
    assert run(cache, out, "--teacher-epochs", "1", "--num-eval", "0") == 0


def test_a_kill_during_an_atomic_write_leaves_the_old_file_or_none(tmp_path):
    from fastccfs.atomic import remove_stale_temps

    target = tmp_path / "phase_1.npz"
    code = ("import numpy as np; from fastccfs.atomic import save_arrays\n"
            f"save_arrays({str(target)!r}, big=np.ones((400, 1024, 1024), np.uint8))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".phase_1.npz.tmp-*")) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()  # the final name never holds a half-written file
    left = list(tmp_path.glob(".phase_1.npz.tmp-*"))
    assert left and remove_stale_temps(tmp_path) == left and not list(tmp_path.iterdir())


def test_convert_never_replaces_a_folder_that_is_not_a_store(tmp_path, capsys):
    cache = tmp_path / "data"
    mine = cache / "demo"
    mine.mkdir(parents=True)
    (mine / "my-notes.txt").write_text("the user's")
    assert main(["convert", "demo", "--cache", str(cache), "--quiet"]) == 2
    assert "exists and is not a fastccfs store" in capsys.readouterr().err
    assert (mine / "my-notes.txt").read_text() == "the user's" and not list(cache.glob(".demo.tmp-*"))


def test_an_empty_train_class_is_named(tmp_path, capsys):
    from PIL import Image

    for split, cls in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "dog")):
        (tmp_path / "ds" / split / cls).mkdir(parents=True)
    for split in ("train", "val"):
        Image.new("RGB", (8, 8)).save(tmp_path / "ds" / split / "cat" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "val" / "dog" / "b.png")
    assert main(["convert", str(tmp_path / "ds"), "--cache", str(tmp_path / "c")]) == 2
    assert "train/dog/ holds no images" in capsys.readouterr().err


def test_a_run_directory_that_is_not_one_is_refused(cache, tmp_path, capsys):
    (tmp_path / "empty-config").mkdir()
    (tmp_path / "empty-config" / "config.yaml").write_text("")
    (tmp_path / "a-file").write_text("mine")
    for out, message in ((tmp_path / "empty-config", "is not a run's settings (empty or damaged)"),
                         (tmp_path / "a-file", "is a file: pass a folder")):
        assert run(cache, out) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "mine"


def test_decode_workers_end_with_a_killed_convert(tiny_root, tmp_path):
    cache = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "fastccfs", "convert", "tiny-imagenet", "--root", str(tiny_root),
                             "--cache", str(cache), "--workers", "2", "--quiet"], cwd=REPO)
    deadline = time.time() + 120
    children = []
    while not children and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
    assert children, "the convert finished before its workers were seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    alive = [p for p in children if os.path.exists(f"/proc/{p}") and
             "Z" not in open(f"/proc/{p}/stat").read().split()[2]]
    assert not alive
