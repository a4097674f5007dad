"""benchmarks/study.py (issue: the paper's claims at CPU scale): its statistics, its tuning ladders, and the
whole study on its toy scale on the real CIFAR-10 — every table from its runs, resumed from study.json."""
import importlib
import json
import math
import re
import shutil
import sys

import numpy as np
import pytest

from conftest import REPO, need, SCORES


def _study():
    """benchmarks/study.py imported by name: its worker processes (spawned) import it again to run jobs."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module("study")


def test_pool_and_validation_are_disjoint_per_class_and_seeded():
    study = _study()
    labels = np.repeat(np.arange(3), 20)
    pool, val = study.split_pool(labels, 12, 5)
    assert len(pool) == 36 and len(val) == 15 and not set(pool) & set(val)
    assert np.bincount(labels[pool]).tolist() == [12] * 3 and np.bincount(labels[val]).tolist() == [5] * 3
    again = study.split_pool(labels, 12, 5)
    np.testing.assert_array_equal(pool, again[0])


def test_paired_interval_is_the_student_t_interval_of_the_seed_differences():
    study = _study()
    i = study.paired([0.50, 0.52, 0.51], [0.49, 0.508, 0.499])  # differences 0.01, 0.012, 0.011
    d = np.array([0.01, 0.012, 0.011])
    half = 4.303 * d.std(ddof=1) / math.sqrt(3)
    assert i["mean"] == pytest.approx(d.mean()) and i["low"] == pytest.approx(d.mean() - half)
    assert i["high"] == pytest.approx(d.mean() + half) and i["n"] == 3
    assert study.verdict(i) == "holds"
    assert study.verdict(study.paired([0.49, 0.508, 0.499], [0.50, 0.52, 0.51])) == "reversed"
    # A larger mean difference that flips sign across seeds is not shown.
    assert study.verdict(study.paired([0.60, 0.45, 0.58], [0.50, 0.50, 0.50])) == "not shown"
    # Several comparisons: holds only if each holds, reversed if any is.
    holds, unsure = {"low": 0.01, "high": 0.02}, {"low": -0.01, "high": 0.02}
    assert study.joint([holds, holds]) == "holds" and study.joint([holds, unsure]) == "not shown"
    assert study.joint([holds, {"low": -0.03, "high": -0.01}]) == "reversed"


class _Ladder:
    """A stand-in for Study: accuracies from a table, the jobs it was asked to run, in rounds."""

    def __init__(self, accuracy):
        self.accuracy, self.rounds, self.done = accuracy, [], set()

    def execute(self, jobs):
        self.rounds.append(sorted(j["name"] for j in jobs if j["name"] not in self.done))
        self.done |= {j["name"] for j in jobs}

    def acc(self, name):
        return self.accuracy[name]


def test_tuning_walks_each_ladder_until_its_best_value_is_bracketed():
    study = _study()
    values = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
    peak = {f"{v:g}": a for v, a in zip(values, (0.40, 0.42, 0.45, 0.47, 0.46, 0.30))}
    edge = {f"b{v:g}": a for v, a in zip(values, (0.50, 0.45, 0.44, 0.43, 0.42, 0.41))}
    fake = _Ladder({**peak, **edge})
    got = study.tune(fake, {"alpha": (values, 0.1, lambda v: {"name": f"{v:g}"}),
                            "beta": (values, 0.1, lambda v: {"name": f"b{v:g}"})}, extra=[{"name": "distill"}])
    # alpha: starts at 0.1 and its neighbours, climbs to 0.3, stops once 0.4 brackets it from above.
    assert list(got["alpha"]) == [0.05, 0.1, 0.2, 0.3, 0.4]
    assert max(got["alpha"], key=got["alpha"].get) == 0.3
    # beta: the best is the ladder's first value: nothing below it to try.
    assert list(got["beta"]) == [0.05, 0.1, 0.2]
    assert fake.rounds[0] == ["0.05", "0.1", "0.2", "b0.05", "b0.1", "b0.2", "distill"]
    assert fake.rounds[1:] == [["0.3"], ["0.4"]]


def test_study_smoke_writes_every_table_from_study_json_and_resumes(cifar_root, tmp_path):
    need(SCORES / "cscores_CIFAR10.npz")
    study = _study()
    work, docs = tmp_path / "work", tmp_path / "docs"
    args = ["--scale", "smoke", "--work", str(work), "--docs", str(docs), "--cifar-root", str(cifar_root), "--quiet"]
    assert study.main(args) == 0
    res = json.loads((docs / "study.json").read_text())
    scale = study.SCALES["smoke"]
    # Choices come from their ladders, made on validation runs.
    for key, t in res["tuning"].items():
        ladder = scale[key.split()[0]][0]
        assert t["chosen"] in ladder
        if key != "lr":
            assert res["runs"][f"tune-{key.split()[1]}-{key.split()[0]}{t['chosen']:g}"]["split"] == "val"
    tables = res["tables"]
    assert set(tables) == {"table1 r10", "table1 r20", "table3", "table4", "table5", "soft_labels"}
    assert all(len(tables[f"table1 {p}"]) == 7 for p in ("r10", "r20"))
    assert len(tables["table3"]) == 6 and len(tables["table4"]) == 4 and list(tables["table5"]) == [
        "J = 1", "J = 2", "J = 3", "J = 4"]
    for rows in tables.values():
        for names in rows.values():
            assert len(names) == scale["seeds"] and all(res["runs"][n]["split"] == "test" for n in names)
            assert [res["runs"][n]["settings"]["seed"] for n in names] == list(range(scale["seeds"]))
    # Each run's accuracy is its eval.json's; the page shows mean ± sample std of the very numbers.
    ccfs = tables["table1 r10"]["CCFS (CDA distilled part)"]
    for n in ccfs:
        ev = json.loads((work / "runs" / n / "eval.json").read_text())
        assert res["runs"][n]["acc"] == ev["models"]["convnet_bn"]["final_epoch_acc"]["mean"]
    shared = tables["soft_labels"]["shared (the appendix's, CDA-style)"]
    for a, b in zip(ccfs, shared):  # the protocol row: the same final set, only the evaluation's soft labels differ
        assert res["runs"][b]["settings"]["soft_labels"] == "shared"
        np.testing.assert_array_equal(np.load(work / "runs" / a / "synthetic_set.npz")["real_indices"],
                                      np.load(work / "runs" / b / "synthetic_set.npz")["real_indices"])
    assert "Shared minus online:" in (docs / "results.md").read_text()
    accs = 100 * np.array([res["runs"][n]["acc"] for n in ccfs])
    page = (docs / "results.md").read_text()
    assert f"| CCFS (CDA distilled part) | {accs.mean():.2f} ± {accs.std(ddof=1):.2f} |" in page
    verdicts = re.findall(r"^- .+: \*\*(holds|reversed|not shown at this scale)\*\* — ", page, re.M)
    assert len(verdicts) == len(res["claims"]) >= 14
    assert "Fig. 4a" in page and (docs / "figures" / "study_fig4.png").stat().st_size > 1000
    assert not (work / "runs" / ccfs[0] / "report.html").exists()  # the study's runs skip their own report
    # Fig. 4 runs infer over the whole pool: the filter's train-pool accuracy is recorded per phase.
    assert all("filter_train_acc" in p and "filter_test_acc" in p for p in res["runs"][ccfs[0]]["phases"])
    # The pool's published scores are the published scores at the pool's CIFAR-10 indices.
    pool = np.load(work / "data" / "pool_indices.npy")
    np.testing.assert_array_equal(np.load(work / "data" / "forgetting_published.npy"),
                                  np.load(SCORES / "forgetting_CIFAR10.npy")[pool])
    # Resuming on a "fresh machine": without the run directories, study.json and docs/study/ suffice —
    # no run is repeated, and the page is rewritten with the same numbers.
    shutil.rmtree(work / "runs")
    assert study.main(args) == 0
    assert not (work / "runs").exists()
    again = json.loads((docs / "study.json").read_text())
    assert again["runs"] == res["runs"] and again["claims"] == res["claims"]
