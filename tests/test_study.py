"""benchmarks/study.py (issue: the science at CPU scale) on its toy scale: it runs every table on the
real CIFAR-10, tunes on the validation split only, and writes a results page whose numbers are the runs'."""
import importlib.util
import json
import re

import numpy as np

from conftest import REPO, need, SCORES


def _study():
    spec = importlib.util.spec_from_file_location("study", REPO / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pool_and_validation_are_disjoint_per_class_and_seeded():
    study = _study()
    labels = np.repeat(np.arange(3), 20)
    pool, val = study.split_pool(labels, 12, 5)
    assert len(pool) == 36 and len(val) == 15 and not set(pool) & set(val)
    assert np.bincount(labels[pool]).tolist() == [12] * 3 and np.bincount(labels[val]).tolist() == [5] * 3
    again = study.split_pool(labels, 12, 5)
    np.testing.assert_array_equal(pool, again[0])


def test_study_smoke_writes_every_table_from_its_runs(cifar_root, tmp_path):
    need(SCORES / "cscores_CIFAR10.npz")
    study = _study()
    work, docs = tmp_path / "work", tmp_path / "docs"
    assert study.main(["--scale", "smoke", "--work", str(work), "--docs", str(docs), "--cifar-root", str(cifar_root),
                       "--quiet"]) == 0
    res = json.loads((work / "study.json").read_text())
    scale = study.SCALES["smoke"]
    # Choices come from the grids, made on validation runs (whose teacher.json "test" is the validation split).
    assert res["chosen"]["epochs"] in scale["epoch_grid"] and res["chosen"]["alpha"] in scale["alpha_grid"]
    assert res["chosen"]["beta"] in scale["beta_grid"]
    assert all(len(v) == scale["seeds"] for v in res["table1"].values()) and len(res["table1"]) == 6
    assert set(res["table3"]) == {f"{c} × {f}" for c in ("classified", "misclassified")
                                  for f in ("simple", "hard", "random")}
    assert list(res["table5"]) == ["1", "2", "3", "4"] and len(res["table4"]) == 4
    # The pool's published scores are the published scores at the pool's CIFAR-10 indices.
    pool = np.load(work / "data" / "pool_indices.npy")
    np.testing.assert_array_equal(np.load(work / "data" / "forgetting_published.npy"),
                                  np.load(SCORES / "forgetting_CIFAR10.npy")[pool])
    # The CCFS row's numbers are its runs' eval.json numbers, and the page shows them.
    for s, acc in enumerate(res["table1"]["CCFS (CDA distilled part)"]):
        ev = json.loads((work / "runs" / f"t1-ccfs-s{s}" / "eval.json").read_text())
        assert acc == ev["models"]["convnet_bn"]["final_epoch_acc"]["mean"]
    page = (docs / "results.md").read_text()
    accs = 100 * np.array(res["table1"]["CCFS (CDA distilled part)"])
    assert f"| CCFS (CDA distilled part) | {accs.mean():.2f} ± {accs.std():.2f} |" in page
    assert len(re.findall(r"\*\*(holds|reversed|within noise)\*\*", page)) >= 9
    assert (docs / "figures" / "study_fig_filter_accuracy.png").stat().st_size > 1000
