"""The run directory: its layout, its identity (config.yaml, checked on resume), its creation and
clean-up, run.log (what the run printed, with timestamps) and timings.json (wall-clock per stage, kept
across resumes).

Layout:
  config.yaml, data.json  the resolved settings; each split's content fingerprint
  teacher.pt, teacher.json, teacher_pred.npy, teacher_training.json   (teacher.pt only when trained here)
  forgetting.npz          forgetting events counted while training the teacher here
  scores.npy              the difficulties used (higher = harder), aligned to the train store
  distilled/              the distilled part made here (CDA), when no --distilled is given
  start.npz               the distilled part and any initial real indices
  phase_<j>.npz/.json     each phase's picks and record; phases.json gathers the records
  selected_indices.json   {"ipc", "alpha", "idx_selected"}: the reference code's form
  synthetic_set.npz       distilled images + real indices (fastccfs export RUN writes PNGs)
  eval/<model>_<r>.json   one evaluation run each; eval.json gathers them
  timings.json, run.log, report.html (+ fig_*.png)
  checksums.sha256        the SHA-256 of every file above as the run wrote it (fastccfs.atomic.tracking):
                          a resumed run redoes a file damaged since, and every stage after it
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from fastccfs.atomic import (CHECKSUMS, PidLock, file_sha256, read_checksums, refuse_other_settings,
                             remove_stale_temps, write_json, write_text)
from fastccfs.config import RunConfig
from fastccfs.errors import UserError

class Layout:
    """Every name in a run directory, in one place (the layout above); readers of run directories
    (the report, RunResult, export) use these too."""

    CONFIG, DATA, LOG, TIMINGS, LOCK = "config.yaml", "data.json", "run.log", "timings.json", ".lock"
    TEACHER, TEACHER_INFO, TEACHER_PRED = "teacher.pt", "teacher.json", "teacher_pred.npy"
    TEACHER_TRAINING, FORGETTING, SCORES = "teacher_training.json", "forgetting.npz", "scores.npy"
    DISTILLED, START, PHASES = "distilled", "start.npz", "phases.json"
    SELECTED, SYNTHETIC = "selected_indices.json", "synthetic_set.npz"
    EVAL_DIR, EVAL, REPORT, COMPARISON = "eval", "eval.json", "report.html", "comparison.html"
    # --soft-labels shared: the logits (or top-K values), the top-K classes, and the epochs generated so far
    SOFT_LABELS, SOFT_LABEL_CLASSES, SOFT_LABELS_RECORD = ("soft_labels.npy", "soft_labels_classes.npy",
                                                           "soft_labels.json")

    @staticmethod
    def phase(j: int, ext: str) -> str:
        return f"phase_{j}.{ext}"

    @staticmethod
    def eval_run(name: str, r: int) -> str:
        return f"eval/{name}_{r}.json"

    @staticmethod
    def stage_of(name: str) -> tuple[int, str] | None:
        """(when the run writes NAME, a path relative to the run folder; what makes it) for the stages'
        outputs, None for the bookkeeping (settings, data, timings, log, lock, checksums). A damaged output
        is redone with every output of its stage and after (an evaluation run's record alone: the runs
        are independent of each other)."""
        L = Layout
        phase = re.fullmatch(r"phase_(\d+)\.(npz|json)", name)
        if phase:
            return 10 + int(phase.group(1)), f"phase {phase.group(1)}"
        fixed = {L.FORGETTING: (0, "the teacher"), L.TEACHER_TRAINING: (0, "the teacher"), L.TEACHER: (0, "the teacher"),
                 L.TEACHER_INFO: (1, "the teacher's predictions"), L.TEACHER_PRED: (1, "the teacher's predictions"),
                 L.SCORES: (2, "the scores"), L.START: (4, "the starting set"), L.PHASES: (10**6, "the final set"),
                 L.SELECTED: (10**6, "the final set"), L.SYNTHETIC: (10**6, "the final set"),
                 L.SOFT_LABELS_RECORD: (10**6 + 1, "the shared soft labels"), L.EVAL: (10**6 + 3, "the evaluation"),
                 L.REPORT: (10**6 + 4, "the report"), L.COMPARISON: (10**6 + 4, "the report")}
        if name in fixed:
            return fixed[name]
        if name.startswith(L.DISTILLED + "/"):
            return 3, "the distilled part"
        if name.startswith(L.EVAL_DIR + "/") and name.endswith(".json"):
            return 10**6 + 2, f"evaluation run {name[len(L.EVAL_DIR) + 1:-5]}"
        if re.fullmatch(r"fig_.+\.png", name):
            return 10**6 + 4, "the report"
        return None


# Files a run directory holds before any stage has finished: removing them loses no work.
_BOOKKEEPING = {Layout.CONFIG, Layout.DATA, Layout.LOG, Layout.TIMINGS, Layout.LOCK, CHECKSUMS}


class RunDir:
    def __init__(self, path, cfg: RunConfig):
        self.path, self.cfg = Path(path), cfg
        self.created = False
        self.checksums: dict[str, str] = {}  # what the run wrote, checked (repair) and kept (atomic.tracking)
        self.timings, self.precision, self.decisions = {}, {}, {}
        self.lock = PidLock(self.path / ".lock")

    def release(self) -> None:
        self.lock.release()

    def check(self, repair: bool = True) -> None:
        """Refuse a folder that is not this run's before anything is computed. Writes nothing, except a
        damaged config.yaml whose checksum says it held these settings: written again when REPAIR (a plan
        only reports it)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} is a file: pass a folder for the run")
        config = path / Layout.CONFIG
        damaged = config.is_file() and self._damaged(Layout.CONFIG)
        if damaged and hashlib.sha256(self.settings_text().encode()).hexdigest() == damaged:
            print(f"fastccfs: {config} was damaged since the run wrote it; these settings are the ones it held "
                  f"(its checksum says so): {'writing it again' if repair else 'the run will write it again'}",
                  file=sys.stderr, flush=True)
            if not repair:
                return
            write_text(config, self.settings_text())
        elif damaged:
            raise UserError(f"{config} is damaged (it is not what the run wrote), and these settings are not the ones "
                            "it held: pass the run's settings to repair it, or another --out")
        if config.is_file():
            try:
                before = yaml.safe_load(config.read_text())
            except yaml.YAMLError:
                before = None
            if not isinstance(before, dict):
                raise UserError(f"{config} is not a run's settings (empty or damaged): pass another --out, or "
                                f"delete that file to start this run there")
            refuse_other_settings(before, self.cfg.science(), f"{path} holds a run",
                                  "pass another --out, or the same settings to resume it")
        elif path.is_dir() and any(p.name != ".lock" for p in path.iterdir()):
            raise UserError(f"--out {path} is a folder that holds other files: pass a new or empty folder")

    def settings_text(self) -> str:
        return yaml.safe_dump(self.cfg.science(), sort_keys=False)

    def _damaged(self, name: str) -> str | None:
        """The checksum recorded for NAME when the file differs from it (damaged since the run wrote it)."""
        recorded = (read_checksums(self.path) or {}).get(name)
        return recorded if recorded and file_sha256(self.path / name) != recorded else None

    @staticmethod
    def data_text(data: dict) -> str:
        return json.dumps(data, indent=1) + "\n"  # as fastccfs.atomic.write_json writes it

    def check_data(self, stores: dict, repair: bool = True) -> dict:
        """Refuse to resume a run on other data (data.json: each split's content fingerprint); a damaged
        data.json whose checksum says it held this data is written again when REPAIR."""
        data = {split: store.content_fingerprint() for split, store in stores.items()}
        record = self.path / Layout.DATA
        damaged = record.is_file() and self._damaged(Layout.DATA)
        if damaged and hashlib.sha256(self.data_text(data).encode()).hexdigest() == damaged:
            print(f"fastccfs: {record} was damaged since the run wrote it; this data is the run's (its checksum "
                  f"says so): {'writing it again' if repair else 'the run will write it again'}", file=sys.stderr,
                  flush=True)
            if not repair:
                return data
            write_text(record, self.data_text(data))
        elif damaged:
            raise UserError(f"{record} is damaged (it is not what the run wrote), and this data is not the run's: "
                            "pass another --out")
        try:
            before = json.loads(record.read_text()) if record.is_file() else data
        except ValueError:
            before = None
        if not isinstance(before, dict):
            raise UserError(f"{record} is damaged and does not say which data the run used: pass another --out")
        if before != data:
            raise UserError(f"{self.path} was started on other data (the {self.cfg.dataset} store has changed "
                            "since: samples moved, added or removed): pass another --out")
        return data

    def create(self, data: dict) -> None:
        """Make the folder (if new), take its lock, write config.yaml and data.json; the run owns the
        folder from here until release()."""
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise UserError(f"cannot make the run directory {self.path} ({e.strerror}): pass another --out") from None
            self.created = True
        if not self.lock.acquire():
            raise UserError(f"another fastccfs process (pid {self.lock.owner()}) is running the run in {self.path}: "
                            "wait for it to finish, or pass another --out")
        for folder in (self.path, self.path / Layout.EVAL_DIR):
            remove_stale_temps(folder)  # half-written files of a killed earlier attempt
        self.checksums = self.repair()
        if not (self.path / Layout.DATA).is_file():
            write_json(self.path / Layout.DATA, data)
        if not (self.path / Layout.CONFIG).is_file():
            write_text(self.path / Layout.CONFIG, self.settings_text())
        for name in (Layout.DATA, Layout.CONFIG):  # checked against the settings and data given (check())
            self.checksums[name] = file_sha256(self.path / name)
        timings = self.path / Layout.TIMINGS
        try:
            earlier = json.loads(timings.read_text()) if timings.is_file() else {}
        except ValueError:
            earlier = None
        if not isinstance(earlier, dict):  # the times of earlier attempts are lost; the run's results are not
            print(f"fastccfs: {timings} is damaged: the stages' times start again", file=sys.stderr, flush=True)
            earlier = {}
        self.timings, self.precision = earlier.get("stages", {}), earlier.get("precision", {})
        self.decisions = earlier.get("decisions", {})

    def repair(self) -> dict[str, str]:
        """Each output the run wrote, checked against the checksum recorded as it was written: a damaged
        one (truncated, overwritten, one bit flipped), or one whose checksum is missing, is removed with
        every output of its stage and of the stages after it (Layout.stage_of), one line saying so; the
        stages then run again as in an uninterrupted run. Returns the checksums of what is kept. A folder of
        an earlier fastccfs (no checksums) has its files' checksums recorded as they are."""
        recorded = read_checksums(self.path)
        present = {p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()}
        outputs = {name for name in present if Layout.stage_of(name) is not None}
        if recorded is None:
            return {name: file_sha256(self.path / name) for name in outputs | ({Layout.TIMINGS} & present)}
        kept = {name: h for name, h in recorded.items() if name in present}
        bad = {name for name in outputs if name not in kept or file_sha256(self.path / name) != kept[name]}
        if Layout.TIMINGS in kept and file_sha256(self.path / Layout.TIMINGS) != kept[Layout.TIMINGS]:
            kept.pop(Layout.TIMINGS)  # create() reads it and says so if it is damaged
        if not bad:
            return kept
        first = min(bad, key=lambda name: Layout.stage_of(name)[0])
        rank, what = Layout.stage_of(first)
        if rank == Layout.stage_of(Layout.eval_run("m", 0))[0]:  # evaluation runs: each one alone
            doomed = bad | {name for name in outputs if Layout.stage_of(name)[0] > rank}
            what = ", ".join(sorted(Layout.stage_of(name)[1] for name in bad))
        else:
            doomed = {name for name in outputs if Layout.stage_of(name)[0] >= rank}
            if rank <= Layout.stage_of(Layout.SOFT_LABELS_RECORD)[0]:  # the arrays its record vouches for
                doomed |= {Layout.SOFT_LABELS, Layout.SOFT_LABEL_CLASSES} & present
        print(f"fastccfs: {self.path / first} is damaged (it is not what the run wrote"
              f"{'' if first in kept else ': no checksum'}): redoing {what} and what follows it"
              f"{'' if len(bad) == 1 else f' ({len(bad)} damaged files)'}", file=sys.stderr, flush=True)
        for name in doomed:
            (self.path / name).unlink(missing_ok=True)
            kept.pop(name, None)
            for parent in (self.path / name).parents:  # folders left empty (distilled/new000/, …)
                if parent == self.path or any(parent.iterdir()):
                    break
                parent.rmdir()
        return kept

    # Where each stage's outputs are, and whether the stage has finished (its last file is written last).
    def phase_file(self, j: int, ext: str) -> Path:
        return self.path / Layout.phase(j, ext)

    def eval_file(self, name: str, r: int) -> Path:
        return self.path / Layout.eval_run(name, r)

    def teacher_trained(self) -> bool:
        return (self.path / Layout.TEACHER).is_file()

    def phase_done(self, j: int) -> bool:
        return self.phase_file(j, "json").is_file()

    def eval_done(self, name: str, r: int) -> bool:
        return self.eval_file(name, r).is_file()

    def finished_summary(self) -> dict | None:
        """The run's summary when every stage has finished (eval.json, or with no evaluation the final
        set), else None."""
        if self.cfg.num_eval:
            path = self.path / Layout.EVAL
            return json.loads(path.read_text()) if path.is_file() else None
        path = self.path / Layout.SYNTHETIC
        if not (path.is_file() and (self.path / Layout.SELECTED).is_file()):
            return None
        import numpy as np

        with np.load(path) as data:
            size = len(data["distilled_labels"]) + len(data["real_indices"])
        return {"set_size": size, "ipc": self.cfg.ipc, "models": {}}

    def abandon(self) -> None:
        """After a failure: remove the folder if this run made it and finished nothing in it."""
        if self.created and self.path.is_dir() and {p.name for p in self.path.iterdir()} <= _BOOKKEEPING:
            shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def timed(self, stage: str):
        """Record the wall-clock of STAGE in timings.json (a resumed run keeps earlier stages' times)."""
        start = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - start, 3)
        self.save_timings()

    def save_timings(self) -> None:
        """A collective write (fastccfs.distributed.rank0_path): every rank calls it, rank 0's timings land."""
        from fastccfs import distributed
        from fastccfs.machine import machine
        from fastccfs.precision import decisions

        # the dtype each model computed in under amp auto, and where: the figures' context
        write_json(self.path / Layout.TIMINGS, {"stages": self.timings,
                                                "total_s": round(sum(self.timings.values()), 3),
                                                "machine": machine(), "precision": {**self.precision, **decisions()},
                                                "decisions": self.decisions,
                                                **distributed.describe()}, via=distributed.rank0_path)


class RunLog:
    """Copies what the process prints into RUN/run.log: each line stamped with the time, progress bars'
    carriage-return frames reduced to their last state. `quiet`: the terminal gets nothing from log()."""

    def __init__(self, path: Path, quiet: bool):
        self.file = open(path, "a", encoding="utf-8")
        self.quiet = quiet
        self.partial = {"out": "", "err": ""}
        self.streams = {}

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)  # reaches the file through the tee
        else:
            self._write("out", message + "\n")

    def _write(self, name: str, text: str) -> None:
        buf = self.partial[name] + text
        *lines, self.partial[name] = buf.split("\n")
        for line in lines:
            line = _last_frame(line)
            if line.strip():
                self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self.file.flush()

    def __enter__(self):
        for name in ("out", "err"):
            stream = getattr(sys, f"std{name}")
            self.streams[name] = stream
            setattr(sys, f"std{name}", _Tee(stream, lambda text, n=name: self._write(n, text)))
        return self

    def __exit__(self, *exc):
        for name, stream in self.streams.items():
            setattr(sys, f"std{name}", stream)
            if self.partial[name]:
                self._write(name, "\n")
        self.file.close()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _last_frame(line: str) -> str:
    """A terminal line as it ends up on screen: the text after its last carriage return, no escapes."""
    line = _ANSI.sub("", line).rstrip("\r")
    return line.rsplit("\r", 1)[-1]


class _Tee:
    def __init__(self, stream, copy):
        self.stream, self.copy = stream, copy

    def write(self, text):
        self.copy(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, … as the real stream
        return getattr(self.stream, name)
