"""`fastccfs run`: the orchestration that walks the stages — teacher → difficulty scores → the method's
final set (CCFS: starting set → J curriculum phases; or a baseline) → evaluation — into a run directory.

Each stage writes its outputs atomically and its last file marks it finished (fastccfs.rundir.RunDir
holds every file name and every "is this stage done" check); a re-run with the same settings skips
finished stages, so a killed run resumes after its last finished stage and ends with the same selection
(every stage's randomness comes from (seed, stage)). Where each stage lives:

  checks.py      every check that can be made before work
  teacher.py     the teacher and the scores
  methods.py     the registered methods (ccfs, the baselines): the final set
  curriculum.py  CCFS's starting set and phases
  evaluation.py  the evaluation runs
  context.py     what the stages share (settings, stores, device, messages; training a set with KD)

The stages' computations (train_teacher, curriculum_phase) take no run directory, so the benchmarks
and the Python API call the very code `fastccfs run` executes.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from fastccfs import distributed, registry
from fastccfs.atomic import tracking, write_json
from fastccfs.checks import check_resources, validate
from fastccfs.config import RunConfig
from fastccfs.context import Context, WorkPlan
from fastccfs.evaluation import stage_eval
from fastccfs.rundir import Layout, RunDir, RunLog
from fastccfs.store import convert
from fastccfs.teacher import stage_scores, stage_teacher


def plan_work(ctx: Context, run_dir: RunDir) -> WorkPlan:
    """The training images still to process: the teacher (when trained here), each unfinished filter of
    the method and each unfinished evaluation run."""
    cfg, n, c = ctx.cfg, len(ctx.train), ctx.num_classes
    method = registry.get("method", cfg.method)
    work = WorkPlan()
    if not cfg.teacher and not run_dir.teacher_trained():
        work.add(cfg.teacher_epochs * n)
    for j, size in enumerate(method.filter_sets(cfg, c), 1):
        if size and not run_dir.phase_done(j):
            work.add(cfg.epochs * size)
    real = method.real_per_class(cfg)
    final = n if real is None else c * cfg.ipc
    for name in cfg.eval_models:
        for r in range(cfg.num_eval):
            if not run_dir.eval_done(name, r):
                work.add((cfg.eval_epochs or cfg.epochs) * final)
    return work


def run(cfg: RunConfig, out: str | Path, device=None, progress: bool = True, plan_only: bool = False) -> dict:
    """Every stage of CCFS (or a baseline) into the run directory OUT; resumes a run started there.

    Everything that can be checked without computing is checked before the directory is made, and a run
    that fails before finishing its first stage leaves no directory behind. plan_only: print the plan (the
    stages still to do, their image-epochs and estimated time) and return it; the run folder is not touched."""
    validate(cfg)  # every check that needs no data, before anything is written
    device = distributed.init(device)  # under torchrun: join the job; every rank runs every stage
    progress = progress and distributed.is_main()
    run_dir = RunDir(out, cfg)
    run_dir.check(repair=not plan_only)  # a plan touches nothing in the folder
    device = distributed.resolve_device(device)
    t = time.perf_counter()
    with distributed.rank0_first():  # rank 0 decodes into the shared cache, the others open its result
        stores = convert(cfg.dataset, cfg.root, cfg.cache, progress=progress)
        validate(cfg, stores["train"], stores["test"])  # and those against the stores, before any training
        check_resources(cfg, stores["train"], stores["test"], run_dir.path, device)
        if registry.get("backend", cfg.loader).form is not None:  # the backend reads its own form of the stores
            from fastccfs.formats import convert_store

            for store in stores.values():
                convert_store(store, cfg.loader, progress=progress)
    convert_s = time.perf_counter() - t  # opening the stores when they exist, decoding the dataset when not
    data = run_dir.check_data(stores, repair=not plan_only)
    if plan_only:
        from fastccfs.plan import build_plan, format_plan

        plan = build_plan(Context(cfg, None, stores["train"], stores["test"], device, progress), run_dir)
        if distributed.is_main():
            print(format_plan(plan, cfg), flush=True)
        return {"plan": plan}
    main = distributed.is_main()
    try:
        if main:
            run_dir.create(data)
            run_dir.timings.setdefault("convert", round(convert_s, 3))
        distributed.barrier()
        with RunLog(run_dir.path / Layout.LOG, quiet=not progress) if main else nullcontext() as logger, \
                tracking(run_dir.path, run_dir.checksums) if main else nullcontext():  # each output's checksum
            try:
                summary = _run_stages(cfg, run_dir, stores, device, progress, logger)
            except Exception as e:
                if logger is not None:
                    logger.log(f"fastccfs: error: {e}")
                raise
    except BaseException:
        if main:
            run_dir.release()
            run_dir.abandon()
        raise
    if main:
        run_dir.release()
    return summary


def _run_stages(cfg: RunConfig, run_dir: RunDir, stores: dict, device, progress: bool, logger: RunLog) -> dict:
    from fastccfs import kernels

    out = run_dir.path
    ctx = Context(cfg, out, stores["train"], stores["test"], device, progress, logger)
    finished = run_dir.finished_summary()
    if finished is not None:  # nothing to compute: no kernel compile, no model, no report unless it is missing
        rebuilt = cfg.report and distributed.is_main() and not (out / Layout.REPORT).is_file()
        ctx.log(f"fastccfs run {cfg.dataset}, IPC {cfg.ipc}, {cfg.method} → {out}: finished earlier; nothing "
                f"recomputed{' (report.html written again: it was missing)' if rebuilt else ''}")
        if rebuilt:
            from fastccfs.report import build_report

            build_report(out, store=ctx.train)
        return finished
    ctx.work = plan_work(ctx, run_dir)
    ctx.log(f"fastccfs run {cfg.dataset}, IPC {cfg.ipc}, {cfg.method} → {out} ({device})")
    if distributed.is_main():  # the wait, known before the first expensive step (timings.json keeps it)
        from fastccfs.plan import build_plan, format_plan

        plan = build_plan(ctx, run_dir)
        ctx.log(format_plan(plan, cfg))
        run_dir.decisions["plan"] = plan
    run_dir.timings["compile_kernels"] = round(kernels.warm_up(), 3)  # numba: compiled once, then cached on disk
    with run_dir.timed("teacher"):
        teacher, teacher_pred = stage_teacher(ctx)
    with run_dir.timed("scores"):
        scores = stage_scores(ctx)
    final = registry.get("method", cfg.method).build(ctx, scores, teacher, teacher_pred, run_dir)
    write_json(out / Layout.SELECTED,
               {"ipc": cfg.ipc, "alpha": cfg.alpha, "idx_selected": final.real_indices.tolist()},
               via=distributed.rank0_path)
    final.save(out / Layout.SYNTHETIC, ctx.train, via=distributed.rank0_path)
    summary = stage_eval(ctx, final, teacher, run_dir) if cfg.num_eval else {"set_size": len(final), "ipc": cfg.ipc,
                                                                             "models": {}}
    if "plan" in run_dir.decisions:  # the estimate next to the real time (rank 0 made the plan)
        from fastccfs.plan import with_measured

        run_dir.decisions["plan"] = with_measured(run_dir.decisions["plan"], run_dir.timings)
    run_dir.save_timings()  # a collective write: every rank calls it
    from fastccfs.report import build_report

    if cfg.report and distributed.is_main():  # a sweep of many runs (benchmarks/study.py) skips each run's figures
        build_report(out, store=ctx.train)
    return summary

