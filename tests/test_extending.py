"""Extension from outside the package: the README's "Extending fastccfs" block (a model, a fine rule, a
coarse rule, a method and a loader backend, registered from user code) runs as written through
fastccfs.run, and a dataset registered here converts and loads like a built-in."""
import json

import numpy as np
import pytest

import fastccfs
from fastccfs import registry
from fastccfs.errors import UserError
from test_user_path import readme_block

ADDED = [("model", "mlp"), ("fine", "middle"), ("coarse", "wrong_or_even"), ("method", "first"),
         ("backend", "counting"), ("dataset", "mini")]


@pytest.fixture
def clean_registry():
    yield
    for kind, name in ADDED:  # other tests see the built-ins only
        registry.unregister(kind, name)


def test_readme_extensions_run_through_fastccfs_run(tmp_path, cache, monkeypatch, demo_stores, clean_registry):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTCCFS_CACHE", str(cache))
    scope = {}
    exec(compile(readme_block("Extending fastccfs"), "README.md (Extending fastccfs)", "exec"), scope)
    ccfs, first, made = scope["ccfs"], scope["first"], scope["made"]
    labels = demo_stores["train"].labels

    # Every user entry is the one the run used: settings, filters and evaluation model, loaders.
    assert ccfs.config["model"] == "mlp" and ccfs.config["fine"] == "middle" and ccfs.config["coarse"] == "wrong_or_even"
    assert list(ccfs.evaluation["models"]) == ["mlp"]
    assert len(ccfs.selected) == 100 and np.bincount(labels[ccfs.selected]).tolist() == [10] * 10
    assert made and sum(loader.batches for loader in made) > 0  # the teacher, filters and evaluation trained from it
    # The rule has no prediction that rules a sample out: every phase inferred the whole split.
    assert all(p["inferred"] == len(labels) for p in ccfs.phases)
    # The method picks the first 10 of each class, and no phase ran.
    expected = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)])
    np.testing.assert_array_equal(first.selected, expected)
    assert first.phases == [] and not list(first.out.glob("phase_*"))
    # The CLI's settings check reads the registry: a registered name is a valid choice, an unknown one is not.
    from fastccfs.config import resolve_run_config

    assert resolve_run_config("demo", 10, None, {"fine": "middle", "method": "first"}).fine == "middle"
    with pytest.raises(UserError, match="unknown fine 'nope': use one of simple, hard, random, middle"):
        resolve_run_config("demo", 10, None, {"fine": "nope"})


def test_the_fine_and_coarse_rules_registered_outside_decide_the_picks(clean_registry):
    from fastccfs.selection import CoarseRule

    fastccfs.register("fine", "middle", lambda scores, seed: np.abs(scores - np.median(scores)))
    fastccfs.register("coarse", "wrong_or_even", CoarseRule(lambda pred, labels: (pred != labels) | (labels % 2 == 0)))
    labels = np.repeat([0, 1], 6)
    pred = labels.copy()
    pred[[7, 9]] = 0  # class 1: only 7 and 9 are wrong
    scores = np.array([5, 1, 3, 9, 0, 4, 5, 1, 3, 9, 0, 4], float)  # median 3.5
    picked = fastccfs.select(pred, labels, scores, None, 2, coarse="wrong_or_even", fine="middle")
    # class 0 (even): all candidates, closest to 3.5 first: 3 (|−0.5|) at 2, then 4 at 5; class 1: 7 and 9
    assert picked.indices.tolist() == [2, 5, 7, 9]


def test_a_dataset_registered_outside_converts_and_loads(tmp_path, demo_stores, clean_registry):
    from fastccfs.datasets import Dataset
    from fastccfs.readers import RawDataset, RawSplit, Source
    from fastccfs.store import convert

    train, test = demo_stores["train"], demo_stores["test"]
    arrays = tmp_path / "mini.npz"  # a user's own format: here, 100 real images per split (10 a class) in one .npz
    np.savez(arrays, x=np.asarray(train.images[::30]), y=train.labels[::30], tx=np.asarray(test.images[::6]),
             ty=test.labels[::6])

    def read(source):
        with np.load(source.path) as a:
            return RawDataset("mini", train.classes, train.classes,
                              {"train": RawSplit(a["y"].astype(np.int64), pixels=a["x"]),
                               "test": RawSplit(a["ty"].astype(np.int64), pixels=a["tx"])})

    fastccfs.register("dataset", "mini", Dataset(lambda root, download: Source("mini", "npz", arrays, [arrays]), read,
                                                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    stores = convert("mini", cache=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(stores["train"].images, train.images[::30])
    assert stores["train"].mean == (0.5, 0.5, 0.5) and stores["test"].classes == train.classes
    x, y, idx = next(iter(fastccfs.make_loader("mini", cache=tmp_path / "cache", batch_size=100, augment=False,
                                               device="cpu")))
    np.testing.assert_array_equal(y.numpy(), train.labels[::30])
    np.testing.assert_allclose(x[0, 0].numpy(), (train.images[0, :, :, 0] / 255 - 0.5) / 0.25, atol=1e-5)
    assert json.loads((stores["train"].path / "meta.json").read_text())["dataset"] == "mini"


def test_a_taken_name_is_refused():
    with pytest.raises(UserError, match="a model named 'resnet18' is already registered"):
        fastccfs.register("model", "resnet18", lambda num_classes, image_size: None)
    with pytest.raises(UserError, match="unknown kind 'loss'"):
        fastccfs.register("loss", "mine", object())


def test_the_package_has_no_import_circle_and_no_oversized_module():
    """Every import inside fastccfs/ (those inside functions too) points one way; no module over 450 lines."""
    import ast
    from pathlib import Path

    root = Path(fastccfs.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(("fastccfs", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
        assert len(path.read_text().splitlines()) <= 450, path
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] + [node.module] if isinstance(node, ast.ImportFrom) and \
                node.module else []
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "fastccfs"):
                    edges[name].add(target)
    state = {}

    def visit(name, path):
        state[name] = "open"
        for dep in edges[name]:
            assert state.get(dep) != "open", f"import circle: {' → '.join([*path, dep])}"
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for name in modules:
        if name not in state:
            visit(name, [name])
