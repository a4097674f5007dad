"""The evaluation stage: each evaluation model trained from scratch on the final set with KD, num_eval
seeds each, one file per run (a resumed run redoes only the runs that had not finished)."""
from __future__ import annotations

import json
import time

import numpy as np

from fastccfs import distributed
from fastccfs.atomic import write_json
from fastccfs.context import Context, train_on
from fastccfs.distributed import rank0_path
from fastccfs.rundir import Layout, RunDir
from fastccfs.synthetic import SyntheticSet

def stage_eval(ctx: Context, final: SyntheticSet, teacher, run_dir: RunDir) -> dict:
    """Train each evaluation model from scratch on the final set with KD, num_eval seeds each."""
    cfg, out = ctx.cfg, ctx.out
    epochs = cfg.eval_epochs or cfg.epochs
    jobs = [(name, r) for name in cfg.eval_models for r in range(cfg.num_eval)
            if not run_dir.eval_done(name, r)]

    def evaluate(job):
        name, r = job
        ctx.log(f"evaluation: {name} {r + 1}/{cfg.num_eval} on {len(final)} images for {epochs} epochs"
                f"{ctx.work.left() if ctx.work else ''}")
        t = time.perf_counter()
        _, history = train_on(ctx, final, name, ctx.seed("eval", r), teacher, epochs, evaluate=True,
                              desc=f"eval {name} {r + 1}/{cfg.num_eval}", distributed=False)
        accs = history["test_acc"]
        return (name, r, time.perf_counter() - t,
                {"final_epoch_acc": accs[max(accs)], "max_last_20pct_acc": max(accs.values()),
                 "test_acc_by_epoch": {str(e): a for e, a in accs.items()}, "seconds": history["seconds"],
                 "batch_size": history["batch_size"], "rank": distributed.rank()})

    # Under torchrun the runs are dealt to the ranks, each trained whole in its process (its seed alone
    # decides it: the results are the sequential ones); every rank gets each round's records and rank 0
    # writes them (collective writes). One process runs them in order.
    for records in distributed.deal(jobs, evaluate):
        for name, r, wall, record in records:
            write_json(run_dir.eval_file(name, r), record, via=rank0_path)
            run_dir.timings[f"eval_{name}_{r}"] = round(wall, 3)
        run_dir.save_timings()
    results = {}
    for name in cfg.eval_models:
        runs = [json.loads(run_dir.eval_file(name, r).read_text()) for r in range(cfg.num_eval)]
        results[name] = {key: _mean_std([run[key] for run in runs]) for key in ("final_epoch_acc", "max_last_20pct_acc")}
        results[name]["runs"] = len(runs)
    summary = {"set_size": len(final), "ipc": cfg.ipc, "epochs": epochs,
               "labels": {"final_epoch_acc": "test accuracy after the last epoch",
                          "max_last_20pct_acc": f"max test accuracy over epochs > {cfg.eval_from:g}·epochs (the "
                                                "reference's report with the default 0.8)"},
               "models": results}
    write_json(out / Layout.EVAL, summary, via=rank0_path)
    return summary


def _mean_std(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None, "values": values.tolist()}
