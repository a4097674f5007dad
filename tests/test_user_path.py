"""A new user's path: the Python API as the README shows it, the loader contract, the CLI's help and
errors, what a failed run leaves behind, run.log, and the cache fallback of convert."""
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import fastccfs
from conftest import REPO, SCORES, need, run
from fastccfs.cli import build_parser, main
from fastccfs.errors import UserError
from fastccfs.loaders import make_loader


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"## {heading}"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_runs_as_written(tmp_path, cache, monkeypatch, demo_stores):
    code = readme_block("Python API")
    assert "../shared" not in code  # a user's machine has no ../shared
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTCCFS_CACHE", str(cache))
    scope = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)
    result, again, picked, labels = scope["result"], scope["again"], scope["picked"], scope["labels"]
    assert isinstance(result, fastccfs.RunResult) and result.out == Path("runs/demo-api")
    assert len(result.selected) == 200 and np.bincount(labels[result.selected]).tolist() == [20] * 10
    assert [p["phase"] for p in result.phases] == [1, 2, 3] and result.evaluation["models"]["convnet_bn"]["runs"] == 1
    assert result.report.is_file() and result.synthetic_set.is_file() and "phase_1.inference" in result.timings
    np.testing.assert_array_equal(again.selected, result.selected)
    assert np.bincount(labels[picked.indices], minlength=10).tolist() == [3] * 10
    assert not set(picked.indices) & set(result.selected.tolist())
    assert (Path(scope["folder"]) / "distilled.npz").is_file()
    x, y = next(iter(scope["train"]))
    assert x.shape == (128, 3, 32, 32) and y.dtype == torch.int64


def test_readme_loader_snippet_runs_as_written(cifar_stores, cache, monkeypatch):
    """The "Loaders for your own code" block, on the real CIFAR-10 store in the cache, one epoch of its 200."""
    code = readme_block("Loaders for your own code")
    assert "../shared" not in code and "range(200)" in code
    monkeypatch.setenv("FASTCCFS_CACHE", str(cache))
    scope = {}
    exec(compile(code.replace("range(200)", "range(1)"), "README.md (loaders)", "exec"), scope)
    train, test, x, y = scope["train"], scope["test"], scope["x"], scope["y"]
    assert len(train.dataset) == 50_000 and len(test.dataset) == 10_000 and len(train) == 196
    assert x.shape == (50_000 % 256, 3, 32, 32) and x.is_contiguous() and y.dtype == torch.int64
    first, again = (next(iter(test))[0] for _ in range(2))
    assert torch.equal(first, again)  # the test split: stored order, no augmentation


def test_the_api_names_are_the_functions_the_cli_uses():
    from fastccfs import api, selection, store

    assert fastccfs.select is selection.coarse_to_fine and fastccfs.convert is store.convert
    assert fastccfs.run is api.run and fastccfs.distill is api.distill
    import importlib

    importlib.import_module("fastccfs.cda")  # the module that implements CDA does not shadow fastccfs.distill
    assert fastccfs.distill is api.distill


def test_kernels_install_inside_the_package():
    import fastccfs.kernels

    assert Path(fastccfs.kernels.__file__).parent == REPO / "kernels"
    sources = "".join(p.read_text() for p in (REPO / "fastccfs").rglob("*.py"))
    assert not re.search(r"^\s*(import kernels|from kernels)", sources, re.M)
    assert fastccfs.kernels.warm_up() >= 0


# ------------------------------------------------------------------------------------ the loader contract


def test_loader_drops_into_a_dataloader_loop(demo_stores):
    loader = make_loader(demo_stores["train"], batch_size=500, device="cpu", with_indices=False, seed=0)
    seen = 0
    for x, y in loader:  # the loop of a DataLoader, unchanged
        assert x.dtype == torch.float32 and x.is_contiguous()
        seen += len(y)
    assert seen == 3000 and len(loader) == 6
    loader.set_epoch(0)  # the loader's own methods still reach through


def test_dataloader_shaped_code_runs_unchanged(demo_stores):
    """Issue 26: the DC/DSA/DM/MTT ConvNet flattens with .view; code reads len(loader.dataset) and calls
    loader.sampler.set_epoch; a test split is not augmented unless asked."""
    from torch import nn

    class DCConvNet(nn.Module):  # the DC codebases' pattern: out.view(out.size(0), -1)
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4))
            self.classifier = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            out = self.features(x)
            return self.classifier(out.view(out.size(0), -1))

    train = make_loader(demo_stores["train"], batch_size=100, device="cpu", with_indices=False, seed=0)
    net = DCConvNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for epoch in range(1):
        train.sampler.set_epoch(epoch)
        for x, y in train:
            assert x.view(x.size(0), -1).shape == (len(y), 3 * 32 * 32)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    assert len(train.dataset) == 3000 and train.dataset.classes == demo_stores["train"].classes
    test = make_loader(demo_stores["test"], batch_size=250, device="cpu")
    first = next(iter(test))
    again = next(iter(make_loader(demo_stores["test"], batch_size=250, device="cpu")))
    assert torch.equal(first[0], again[0]) and first[2].tolist() == list(range(250))  # stored order, no crops
    subset = make_loader(demo_stores["train"], indices=[3, 1], extra_images=np.zeros((1, 32, 32, 3), np.uint8),
                         extra_labels=[4], device="cpu")
    assert len(subset.dataset) == 3


def test_loader_seed_comes_from_torch_global_generator(demo_stores):
    def first_labels():
        return next(iter(make_loader(demo_stores["train"], batch_size=64, device="cpu")))[1]

    torch.manual_seed(5)
    a = first_labels()
    torch.manual_seed(5)
    b = first_labels()
    torch.manual_seed(6)
    c = first_labels()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loader_float_images_are_kept_exact_or_refused_with_the_reason(demo_stores):
    store = demo_stores["train"]
    real = np.array(store.images[:4])
    exact = torch.from_numpy(real).float() / 255  # images read from files: exact in uint8
    x, _, idx = next(iter(make_loader(store, indices=[], extra_images=exact, extra_labels=store.labels[:4],
                                      augment=False, device="cpu")))
    reference, _, _ = next(iter(make_loader(store, indices=np.arange(4), augment=False, device="cpu")))
    torch.testing.assert_close(x, reference)
    assert idx.tolist() == [-1, -2, -3, -4]
    with pytest.raises(UserError, match="would be rounded"):
        make_loader(store, indices=[], extra_images=exact * 0.999, extra_labels=store.labels[:4], device="cpu")
    with pytest.raises(UserError, match=r"range from -\d.*look normalised"):
        make_loader(store, indices=[], extra_images=(exact - 0.5) / 0.25, extra_labels=store.labels[:4],
                    device="cpu")
    with pytest.raises(UserError, match="indices=\\[\\] selects no image"):
        make_loader(store, indices=[], device="cpu")


# ------------------------------------------------------------------------------------- the CLI as met


def test_every_run_flag_says_what_it_does_its_choices_and_default():
    parser = build_parser(["run", "cifar100", "--ipc", "50", "--help"])
    run_parser = parser._subparsers._group_actions[0].choices["run"]
    for action in run_parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.dest
    helps = {a.dest: a.help for a in run_parser._actions}
    assert "[cifar100 IPC 50: " in helps["lr"] and "{misclassified|classified|all}" in helps["coarse"]
    assert "[cifar100 IPC 50: resnet18]" in helps["model"] and "[cifar100 IPC 50: none]" in helps["teacher"]


def test_cli_errors_a_person_meets(capsys, tmp_path):
    assert main(["run", "cifar-10", "--out", str(tmp_path / "a")]) == 2
    assert "unknown dataset 'cifar-10'" in capsys.readouterr().err
    assert main(["run", "cifar10", "--out", str(tmp_path / "b")]) == 2
    assert "pass --ipc N (presets: 250, 500, 1000, 1500)" in capsys.readouterr().err
    assert main(["run", "demo", "--ipcs", "10"]) == 2
    err = capsys.readouterr().err.strip()  # one line: the fault, and where the options are listed
    assert err == "fastccfs: error: fastccfs run: unrecognized arguments: --ipcs 10 (`fastccfs run --help` lists " \
                  "the options)"
    assert main(["run", "demo", "--epochs", "2.5"]) == 2
    assert "argument --epochs: invalid int value: '2.5'" in capsys.readouterr().err
    assert main(["run", "demo", "--device", "cuda:99", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastccfs: error: --device cuda:99") and "\n" not in err
    for text, message in (("epochs: [1, 2\n", "not valid YAML (line 2)"), ("- 1\n- 2\n", "not a list"),
                          ("lr: 1e-2\nepochs: ten\n", "epochs must be a whole number, got 'ten'"),
                          ("lr: 1e-2\nphases: 2.5\n", "phases must be a whole number, got 2.5"),
                          ("seed: null\n", "seed must be int, not empty"), ("alpha: [0.5]\n", "alpha must be a number")):
        (tmp_path / "cfg.yaml").write_text(text)
        assert main(["run", "demo", "--out", str(tmp_path / "d"), "--config", str(tmp_path / "cfg.yaml")]) == 2
        assert message in capsys.readouterr().err, text
    from fastccfs.config import resolve_run_config

    assert resolve_run_config("demo", None, None, {"lr": "1e-2"}).lr == 0.01  # PyYAML's string for 1e-2
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing was created for a run that never started


def test_a_run_that_fails_in_its_first_stage_leaves_no_directory(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cache, out, "--teacher", tmp_path / "nope.pt") == 2
    assert "no such checkpoint" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    assert run(cache, out) == 2  # a folder with other files is not taken over
    assert "holds other files" in capsys.readouterr().err and os.listdir(out) == ["mine.txt"]


def test_quiet_runs_still_log_with_timestamps(own_run):
    log = (own_run / "run.log").read_text()
    assert "\r" not in log
    lines = log.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines)
    assert any("phase 3: set 150 → +50" in line for line in lines)
    assert any("teacher: convnet_bn, train accuracy" in line for line in lines)


def test_run_times_kernel_compilation_apart_from_selection(own_run):
    import json

    stages = json.loads((own_run / "timings.json").read_text())["stages"]
    assert "compile_kernels" in stages and stages["phase_1.train"] > 0 and "convert" in stages


def test_a_converted_dataset_is_found_without_its_source(cifar_stores, cache, tmp_path, capsys):
    from fastccfs.store import convert

    stores = convert("cifar10", tmp_path, cache, progress=False)  # no CIFAR-10 under tmp_path
    assert stores["train"].path == cifar_stores["train"].path and len(stores["train"]) == 50_000
    assert "using the store converted earlier" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"cifar100 not found under .*nor is there a converted store of it in"):
        convert("cifar100", tmp_path, cache, progress=False)


def test_bad_inputs_are_refused_before_the_teacher_trains(cache, tmp_path, capsys, monkeypatch, demo_stores):
    """Without --teacher a teacher would train first: each bad input must be found before it (no run
    directory, no training step, no convert)."""
    import fastccfs.context
    import fastccfs.store
    import fastccfs.teacher
    from fastccfs.models import create_model

    need(SCORES)
    nan_scores = tmp_path / "nan.npy"
    np.save(nan_scores, np.full(3000, np.nan, np.float32))
    bad_distilled = tmp_path / "distilled"
    (bad_distilled / "new000").mkdir(parents=True)
    wrong_teacher = tmp_path / "teacher100.pt"
    torch.save({"model": create_model("convnet_bn", 100).state_dict()}, wrong_teacher)
    cases = [
        (["--scores", SCORES / "forgetting_Tiny.npy"], "holds 100000 scores but"),
        (["--scores", nan_scores], "NaN or infinite"),
        (["--scores", SCORES / "cscores_CIFAR10.npz"], "holds cscore scores but --score is forgetting"),
        (["--init", "none", "--distilled", bad_distilled], "has 0 distilled images"),
        (["--ipc", "400"], "has 300 train images, but IPC 400 takes"),
        (["--ipc", "5", "--alpha", "0.2", "--phases", "5"], "phase 5 would add none; use --phases 4 or fewer"),
        (["--teacher", wrong_teacher, "--score", "logits"], "does not fit a ConvNet for 10 classes"),
        (["--teacher", wrong_teacher, "--score", "forgetting"], "does not fit"),
    ]
    work = []  # training or decoding that a refusal must not start
    monkeypatch.setattr(fastccfs.context, "fit", lambda *a, **k: work.append("fit"))
    monkeypatch.setattr(fastccfs.teacher, "fit", lambda *a, **k: work.append("fit"))
    monkeypatch.setattr(fastccfs.store, "_write_store", lambda *a, **k: work.append("decode"))
    for k, (args, message) in enumerate(cases):
        out = tmp_path / f"run{k}"
        assert run(cache, out, *args) == 2, args
        assert message in capsys.readouterr().err, args
        assert not out.exists() and not work, args


def test_every_setting_has_a_group_and_numbers_a_range():
    from dataclasses import fields

    from fastccfs.config import GROUPS, RANGES, RunConfig, field_info

    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(f.name for f in fields(RunConfig)) and len(grouped) == len(set(grouped))
    numeric = [f.name for f in fields(RunConfig) if str(f.type).split(" ")[0] in ("int", "float")]
    assert set(numeric) == set(RANGES) and not any(field_info(n).get("choices") for n in RANGES)


def test_readme_in_memory_set_recipe_runs_as_written():
    scope = {}
    exec(compile(readme_block("Distilled sets held in memory"), "README.md (in memory)", "exec"), scope)
    assert scope["images"].grad is not None and scope["images"].grad.abs().sum() > 0
