"""The paper's high-IPC claims at CPU scale, on the real CIFAR-10: one command writes docs/results.md.

    .venv/bin/python benchmarks/study.py                # ~1.5 h on 2 CPU cores; resumable (re-run to continue)
    .venv/bin/python benchmarks/study.py --scale smoke  # the same study on a toy scale (CI checks it)

Everything runs through `fastccfs.pipeline.run` (the code of `fastccfs run`):
1. CIFAR-10's train split is cut, per class and seeded, into a POOL (what every method selects from and
   trains on) and a VALIDATION part; the official test split is touched only by the final runs.
   Two .npz datasets share the pool as their train split: pool→validation (tuning) and pool→test.
2. A teacher (ConvNet-BN, the teacher recipe) is trained on the pool and tested on validation after
   every epoch (its curve); its forgetting counts are fastccfs's own scores. CDA recovers the distilled
   images once from it. Both are kept beside docs/study.json, so that a study resumed on another machine
   continues from the very same teacher and distilled images.
3. On validation only: lr (random real images), then per pool ratio the oracle window's β and CCFS's α,
   each on a ladder of values that is walked until the best value has a tried neighbour on both sides.
4. On the test split with the chosen values, every cell over the same seeds: Table 1 at each ratio,
   Tables 3, 4, 5 at the first ratio; Fig. 4 from the Table 1 CCFS runs.
Each finished run's numbers go into DOCS/study.json at once; a run already there is never run again.
The numbers of results.md come from study.json alone.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# Each ladder is walked from its start and the start's neighbours (tune()); per ratio where keyed by it.
LR_LADDER = (0.003125, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)
BETA_LADDER = tuple(round(0.1 * i, 1) for i in range(9))
ALPHA_LADDER = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
SCALES = {
    "cpu": dict(pool_per_class=300, val_per_class=500, test_per_class=None, ratios=(0.1, 0.2), epochs=40,
                teacher_epochs=60, seeds=3, distill_iterations=200, workers=2,
                lr=(LR_LADDER, 0.1), beta=(BETA_LADDER, {0.1: 0.2, 0.2: 0.2}),
                # α starts at the reference scripts' values: ccfs_cifar10.sh IPC 500 (10 %) 0.1, IPC 1000 (20 %) 0.3
                alpha=(ALPHA_LADDER, {0.1: 0.1, 0.2: 0.3})),
    "smoke": dict(pool_per_class=50, val_per_class=10, test_per_class=10, ratios=(0.1, 0.2), epochs=1,
                  teacher_epochs=1, seeds=2, distill_iterations=2, workers=2,
                  lr=((0.05,), 0.05), beta=((0.0, 0.2), {0.1: 0.0, 0.2: 0.0}),
                  alpha=((0.2, 0.3), {0.1: 0.2, 0.2: 0.3})),
}
# Fixed for every run: the dataset-distillation ConvNet with BatchNorm as filter, teacher and evaluation
# model (CDA needs BN statistics); 2 warm-up epochs; one evaluation per seed, tested after its last epoch;
# the published forgetting scores cut to the pool (what CCFS's code uses); no per-run report (the study
# draws its own figures from study.json).
FIXED = dict(model="convnet_bn", teacher_model="convnet_bn", eval_models=["convnet_bn"], warmup_epochs=2,
             num_eval=1, eval_from=1.0, score="forgetting", phases=3, filter_test=False, inference="needed",
             report=False)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # Student t, 95 % two-sided, df 1–10


# ---------------------------------------------------------------------------------------------- data


def split_pool(labels: np.ndarray, pool_per_class: int, val_per_class: int, seed: int = 0):
    """Per class, a seeded permutation: the first val_per_class go to validation, the next to the pool."""
    rng = np.random.default_rng(seed)
    pool, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < pool_per_class + val_per_class:
            raise SystemExit(f"class {c} has {len(members)} images, fewer than pool + validation")
        val.append(members[:val_per_class])
        pool.append(members[val_per_class:val_per_class + pool_per_class])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(val))


def prepare_data(work: Path, scale: dict, cifar_root: Path | None) -> dict:
    """The two pool datasets (decoded into stores), the pool's published scores and its CIFAR-10 indices."""
    from fastccfs.atomic import atomic_path, save_arrays
    from fastccfs.store import convert

    data = work / "data"
    files = {"val": data / "cifar10-pool-val.npz", "test": data / "cifar10-pool-test.npz",
             "forgetting": data / "forgetting_published.npy", "cscore": data / "cscore_published.npz",
             "pool": data / "pool_indices.npy"}
    if not all(f.is_file() for f in files.values()):
        if cifar_root is None:
            cifar_root = work / "cifar-root"
            if not (cifar_root / "cifar-10-batches-py").is_dir():
                subprocess.run([sys.executable, str(SHARED / "make_cifar10_batches.py"), str(cifar_root)], check=True,
                               stdout=subprocess.DEVNULL)
        stores = convert("cifar10", cifar_root, work / "cache", progress=False)
        train, test = stores["train"], stores["test"]
        pool, val = split_pool(train.labels, scale["pool_per_class"], scale["val_per_class"])
        x_pool, y_pool = np.asarray(train.images[pool]), train.labels[pool]
        classes = np.array(train.classes)
        save_arrays(files["val"], x_train=x_pool, y_train=y_pool, x_test=np.asarray(train.images[val]),
                    y_test=train.labels[val], classes=classes)
        # The whole official test split; the smoke scale takes a per-class sample of it to stay fast.
        held = (np.arange(len(test)) if scale["test_per_class"] is None
                else np.sort(np.concatenate([np.flatnonzero(test.labels == c)[:scale["test_per_class"]]
                                             for c in range(test.num_classes)])))
        save_arrays(files["test"], x_train=x_pool, y_train=y_pool, x_test=np.asarray(test.images[held]),
                    y_test=test.labels[held], classes=classes)
        with atomic_path(files["forgetting"]) as tmp, open(tmp, "wb") as f:
            np.save(f, np.load(SHARED / "reference-scores" / "forgetting_CIFAR10.npy")[pool])
        with np.load(SHARED / "reference-scores" / "cscores_CIFAR10.npz") as cs:
            assert (cs["labels"][pool] == y_pool).all(), "published c-score labels disagree with the CIFAR-10 order"
            save_arrays(files["cscore"], scores=cs["scores"][pool], labels=cs["labels"][pool])
        with atomic_path(files["pool"]) as tmp, open(tmp, "wb") as f:
            np.save(f, pool)
    for split in ("val", "test"):  # decoded here, once, before the workers open them side by side
        convert(str(files[split]), None, work / "cache", progress=False)
    return files


# ---------------------------------------------------------------------------------------------- runs


def run_job(job: dict) -> dict:
    """One job in a worker process: a `fastccfs run` (or the CDA recovery), reduced to what the study
    keeps. Runs with `threads` torch threads (1 when two jobs share the 2 cores)."""
    import torch

    torch.set_num_threads(job["threads"])
    t = time.perf_counter()
    if job["kind"] == "distill":
        return {**_distill(job), "seconds": time.perf_counter() - t, "threads": job["threads"]}
    from fastccfs.config import resolve_run_config
    from fastccfs.pipeline import run

    values = {**FIXED, **job["settings"]}
    cfg = resolve_run_config(job["dataset"], job["ipc"], None, values)
    out = Path(job["out"])
    run(cfg, out, device="cpu", progress=False)
    record = {"seconds": time.perf_counter() - t, "threads": job["threads"], "settings": job["settings"],
              "split": job["split"], "ipc": job["ipc"]}
    if (out / "eval.json").is_file():
        ev = json.loads((out / "eval.json").read_text())
        record["acc"] = ev["models"]["convnet_bn"]["final_epoch_acc"]["mean"]
        record["teacher_acc"] = json.loads((out / "teacher.json").read_text())["test_acc"]
    if (out / "phases.json").is_file():
        record["phases"] = [{"phase": p["phase"], "set_size": p["set_size"], "selected": p["selected"],
                             **{k: p[k] for k in ("filter_train_acc", "filter_test_acc") if k in p},
                             "difficulty": np.round(np.load(out / f"phase_{p['phase']}.npz")["difficulty"], 6).tolist()}
                            for p in json.loads((out / "phases.json").read_text())]
    if (out / "teacher_training.json").is_file():
        record["teacher_training"] = json.loads((out / "teacher_training.json").read_text())
        record["teacher_val_acc"] = json.loads((out / "teacher.json").read_text())["test_acc"]
    return record


def _distill(job: dict) -> dict:
    """CDA images for the largest α·IPC any run takes, from the study's teacher, kept as one .npz."""
    from fastccfs.atomic import save_arrays
    from fastccfs.cda import dataset_defaults, distill
    from fastccfs.distilled import read_distilled
    from fastccfs.models import create_model, load_checkpoint
    from fastccfs.store import convert

    store = convert(job["dataset"], None, job["cache"], progress=False)["train"]
    teacher = load_checkpoint(create_model("convnet_bn", store.num_classes), job["teacher"]).eval()
    cfg = dataset_defaults("cifar10")
    cfg.iterations, cfg.seed = job["iterations"], 0
    folder = distill(teacher, store.classes, job["per_class"], store.image_size[0], store.mean, store.std, cfg,
                     job["out"], "cpu", progress=False)
    x, y = read_distilled(folder, store.classes, job["per_class"], store.images.shape[1:])
    save_arrays(job["npz"], images=x, labels=y)
    return {"per_class": job["per_class"], "iterations": job["iterations"]}


class Study:
    """The study's state: DOCS/study.json (every finished run's numbers), the committed teacher and
    distilled images beside it, and the run directories under WORK."""

    def __init__(self, work: Path, docs: Path, scale_name: str, files: dict, progress: bool):
        self.work, self.docs, self.files, self.progress = work, docs, files, progress
        self.scale_name, self.scale = scale_name, SCALES[scale_name]
        self.json = docs / "study.json"
        self.keep = docs / "study"  # the teacher and distilled images every later run loads
        self.res = json.loads(self.json.read_text()) if self.json.is_file() else {}
        plain = json.loads(json.dumps(self.scale))  # as study.json holds it
        if self.res.get("scale_name", scale_name) != scale_name or self.res.get("scale", plain) != plain:
            raise SystemExit(f"{self.json} holds a study at another scale: pass another --docs, or remove it to start over")
        self.res.update(scale_name=scale_name, scale=self.scale, fixed=FIXED)
        self.res.setdefault("runs", {})
        self.pool = None
        self.started = time.perf_counter()

    def log(self, message: str) -> None:
        if self.progress:
            print(f"[{(time.perf_counter() - self.started) / 60:5.1f} min] {message}", flush=True)

    def save(self) -> None:
        from fastccfs.atomic import write_json

        write_json(self.json, self.res)

    def job(self, name: str, split: str, ipc: int, **settings) -> dict:
        values = {"cache": str(self.work / "cache"), "scores": str(self.files["forgetting"]), "seed": 0, **settings}
        return {"kind": "run", "name": name, "split": split, "dataset": str(self.files[split]), "ipc": ipc,
                "settings": values, "out": str(self.work / "runs" / name)}

    def execute(self, jobs: list[dict]) -> None:
        """Run the jobs not yet in study.json, side by side on the scale's workers; each result is saved
        the moment it arrives."""
        todo = [j for j in jobs if j["name"] not in self.res["runs"]]
        if not todo:
            return
        for j in todo:  # two jobs side by side take a core each; a lone job takes both
            j["threads"] = max(1, 2 // min(self.scale["workers"], len(todo)))
        if self.pool is None:  # one pool for the whole study: each worker imports torch once
            self.pool = ProcessPoolExecutor(self.scale["workers"], mp_context=get_context("spawn"))
        futures = {self.pool.submit(run_job, j): j for j in todo}
        for future in as_completed(futures):
            name = futures[future]["name"]
            self.res["runs"][name] = record = future.result()
            self.res["compute_s"] = sum(r["seconds"] * r["threads"] / 2 for r in self.res["runs"].values())
            self.save()
            acc = f", accuracy {100 * record['acc']:.2f} %" if "acc" in record else ""
            self.log(f"{name}: {record['seconds']:.0f} s on {record['threads']} thread(s){acc}")

    def acc(self, name: str) -> float:
        return self.res["runs"][name]["acc"]


def tune(study: Study, ladders: dict, extra: list[dict] = ()) -> dict:
    """Walk every ladder until its best value has a tried neighbour on both sides (or the ladder ends).
    ladders: key → (values, start, make_job(value) → job); EXTRA jobs share the first round. Returns
    key → {value: accuracy}; the ladders advance together, so each round's runs share the workers."""
    tried = {key: set(i for i in (values.index(start) - 1, values.index(start), values.index(start) + 1)
                      if 0 <= i < len(values)) for key, (values, start, _) in ladders.items()}
    while True:
        jobs = [make(values[i]) for key, (values, _, make) in ladders.items() for i in sorted(tried[key])]
        study.execute(list(extra) + jobs)
        extra = ()
        grew = False
        for key, (values, _, make) in ladders.items():
            scores = {i: study.acc(make(values[i])["name"]) for i in tried[key]}
            best = max(sorted(scores), key=scores.get)  # a tie goes to the smaller value
            step = -1 if best == min(scores) else 1 if best == max(scores) else 0
            if step and 0 <= best + step < len(values) and best + step not in tried[key]:
                tried[key].add(best + step)
                grew = True
        if not grew:
            return {key: {values[i]: study.acc(make(values[i])["name"]) for i in sorted(tried[key])}
                    for key, (values, _, make) in ladders.items()}


def pct(ratio: float) -> str:
    return f"r{round(100 * ratio)}"


def plan(study: Study) -> dict:
    """Every run of the study, in order: teacher, tuning (validation), then the tables (test)."""
    sc, res, keep = study.scale, study.res, study.keep
    ipc = {r: round(r * sc["pool_per_class"]) for r in sc["ratios"]}
    common = dict(epochs=sc["epochs"], teacher_epochs=sc["teacher_epochs"])
    # 1. The teacher, trained on the pool and tested on validation every epoch; kept beside study.json.
    study.execute([study.job("teacher", "val", 1, method="random", num_eval=0, scores=None, teacher_test=True,
                             **common)])
    keep.mkdir(parents=True, exist_ok=True)
    teacher_dir = study.work / "runs" / "teacher"
    for name, source in (("teacher.pt", "teacher.pt"), ("forgetting_own.npy", "forgetting.npz")):
        if not (keep / name).is_file():
            if source.endswith(".npz"):
                np.save(keep / name, np.load(teacher_dir / source)["scores"])
            else:
                shutil.copyfile(teacher_dir / source, keep / name)
    common["teacher"] = str(keep / "teacher.pt")

    # 2. lr on random real images (first ratio), side by side with the CDA recovery.
    first = sc["ratios"][0]
    lr_values, lr_start = sc["lr"]
    alpha_values = sc["alpha"][0]
    distill_per_class = math.floor(max(alpha_values) * max(ipc.values()))
    distill = {"kind": "distill", "name": "distill", "dataset": str(study.files["test"]),
               "cache": str(study.work / "cache"), "teacher": common["teacher"], "per_class": distill_per_class,
               "iterations": sc["distill_iterations"], "out": str(study.work / "distilled"),
               "npz": str(keep / "distilled.npz")}
    if len(lr_values) > 1:
        lrs = tune(study, {"lr": (lr_values, lr_start, lambda v: study.job(f"tune-lr{v:g}", "val", ipc[first],
                                                                            method="random", lr=v, **common))},
                   extra=[distill])["lr"]
    else:  # a one-value ladder (the smoke scale): nothing to tune
        study.execute([distill])
        lrs = {lr_start: None}
    common["lr"] = max(lrs, key=lambda v: lrs[v] or 0)
    common["distilled"] = str(keep / "distilled.npz")

    # 3. Per ratio: the window's β and CCFS's α, on validation.
    ladders = {}
    for r in sc["ratios"]:
        ladders[f"beta {pct(r)}"] = (sc["beta"][0], sc["beta"][1][r], lambda v, r=r: study.job(
            f"tune-{pct(r)}-beta{v:g}", "val", ipc[r], method="window", beta=v, **common))
        ladders[f"alpha {pct(r)}"] = (sc["alpha"][0], sc["alpha"][1][r], lambda v, r=r: study.job(
            f"tune-{pct(r)}-alpha{v:g}", "val", ipc[r], alpha=v, **common))
    tuned = tune(study, ladders)
    tuned["lr"] = lrs
    chosen = {key: max(sorted(v), key=lambda x: v[x] or 0) for key, v in tuned.items()}
    res["tuning"] = {key: {"values": {f"{x:g}": a for x, a in v.items()}, "chosen": chosen[key],
                           "ladder": list(sc["lr"][0] if key == "lr" else sc[key.split()[0]][0])}
                     for key, v in tuned.items()}
    study.save()
    study.log("chosen on validation: " + ", ".join(f"{k} {v:g}" for k, v in chosen.items()))

    # 4. The tables on the test split, every cell over the same seeds, in the order of what matters most.
    seeds = range(sc["seeds"])
    tables, jobs = {}, []

    def cell(table: str, row: str, name: str, r: float, **settings):
        names = [f"{name}-s{s}" for s in seeds]
        tables.setdefault(table, {})[row] = names
        jobs.extend(study.job(n, "test", ipc[r], seed=s, **{**common, **settings}) for s, n in zip(seeds, names)
                    if n not in {j["name"] for j in jobs})

    for r in sc["ratios"]:
        beta, alpha = chosen[f"beta {pct(r)}"], chosen[f"alpha {pct(r)}"]
        t1, p = f"table1 {pct(r)}", pct(r)
        cell(t1, "random real", f"{p}-random", r, method="random")
        cell(t1, "forgetting coreset (hardest)", f"{p}-coreset", r, method="coreset")
        cell(t1, f"oracle window (selection only, β = {beta:g})", f"{p}-window", r, method="window", beta=beta)
        cell(t1, "self-evolved from the window", f"{p}-se-window", r, init="window", beta=beta, alpha=alpha,
             distilled=None)
        cell(t1, "self-evolved from random real", f"{p}-se-random", r, init="random", alpha=alpha, distilled=None)
        cell(t1, "CCFS (CDA distilled part)", f"{p}-ccfs", r, alpha=alpha, inference="all", filter_test=True)
        cell(t1, "full pool (same schedule)", "full", r, method="full")
    r = first
    p, ccfs = pct(r), dict(alpha=chosen[f"alpha {pct(r)}"])
    for j in (1, 2, 4):
        cell("table5", f"J = {j}", f"{p}-t5-J{j}", r, phases=j, **ccfs)
    tables["table5"]["J = 3"] = tables[f"table1 {p}"]["CCFS (CDA distilled part)"]
    for c in ("misclassified", "classified"):
        for f in ("simple", "hard", "random"):
            if (c, f) == ("misclassified", "simple"):
                tables.setdefault("table3", {})[f"{c} × {f}"] = tables[f"table1 {p}"]["CCFS (CDA distilled part)"]
            else:
                cell("table3", f"{c} × {f}", f"{p}-t3-{c}-{f}", r, coarse=c, fine=f, **ccfs)
    tables.setdefault("table4", {})["forgetting (published)"] = tables[f"table1 {p}"]["CCFS (CDA distilled part)"]
    cell("table4", "c-score (published)", f"{p}-t4-cscore", r, score="cscore", scores=str(study.files["cscore"]), **ccfs)
    cell("table4", "logits (the filter's)", f"{p}-t4-logits", r, score="logits", scores=None, **ccfs)
    cell("table4", "forgetting (this teacher's)", f"{p}-t4-own", r, scores=str(keep / "forgetting_own.npy"), **ccfs)
    # The evaluation protocol: the same final sets (same seeds and settings as the Table 1 CCFS runs), their
    # evaluation's KD targets from the teacher on each run's own crops (online) or shared (--soft-labels shared).
    tables.setdefault("soft_labels", {})["online (the reference code's)"] = tables[f"table1 {p}"]["CCFS (CDA distilled part)"]
    cell("soft_labels", "shared (the appendix's, CDA-style)", f"{p}-shared", r, soft_labels="shared", inference="all",
         filter_test=True, **ccfs)
    tables["table5"] = {k: tables["table5"][k] for k in ("J = 1", "J = 2", "J = 3", "J = 4")}
    res["tables"], res["ipc"] = tables, {pct(r): ipc[r] for r in sc["ratios"]}
    study.save()
    study.execute(jobs)
    return res


# ----------------------------------------------------------------------------------------- statistics


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of the paired differences a − b (same seed index) with its 95 % Student-t interval."""
    d = np.asarray(a, float) - np.asarray(b, float)
    half = T_975[len(d) - 2] * d.std(ddof=1) / math.sqrt(len(d))
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half), "n": len(d)}


def verdict(interval: dict) -> str:
    """holds: the interval lies above 0; reversed: below 0; else not shown at this scale."""
    return "holds" if interval["low"] > 0 else "reversed" if interval["high"] < 0 else "not shown"


def joint(intervals: list[dict]) -> str:
    """A claim made of several comparisons (X beats each of the others): holds when each holds,
    reversed when any is reversed."""
    words = [verdict(i) for i in intervals]
    return "reversed" if "reversed" in words else "holds" if all(w == "holds" for w in words) else "not shown"


def claims(res: dict) -> list[dict]:
    """The paper's claims, each comparison once: name, the comparisons (label, interval) and the verdict."""
    runs, tables, ratios = res["runs"], res["tables"], [pct(r) for r in res["scale"]["ratios"]]

    def accs(table, row):
        return [runs[n]["acc"] for n in tables[table][row]]

    def comp(table, a, b, label=None):
        return (label or f"{a} − {b}", paired(accs(table, a), accs(table, b)))

    out = []
    ccfs = "CCFS (CDA distilled part)"
    for p in ratios:
        t1 = f"table1 {p}"
        rows = list(tables[t1])
        window = next(k for k in rows if k.startswith("oracle window"))
        for other, claim in (("random real", "CCFS beats random real images"),
                             ("forgetting coreset (hardest)", "CCFS beats the forgetting coreset"),
                             (window, "CCFS beats the oracle window (selection only)"),
                             ("self-evolved from the window", "the distilled start beats a start from the window "
                                                              "(CCFS vs self-evolved, as in the paper)"),
                             ("self-evolved from random real", "the distilled start beats a start from random real "
                                                               "images")):
            c = [comp(t1, ccfs, other)]
            out.append({"claim": f"{claim} ({p[1:]} %)", "comparisons": c, "verdict": verdict(c[0][1])})
    first = ratios[0]
    t3 = tables["table3"]
    c = [comp("table3", "misclassified × simple", k) for k in t3 if k != "misclassified × simple"]
    out.append({"claim": f"misclassified × simple is the best coarse × fine rule (Table 3, {first[1:]} %)",
                "comparisons": c, "verdict": joint([i for _, i in c])})
    c = [comp("table4", "forgetting (published)", k) for k in ("c-score (published)", "logits (the filter's)")]
    out.append({"claim": f"the forgetting score beats the c-score and the filter's logits (Table 4, {first[1:]} %)",
                "comparisons": c, "verdict": joint([i for _, i in c])})
    c = [comp("table5", "J = 3", "J = 1")]
    out.append({"claim": f"a curriculum of J = 3 phases beats one phase (Table 5, {first[1:]} %)", "comparisons": c,
                "verdict": verdict(c[0][1])})
    c = [comp("table5", "J = 3", k) for k in ("J = 2", "J = 4")]
    out.append({"claim": f"J = 3 beats J = 2 and J = 4 (Table 5, {first[1:]} %)", "comparisons": c,
                "verdict": joint([i for _, i in c])})
    for p in ratios:
        names = tables[f"table1 {p}"][ccfs]
        phases = [runs[n]["phases"] for n in names]
        steps = [(f"phase {j + 1} − phase {j}", paired([np.mean(ph[j]["difficulty"]) for ph in phases],
                                                       [np.mean(ph[j - 1]["difficulty"]) for ph in phases]))
                 for j in range(1, len(phases[0]))]
        out.append({"claim": f"each phase picks harder images than the last (Fig. 4b, mean published forgetting "
                             f"score of the picks, {p[1:]} %)", "comparisons": steps, "units": "score",
                    "verdict": joint([i for _, i in steps])})
        last = len(phases[0]) - 1
        c = [(f"phase {last + 1} − phase 1", paired([ph[last]["filter_test_acc"] for ph in phases],
                                                    [ph[0]["filter_test_acc"] for ph in phases]))]
        out.append({"claim": f"the filter grows stronger phase by phase (Fig. 4a, test accuracy, {p[1:]} %)",
                    "comparisons": c, "verdict": verdict(c[0][1])})
    return out


# ------------------------------------------------------------------------------------------- document


def ms(values) -> str:
    """Mean ± sample standard deviation (ddof = 1), in %."""
    v = 100 * np.asarray(values, float)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def interval_text(i: dict, units: str = "points") -> str:
    scale = 1 if units == "score" else 100
    return f"{scale * i['mean']:+.2f} [{scale * i['low']:+.2f}, {scale * i['high']:+.2f}]"


def figures(res: dict, docs: Path) -> dict:
    """The study's figures (from study.json alone): Table 1 bars, the teacher's curve, Fig. 4a, Fig. 4b."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastccfs.atomic import atomic_path

    out = docs / "figures"
    out.mkdir(parents=True, exist_ok=True)
    runs, tables, ratios = res["runs"], res["tables"], [pct(r) for r in res["scale"]["ratios"]]
    paths = {}

    def save(fig, name):
        path = out / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths[name] = path

    fig, axes = plt.subplots(1, len(ratios), figsize=(6 * len(ratios), 3.8), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], ratios):
        rows = tables[f"table1 {p}"]
        vals = [100 * np.array([runs[n]["acc"] for n in rows[k]]) for k in rows]
        ax.barh(range(len(rows)), [v.mean() for v in vals], xerr=[v.std(ddof=1) for v in vals], color="#8fb3d9",
                capsize=3)
        for i, v in enumerate(vals):
            ax.plot(v, [i] * len(v), "k.", ms=4)
        ax.set_yticks(range(len(rows)), list(rows))
        lo = min(v.min() for v in vals)
        ax.set(xlim=(lo - 3, max(v.max() for v in vals) + 1), xlabel="test accuracy (%)",
               title=f"Table 1, {p[1:]} % of the pool (IPC {res['ipc'][p]})")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    save(fig, "study_table1.png")

    teacher = res["runs"]["teacher"]["teacher_training"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    epochs = np.arange(1, len(teacher["train_acc"]) + 1)
    ax.plot(epochs, 100 * np.array(teacher["train_acc"]), label="train pool (augmented, during the epoch)")
    tested = sorted((int(e) + 1, a) for e, a in teacher["test_acc"].items())
    ax.plot([e for e, _ in tested], [100 * a for _, a in tested], label="validation split")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="The teacher (ConvNet-BN, teacher recipe) on the pool")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, "study_teacher.png")

    ccfs = "CCFS (CDA distilled part)"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for p, color in zip(ratios, ("C0", "C1")):
        phases = [runs[n]["phases"] for n in tables[f"table1 {p}"][ccfs]]
        js = [ph["phase"] for ph in phases[0]]
        for key, style, label in (("filter_train_acc", "--", "train pool"), ("filter_test_acc", "-", "test split")):
            v = 100 * np.array([[ph[j][key] for j in range(len(js))] for ph in phases])
            axes[0].errorbar(js, v.mean(0), yerr=v.std(0, ddof=1), fmt="o" + style, color=color, capsize=3,
                             label=f"{p[1:]} %, {label}")
    axes[0].set(xlabel="phase", ylabel="filter accuracy (%)", title="Fig. 4a: the filter of each phase", xticks=js)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    width = 0.35
    for k, (p, color) in enumerate(zip(ratios, ("C0", "C1"))):
        phases = [runs[n]["phases"] for n in tables[f"table1 {p}"][ccfs]]
        data = [np.concatenate([ph[j]["difficulty"] for ph in phases]) for j in range(len(phases[0]))]
        pos = np.arange(1, len(data) + 1) + (k - 0.5) * width
        box = axes[1].boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=True,
                              flierprops={"markersize": 2})
        for patch in box["boxes"]:
            patch.set(facecolor=color, alpha=0.5)
        axes[1].plot([], [], "s", color=color, alpha=0.5, label=f"{p[1:]} % (picks of all seeds)")
    axes[1].set(xlabel="phase", ylabel="published forgetting score", title="Fig. 4b: difficulty of each phase's picks",
                xticks=range(1, len(data) + 1), xticklabels=[str(j) for j in range(1, len(data) + 1)])
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save(fig, "study_fig4.png")
    return paths


def ties(res: dict, files: dict) -> str:
    """How much of the pool and of the picks sit on tied scores (ties are broken by pool index)."""
    scores = np.load(files["forgetting"])
    values, counts = np.unique(scores, return_counts=True)
    lines = [f"The published forgetting score takes {len(values)} distinct values on the pool's "
             f"{len(scores):,} images; {100 * np.mean(scores == scores.min()):.0f} % of them share the lowest "
             f"({scores.min():g})."]
    for p in [pct(r) for r in res["scale"]["ratios"]]:
        phases = [res["runs"][n]["phases"] for n in res["tables"][f"table1 {p}"]["CCFS (CDA distilled part)"]]
        shares = [100 * np.mean(np.concatenate([ph[j]["difficulty"] for ph in phases]) == scores.min())
                  for j in range(len(phases[0]))]
        lines.append(f"At {p[1:]} %, the share of picks at that lowest score per phase: "
                     + ", ".join(f"{s:.0f} %" for s in shares) + ".")
    return " ".join(lines)


def write_results(res: dict, docs: Path, files: dict) -> Path:
    from fastccfs.atomic import write_text

    sc, runs, tables = res["scale"], res["runs"], res["tables"]
    ratios = [pct(r) for r in sc["ratios"]]
    figures(res, docs)
    found = claims(res)
    res["claims"] = [{**c, "comparisons": [{"label": lab, **i} for lab, i in c["comparisons"]]} for c in found]
    name = "benchmarks/study.py" + ("" if res["scale_name"] == "cpu" else f" --scale {res['scale_name']}")
    seconds = [r["seconds"] * r["threads"] / 2 for r in runs.values()]
    teacher = runs["teacher"]
    tt = teacher["teacher_training"]
    val_curve = [tt["test_acc"][k] for k in sorted(tt["test_acc"], key=int)]
    teacher_test = next(r["teacher_acc"] for r in runs.values() if r.get("split") == "test" and "teacher_acc" in r)
    n_val = 10 * sc["val_per_class"]
    settle = min(11, len(val_curve))  # the curve's last 10 epochs
    tuning_rows = []
    for key, t in res["tuning"].items():
        if all(v is None for v in t["values"].values()):
            tuning_rows.append(f"| {key} | {t['chosen']:g} (a single value at this scale: not tuned) | – |")
            continue
        values = sorted(t["values"], key=float)
        inner = values[0] != f"{t['chosen']:g}" and values[-1] != f"{t['chosen']:g}"
        note = "bracketed" if inner else "at the end of its ladder" if f"{t['chosen']:g}" in (
            f"{t['ladder'][0]:g}", f"{t['ladder'][-1]:g}") else "at an edge"
        tuning_rows.append(f"| {key} | **{t['chosen']:g}** ({note}) | "
                           + ", ".join(f"{v}: {100 * t['values'][v]:.2f}" for v in values) + " |")

    lr_values = res["tuning"]["lr"]["values"]
    lr_note = (f" The reference scripts' lr 0.2 (tuned there for ResNet-18 over 500 epochs) reaches "
               f"{100 * lr_values['0.2']:.2f} % here (ConvNet-BN, {sc['epochs']} epochs, the KD loss scaled by T² = 400 as "
               f"in the reference): the chosen lr is {0.2 / res['tuning']['lr']['chosen']:g}× smaller.") if lr_values.get("0.2") is not None else ""

    def table(key: str, heading: str) -> str:
        rows = tables[key]
        body = "\n".join(f"| {row} | {ms([runs[n]['acc'] for n in names])} | "
                         + ", ".join(f"{100 * runs[n]['acc']:.2f}" for n in names) + " |" for row, names in rows.items())
        return f"| {heading} | test accuracy (%) | per seed |\n|---|---|---|\n{body}"

    claim_lines = []
    for c in found:
        units = c.get("units", "points")
        parts = "; ".join(f"{lab}: {interval_text(i, units)}" for lab, i in c["comparisons"])
        word = {"holds": "holds", "reversed": "reversed", "not shown": "not shown at this scale"}[c["verdict"]]
        claim_lines.append(f"- {c['claim']}: **{word}** — {parts}")
    counts = {w: sum(c["verdict"] == w for c in found) for w in ("holds", "not shown", "reversed")}
    full = tables[f"table1 {ratios[-1]}"]["full pool (same schedule)"]
    gap = paired([runs[n]["acc"] for n in tables[f"table1 {ratios[-1]}"]["CCFS (CDA distilled part)"]],
                 [runs[n]["acc"] for n in full])
    shared_rows = list(tables["soft_labels"].values())
    protocol = paired([runs[n]["acc"] for n in shared_rows[1]], [runs[n]["acc"] for n in shared_rows[0]])
    total_h = sum(seconds) / 3600
    slowest = sorted(runs.items(), key=lambda kv: -kv[1]["seconds"])[:3]
    text = f"""# CCFS at CPU scale: the paper's high-IPC claims on real CIFAR-10

Written by `.venv/bin/python {name}` on {time.strftime('%Y-%m-%d')}, from `docs/study.json` alone (every
run's numbers, kept as each run finished; a re-run skips the runs already there and only rewrites this
page). {len(runs)} runs took **{total_h:.2f} hours** of this project's 2-core CPU machine in all (each run's
wall-clock × its threads / 2, as two 1-thread runs side by side share the machine; each run's seconds and
threads are in study.json). The slowest: {', '.join(f'{k} {v["seconds"] / 60:.1f} min' for k, v in slowest)}.

## Protocol
- **Data.** CIFAR-10's train split cut per class (seed 0) into a **pool** of {sc['pool_per_class']} images per class
  ({10 * sc['pool_per_class']:,}: every method selects from it and trains on it) and a **validation** split of
  {sc['val_per_class']} per class ({n_val:,} images; one run's accuracy on it has a binomial standard error of
  about {100 * math.sqrt(0.25 / n_val):.1f} points at 50 %). The official test split
  ({'all 10,000 images' if sc['test_per_class'] is None else f"its first {sc['test_per_class']} images per class"})
  is used only by the final runs, after every choice was made on validation.
- **Ratios.** {' and '.join(f"{p[1:]} % of the pool (IPC {res['ipc'][p]})" for p in ratios)} — the paper's high-IPC
  regime (CIFAR-10 IPC 500 and 1000 are 10 % and 20 % of its 5,000 per class).
- **Training.** ConvNet-BN as filter, teacher and evaluation model; every filter and evaluation trains
  {sc['epochs']} epochs (SGD, momentum 0.9, weight decay 1e-4, {FIXED['warmup_epochs']} warm-up epochs then cosine) with
  KD from the teacher at T = 20, batch by the reference code's rule (64 at 10 %, 128 from 20 % and for the full
  pool); accuracy after the last epoch. The reference trains 500 epochs at 10 % and 250 at 20 %: at this scale
  every run gets the same {sc['epochs']}, and the full pool is trained with that same schedule.
- **Teacher.** ConvNet-BN trained {sc['teacher_epochs']} epochs on the pool with the teacher recipe (SRe²L's
  squeeze: SGD lr 0.1, wd 5e-4, batch 128, crop + flip, cosine): final train-pool accuracy
  {100 * tt['train_acc'][-1]:.1f} % (augmented, during the last epoch), validation {100 * teacher['teacher_val_acc']:.2f} %
  (best epoch {100 * max(val_curve):.2f} %; {100 * (val_curve[-1] - val_curve[-settle]):+.1f} points over the last
  {settle - 1} epochs: validation has levelled off), test {100 * teacher_test:.2f} %. Its forgetting events over those epochs
  are "this teacher's" scores of Table 4; the other runs use the published forgetting scores (CCFS's code) cut
  to the pool. The curve:

  ![teacher](figures/study_teacher.png)
- **Distilled part.** fastccfs's built-in CDA recovery from that teacher ({res['runs']['distill']['iterations']}
  iterations, {res['runs']['distill']['per_class']} images per class, the first ⌊α·IPC⌋ of them per run).
- **Seeds.** {sc['seeds']} per cell. Seed i fixes the selection's randomness (random picks, filter initialisation,
  random fine order) and the evaluation model's initialisation, the same for every method; teacher and
  distilled images are shared. Cells are mean ± sample standard deviation (ddof = 1).
- **Claims.** A comparison is the paired difference over seeds (seed i of one method minus seed i of the other)
  with its 95 % Student-t interval (df = {sc['seeds'] - 1}); a claim **holds** when the interval excludes 0 on the
  paper's side, is **reversed** when it excludes 0 on the other, and is **not shown at this scale** otherwise. A
  claim made of several comparisons holds only when each does. Each comparison is counted once.

## Tuning (validation split, seed 0; accuracy in %)
Each value is tried with its neighbours on a ladder, and the ladder is walked until the best value has a
tried neighbour on both sides (unless it is the ladder's end). lr is tuned on random real images at
{ratios[0][1:]} % and used everywhere; the window's β and CCFS's α per ratio.

| setting | chosen | validation accuracy by value |
|---|---|---|
{chr(10).join(tuning_rows)}

Gaps between neighbouring values are mostly below the validation split's standard error: the choices are
the best measured, not shown to be better.{lr_note}

## Table 1 — methods
{chr(10).join(f"### {p[1:]} % of the pool (IPC {res['ipc'][p]}){chr(10)}{chr(10)}{table(f'table1 {p}', 'method')}{chr(10)}" for p in ratios)}
"Oracle window (selection only)" is SelMatch's window of real images chosen by the published forgetting
score with β tuned on validation (SelMatch itself also distills); "self-evolved" runs CCFS's curriculum
from real images in place of the distilled part — from the window as in the paper, or from random
images. The full pool row is the same runs in both tables. CCFS at {ratios[-1][1:]} % minus the full pool:
{interval_text(gap)} points.

![Table 1](figures/study_table1.png)

## Table 3 — coarse × fine ({ratios[0][1:]} %)
{table('table3', 'coarse × fine')}

## Table 4 — difficulty score ({ratios[0][1:]} %)
{table('table4', 'score')}

## Table 5 — number of phases J ({ratios[0][1:]} %)
{table('table5', 'phases')}

Misclassified × simple, the published forgetting score and J = 3 are the Table 1 CCFS runs.

## Evaluation protocol — online vs shared soft labels ({ratios[0][1:]} %)
{table('soft_labels', 'soft labels')}

The same final sets (the Table 1 CCFS runs' seeds and settings); only the evaluation's KD targets differ:
the teacher on each run's own crops (online, the default) or one crop stream per epoch with the teacher's
logits computed once for every run (`--soft-labels shared`). Shared minus online: {interval_text(protocol)} points.

## Figure 4 — the Table 1 CCFS runs (inference over the whole pool, every seed)
(a) each phase's filter on the train pool and on the test split (mean ± std over seeds); (b) the published
forgetting score of each phase's picks (all seeds pooled).

![Fig. 4](figures/study_fig4.png)

Ties: {ties(res, files)} Among tied scores, the pool index decides (fastccfs's semantics).

## The paper's claims at this scale ({counts['holds']} hold, {counts['not shown']} not shown, {counts['reversed']} reversed)
Differences in accuracy points (the difficulty steps in score units): mean [95 % interval].

{chr(10).join(claim_lines)}

Scale: a {10 * sc['pool_per_class']:,}-image pool, {sc['epochs']}-epoch evaluations and a ConvNet stand in for CIFAR-10,
500 epochs and ResNet-18; {sc['seeds']} seeds make the intervals wide (t = {T_975[sc['seeds'] - 2]} at df = {sc['seeds'] - 1}).
"Not shown" means this study cannot tell, not that the claim is false.

## Reproducing
`.venv/bin/python {name}` with `../shared/data` beside the repository: it resumes from `docs/study.json` and
the teacher and distilled images in `docs/study/`; with those removed it starts over (seeds are fixed, so
the selections repeat; CPU thread scheduling makes accuracies differ in the last bits).
"""
    return write_text(docs / "results.md", text) or docs / "results.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--work", default=None, help="run directories and data (default runs/study-<scale>)")
    parser.add_argument("--docs", default=str(REPO / "docs"), help="where study.json, study/, results.md and "
                                                                   "figures/ go (the study resumes from them)")
    parser.add_argument("--cifar-root", default=None, help="a folder holding cifar-10-batches-py (default: rebuilt "
                                                           "from ../shared/data)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work or REPO / "runs" / f"study-{args.scale}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    docs = Path(args.docs).resolve()
    docs.mkdir(parents=True, exist_ok=True)
    files = prepare_data(work, SCALES[args.scale], Path(args.cifar_root) if args.cifar_root else None)
    from fastccfs import kernels

    kernels.warm_up()  # numba compiles and caches once, before the workers would race to
    study = Study(work, docs, args.scale, files, not args.quiet)
    try:
        res = plan(study)
    finally:
        if study.pool is not None:
            study.pool.shutdown(cancel_futures=True)
    out = write_results(res, docs, files)
    study.save()  # with the claims
    study.log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
