"""Evaluation runs side by side (`--eval-jobs N`): N worker processes, each with cores / N threads.

A run's numbers depend on its seed and on the threads it computes with, not on what runs beside it:
each worker builds its own models from the run's seed, reads the stores (memory-mapped, shared by the
page cache) and the teacher's weights, and sets its thread count before any work. `--eval-jobs 1` runs
in this process with the same thread count a worker would get, so `--eval-jobs 2` and `--eval-jobs 1`
give bitwise-equal runs when both compute with the same threads per run (tests/test_eval_jobs.py).

`auto` decides by a short measurement: the evaluation model's training step at its batch shape, timed
in N processes at once (cores / N threads each) for each candidate N, and the N whose rounds of runs
take least is kept (ceil(runs / N) rounds × the step time measured beside N − 1 others). The decision is
made once per machine, model, batch shape and run count, and kept in CACHE/eval_jobs.json.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor

import torch

from fastccfs import machine_cache

_worker: dict = {}  # in a worker process: what its runs need (set once by _start)


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """The threads of each of JOBS runs side by side: this process's threads, split."""
    return max(1, (threads or torch.get_num_threads()) // jobs)


def set_threads(threads: int) -> int:
    """Compute with THREADS threads: torch's and numba's (the loaders' crop kernels are parallel numba; left
    at every core, runs side by side would oversubscribe the CPU). Returns the torch thread count before."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    except ImportError:
        pass
    return previous


def candidates(runs: int, device: torch.device, threads: int) -> list[int]:
    """The job counts worth measuring: 1 and powers of two up to the runs and (on a CPU) the cores."""
    limit = min(runs, threads if device.type == "cpu" else 4)
    return [n for n in (1, 2, 4, 8, 16) if n <= max(limit, 1)]


class Workers:
    """Runs jobs N at a time: in this process when N is 1, else in N spawned worker processes.

    work(state, job, slot) → result is a module-level function; state is what it needs (picklable: each
    worker gets it once); make_state(state) turns it into the worker's live state (opened stores, models)."""

    def __init__(self, jobs: int, work, state, make_state, threads: int):
        self.jobs, self.work, self.threads = jobs, work, threads
        self.pool = None
        if jobs == 1:
            self.local = make_state(state)
        else:
            self.pool = ProcessPoolExecutor(jobs, mp_context=_context(), initializer=_start,
                                            initargs=(make_state, state, threads, os.getpid()))

    def run(self, jobs: list) -> list:
        """The results of JOBS (at most N of them run at once), in job order."""
        if self.pool is None:
            previous = set_threads(self.threads)
            try:
                return [self.work(self.local, job, None) for job in jobs]
            finally:
                set_threads(previous)
        with _main_script_hidden():  # the pool starts its processes on the first submit
            futures = [self.pool.submit(_run, self.work, job, slot % self.jobs) for slot, job in enumerate(jobs)]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextmanager
def _main_script_hidden():
    """Start processes without them re-running the caller's script: a child of spawn or forkserver imports
    the parent's __main__ file first, so a script calling fastccfs.run without an `if __name__ == "__main__"`
    guard would start its run again in every worker. The workers need only fastccfs's own functions."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:  # `python -m …` (skipped anyway) or a REPL
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _context():
    """Worker processes forked from a fresh server that has imported fastccfs only: not forked from this
    process (fork after OpenMP has started threads can hang)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fastccfs.evaluation"])
    return context


def _start(make_state, state, threads: int, main_pid: int | None = None) -> None:
    if main_pid is not None:
        _exit_with(main_pid)
    set_threads(threads)
    _worker["state"] = make_state(state)


def _exit_with(pid: int) -> None:
    """End this worker as soon as process PID (the run) is gone, even in the middle of a run: a killed run
    leaves no worker behind. (Workers are the forkserver's children, and each holds the forkserver's
    liveness pipe, so neither the parent-death signal nor the forkserver would end them.)"""
    import threading

    def watch():
        try:
            import select

            fd = os.pidfd_open(pid)  # Linux ≥ 5.3: readable when the process ends
            select.select([fd], [], [])
        except (AttributeError, OSError):
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:  # alive, another user's: cannot happen for our parent
                    pass
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="fastccfs-exit-with-run").start()


def _run(work, job, slot):
    return work(_worker["state"], job, slot)


# ------------------------------------------------------------------------------------------- auto

def decide(requested: str, runs: int, device: torch.device, probe, key: str) -> dict:
    """The number of runs to train at once: REQUESTED ("auto" or N), for RUNS runs on DEVICE.

    probe: (module-level function, its arguments) → seconds per training step of one run, in a process
    whose thread count is set. Returns {"jobs", "threads_per_job", "source", "measured_s_per_step"?}."""
    threads = torch.get_num_threads()
    if requested != "auto":
        jobs = max(1, min(int(requested), runs))
        return {"jobs": jobs, "threads_per_job": threads_per_job(jobs, threads), "source": "given"}
    options = candidates(runs, device, threads)
    if len(options) == 1:
        return {"jobs": 1, "threads_per_job": threads, "source": "one candidate"}
    key = f"{key}|{device.type}|{threads} threads|{runs} runs"
    cached = machine_cache.load("eval_jobs.json").get(key)
    if isinstance(cached, dict) and cached.get("jobs") in options:
        return {**cached, "source": "measured earlier on this machine"}
    measured = {n: measure(n, probe, threads_per_job(n, threads)) for n in options}
    rounds = {n: math.ceil(runs / n) * s for n, s in measured.items()}
    jobs = min(rounds, key=rounds.get)
    decision = {"jobs": jobs, "threads_per_job": threads_per_job(jobs, threads),
                "measured_s_per_step": {str(n): round(s, 5) for n, s in measured.items()},
                "predicted_relative_time": {str(n): round(t / rounds[1], 3) for n, t in rounds.items()}}
    machine_cache.keep("eval_jobs.json", key, decision)
    return {**decision, "source": "measured"}


def measure(jobs: int, probe, threads: int) -> float:
    """Seconds per training step of one run while JOBS runs step at once (each with THREADS threads)."""
    probe, args = probe
    if jobs == 1:
        previous = set_threads(threads)
        try:
            return probe(*args)
        finally:
            set_threads(previous)
    context = _context()
    barrier, results = context.Barrier(jobs), context.Queue()
    procs = [context.Process(target=_probe_worker, args=(probe, args, threads, barrier, results), daemon=True)
             for _ in range(jobs)]
    with _main_script_hidden():
        for p in procs:
            p.start()
    try:
        times = [results.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return max(times)  # the round ends with its slowest run


def _probe_worker(probe, args, threads, barrier, results) -> None:
    set_threads(threads)
    results.put(probe(*args, barrier=barrier))
