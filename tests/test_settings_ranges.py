"""Every setting has a declared range or choice list, checked in one place before anything is written: one
line naming the setting, its range and the value given; no run folder; the same for the CLI, fastccfs.run
and fastccfs.distill (issue 25)."""
import re
from dataclasses import fields

import pytest

import fastccfs
from fastccfs.cli import main
from fastccfs.config import RANGES, RunConfig
from fastccfs.errors import UserError


def outside(rule: str):
    """A value just outside RULE, of the setting's type (every RANGES rule is ≥ / > a bound or an interval)."""
    if rule[0] in "≥>":
        bound = float(rule[1:])
        return bound - 1 if rule[0] == "≥" else bound
    low, high = (float(v) for v in rule[1:-1].split(","))
    return high + 1 if rule[-1] == "]" else high


@pytest.mark.parametrize("name", sorted(RANGES))
def test_a_value_outside_its_range_is_one_line_and_no_folder(name, tmp_path, cache):
    kind = next(f.type for f in fields(RunConfig) if f.name == name)
    value = outside(RANGES[name])
    value = int(value) if str(kind).startswith("int") else value
    out = tmp_path / "run"
    options = {"ipc": value} if name == "ipc" else {name: value}
    if name == "soft_labels_topk":
        options["soft_labels"] = "shared"
    with pytest.raises(UserError) as e:
        fastccfs.run("demo", **options, out=out, cache=str(cache), progress=False)
    message = str(e.value)
    assert message.startswith(f"{name} must be ") and RANGES[name] in message and f"got {value}" in message, message
    assert "\n" not in message and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "seed must be in [0, 4294967295]; got -1"),
    (["--seed", str(2**40)], "seed must be in [0, 4294967295]"),
    (["--batch-size", "0"], "batch_size must be ≥ 1; got 0"),
    (["--temperature", "-1"], "temperature must be > 0; got -1.0"),
    (["--temperature", "0"], "temperature must be > 0; got 0.0"),
    (["--momentum", "1.5"], "momentum must be in [0, 1); got 1.5"),
    (["--beta", "2"], "beta must be in [0, 1]; got 2.0"),
    (["--lr", "nan"], "lr must be a number"),
    (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    (["--eval-jobs", "0"], "eval_jobs must be auto or a whole number ≥ 1; got 0"),
    (["--eval-models", ","], "--eval-models is empty"),
    (["--alpha", "1", "--init", "none"], "alpha 1 takes all 20 images per class from the distilled part"),
    (["--phases", "17"], "17 phases for 16 real images per class"),
    (["--num-eval", "-1"], "num_eval must be ≥ 0; got -1"),
    (["--lr", "0"], "lr must be > 0; got 0.0"),
    (["--eval-from", "1.5"], "eval_from must be in [0, 1]; got 1.5"),
    (["--method", "coreset", "--score", "logits"], "--method coreset orders samples by difficulty"),
    (["--init", "window", "--score", "logits"], "--init window orders samples by difficulty"),
    (["--soft-labels", "shared", "--soft-labels-topk", "11"], "soft_labels_topk must be ≤ the number of classes (10)"),
])
def test_bad_settings_on_the_command_line(args, message, tmp_path, cache, capsys, monkeypatch, demo_stores):
    import fastccfs.pipeline

    if "number of classes" not in message:  # checked before the dataset is even opened
        monkeypatch.setattr(fastccfs.pipeline, "convert", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "run"
    assert main(["run", "demo", "--cache", str(cache), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, cache, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes("epochs: 3\n# caf\xe9\n".encode("latin-1"))
    assert main(["run", "demo", "--cache", str(cache), "--out", str(tmp_path / "r"), "--config", str(config)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err
    config.write_text("seed: -5\n")
    assert main(["run", "demo", "--cache", str(cache), "--out", str(tmp_path / "r"), "--config", str(config)]) == 2
    assert "seed must be in [0, 4294967295]; got -5" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("options, message", [
    ({"iterations": 0}, "distillation option iterations must be ≥ 1; got 0"),
    ({"lr": -0.1}, "distillation option lr must be > 0; got -0.1"),
    ({"r_bn": float("inf")}, "distillation option r_bn must be ≥ 0; got inf"),
    ({"jitter": 1.5}, "distillation option jitter must be a whole number; got 1.5"),
    ({"batch_size": "8"}, "distillation option batch_size must be a whole number; got '8'"),
    ({"seed": -3}, "distillation option seed must be in [0, 4294967295]; got -3"),
    ({"image_format": "gif"}, "distillation option image_format must be one of png, jpg; got 'gif'"),
    ({"amp": "fp8"}, "distillation option amp must be one of auto, bf16, off; got 'fp8'"),
    ({"teacher_model": "vgg"}, "unknown teacher_model 'vgg'"),
    ({"ipc": 0}, "ipc must be a whole number ≥ 1; got 0"),
])
def test_distill_options_are_checked_before_any_work(options, message, tmp_path, cache):
    ipc = options.pop("ipc", 2)
    out = tmp_path / "d"
    with pytest.raises(UserError, match=re.escape(message)):
        fastccfs.distill("demo", ipc, out, cache=str(cache), progress=False, **options)
    assert not out.exists()
