"""Write-then-rename: a file or folder is complete at its final path or absent there; and, inside a
tracked folder (a run directory), each file's SHA-256 recorded as it is written (CHECKSUMS, in
sha256sum's format), so that a later resume finds a file damaged since, down to one flipped bit."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling of PATH; on success it replaces PATH, on error it is removed.
    (fastccfs.distributed.rank0_path is the collective form: under torchrun, rank 0 alone writes.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _record(path, tmp)  # before the rename: a file at its final path always has its checksum
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------ checksums

CHECKSUMS = "checksums.sha256"  # in the tracked folder; `sha256sum -c checksums.sha256` there checks it
_TRACKED: dict[Path, dict[str, str]] = {}  # tracked folder → {path relative to it: SHA-256}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read_checksums(folder: str | os.PathLike) -> dict[str, str] | None:
    """FOLDER's recorded checksums (None: it has none; a damaged line is left out, so its file counts
    as unrecorded)."""
    try:
        text = (Path(folder) / CHECKSUMS).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if re.fullmatch(r"[0-9a-f]{64}", digest) and name:
            sums[name] = digest
    return sums


@contextmanager
def tracking(folder: str | os.PathLike, sums: dict[str, str] | None = None):
    """While open, every file written under FOLDER through atomic_path (and so every writer here) has
    its checksum recorded in FOLDER/CHECKSUMS, starting from SUMS (default: those recorded there)."""
    folder = Path(folder).resolve()
    _TRACKED[folder] = dict(read_checksums(folder) or {}) if sums is None else dict(sums)
    _save_checksums(folder)
    try:
        yield _TRACKED[folder]
    finally:
        _TRACKED.pop(folder, None)


@contextmanager
def keep_checksums(folder: str | os.PathLike):
    """tracking(FOLDER) when FOLDER keeps checksums and is not tracked already (a command that writes
    into a finished run: `fastccfs report`), else nothing."""
    folder = Path(folder).resolve()
    if folder in _TRACKED or not (folder / CHECKSUMS).is_file():
        yield
        return
    with tracking(folder):
        yield


def damaged_files(folder: str | os.PathLike) -> list[str]:
    """The files of FOLDER whose content differs from the checksum recorded as they were written
    (missing files are not listed: removing a file is not damaging it)."""
    folder = Path(folder)
    return sorted(name for name, digest in (read_checksums(folder) or {}).items()
                  if (folder / name).is_file() and file_sha256(folder / name) != digest)


def _record(path: Path, tmp: Path) -> None:
    path = path.resolve()
    for folder, sums in _TRACKED.items():
        if folder not in path.parents:
            continue
        name = path.relative_to(folder).as_posix()
        for old in [k for k in sums if k == name or k.startswith(name + "/")]:  # a folder replaced whole
            del sums[old]
        files = [tmp] if not tmp.is_dir() else sorted(p for p in tmp.rglob("*") if p.is_file())
        for f in files:
            sums[name if f == tmp else f"{name}/{f.relative_to(tmp).as_posix()}"] = file_sha256(f)
        _save_checksums(folder)


def _save_checksums(folder: Path) -> None:
    target = folder / CHECKSUMS
    text = "".join(f"{h}  {name}\n" for name, h in sorted(_TRACKED[folder].items()))
    try:
        if target.read_text(encoding="utf-8") == text:  # a finished run read again rewrites nothing
            return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = target.with_name(f".{CHECKSUMS}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


_TEMP = re.compile(r"^\..+\.tmp-(\d+)(-.*)?$")


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (".<name>.tmp-<pid>…", as atomic_path and convert name them) that a killed
    process left in FOLDER: those whose process is gone. Returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if not m or _alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class PidLock:
    """A lock file holding its owner's PID: taken with O_EXCL, released by removing it, and taken over
    when its owner is no longer alive (a killed process cannot release it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.held = False

    def owner(self) -> int | None:
        """The PID of a live owner other than this process, else None."""
        try:
            pid = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid and pid != os.getpid() and _alive(pid) else None

    def acquire(self, wait: bool = False, waiting_message: str = "", poll: float = 1.0) -> bool:
        """Take the lock; if a live process holds it: False at once, or (wait=True) wait for it, printing
        waiting_message once. Returns True when taken."""
        told = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self.owner()
                if pid is None:  # its owner is gone: take it over
                    self.path.unlink(missing_ok=True)
                    continue
                if not wait:
                    return False
                if not told and waiting_message:
                    print(waiting_message.format(pid=pid), file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# Each writer takes `via`, the context that yields where to write: atomic_path, or
# fastccfs.distributed.rank0_path for a collective write (every rank calls it; rank 0 writes).
def refuse_other_settings(before: dict, now: dict, what: str, advice: str) -> None:
    """A folder written with other settings is never mixed or overwritten: one line naming the settings
    that differ (BEFORE, as recorded there; NOW, as asked)."""
    from fastccfs.errors import UserError

    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        raise UserError(f"{what} with other settings ({', '.join(changed)}): {advice}")


def write_json(path: str | os.PathLike, obj, via=atomic_path) -> None:
    with via(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def write_text(path: str | os.PathLike, text: str, via=atomic_path) -> None:
    with via(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes, via=atomic_path) -> None:
    with via(path) as tmp:
        tmp.write_bytes(data)


def save_arrays(path: str | os.PathLike, via=atomic_path, **arrays) -> None:
    """ARRAYS in one .npz at PATH."""
    import numpy as np

    with via(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_array(path: str | os.PathLike, array, via=atomic_path) -> None:
    """One array as an .npy at PATH."""
    import numpy as np

    with via(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
