"""Files a run (or a distillation, or convert) wrote, damaged since: found by their checksums, redone with
what follows them, and the run ends as an uninterrupted one would (issue 25). Files a user supplied are
never rewritten."""
import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import run
from fastccfs.atomic import CHECKSUMS, file_sha256, read_checksums, tracking, write_json
from fastccfs.config import RunConfig
from fastccfs.errors import UserError
from fastccfs.rundir import Layout, RunDir

OWN = ("--teacher-epochs", "2", "--num-eval", "1")  # own_run's settings (conftest)


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), np.uint8).tobytes())
    else:  # one bit flipped, in the middle
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(flipped))


def outputs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and Layout.stage_of(p.relative_to(folder).as_posix()))


def test_a_run_records_every_output_it_wrote(own_run):
    recorded = read_checksums(own_run)
    assert set(outputs(own_run)) <= set(recorded) and {Layout.CONFIG, Layout.DATA, Layout.TIMINGS} <= set(recorded)
    assert all(file_sha256(own_run / name) == digest for name, digest in recorded.items())
    assert Layout.TEACHER in recorded and Layout.eval_run("convnet_bn", 0) in recorded


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
def test_each_output_damaged_is_redone_with_its_stage_and_every_later_one(own_run, tmp_path, capsys, how):
    names = outputs(own_run)
    assert len(names) >= 12
    for name in names:
        out = tmp_path / name.replace("/", "_")
        shutil.copytree(own_run, out)
        damage(out / name, how)
        kept = RunDir(out, RunConfig(**yaml.safe_load((out / Layout.CONFIG).read_text()))).repair()
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"fastccfs: {out / name} is damaged") and "\n" not in err, (name, err)
        rank = Layout.stage_of(name)[0]
        alone = name.startswith(Layout.EVAL_DIR + "/")  # evaluation runs are independent of each other
        for other in names:
            later = Layout.stage_of(other)[0] > rank or (Layout.stage_of(other)[0] == rank and not alone)
            assert (out / other).exists() == (other != name and not later), (name, other)
            assert (other in kept) == (out / other).exists()
        shutil.rmtree(out)


def test_a_truncated_teacher_the_run_trained_is_trained_again_and_the_run_ends_the_same(own_run, cache, tmp_path,
                                                                                          capsys):
    out = tmp_path / "run"
    shutil.copytree(own_run, out)
    damage(out / Layout.TEACHER, "truncated")
    assert run(cache, out, *OWN) == 0
    assert "teacher.pt is damaged (it is not what the run wrote): redoing the teacher" in capsys.readouterr().err
    for name in (Layout.SELECTED, Layout.eval_run("convnet_bn", 0)):  # the same picks, the same evaluation run
        before, after = (json.loads((d / name).read_text()) for d in (own_run, out))
        for volatile in ("seconds", "wall_s", "threads", "rank"):
            before.pop(volatile, None), after.pop(volatile, None)
        assert before == after, name
    for name in (Layout.SCORES, "phase_2.npz", Layout.SYNTHETIC):
        before, after = (np.load(d / name) for d in (own_run, out))
        for key in before if name.endswith(".npz") else [None]:
            a, b = (before, after) if key is None else (before[key], after[key])
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {key}")
    assert read_checksums(out)[Layout.TEACHER] == file_sha256(out / Layout.TEACHER)


def test_a_damaged_evaluation_record_is_its_run_alone_and_bookkeeping_is_repaired(own_run, cache, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(own_run, out)
    record = out / Layout.eval_run("convnet_bn", 0)
    weights = json.loads(record.read_text())["weights_sha256"]
    damage(record, "flipped")
    damage(out / Layout.TIMINGS, "garbage")
    damage(out / Layout.CONFIG, "flipped")  # these are the run's settings: written again
    phase = (out / "phase_1.npz").stat().st_mtime_ns
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert run(cache, out, *OWN, "--plan") == 0  # a plan reports, and touches nothing in the folder
    assert "the run will write it again" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert run(cache, out, *OWN) == 0
    err = capsys.readouterr().err
    assert "config.yaml was damaged since the run wrote it" in err and "timings.json is damaged" in err
    assert "redoing evaluation run convnet_bn_0" in err
    assert json.loads(record.read_text())["weights_sha256"] == weights  # the same run, trained again
    assert (out / "phase_1.npz").stat().st_mtime_ns == phase
    assert (out / Layout.CONFIG).read_bytes() == (own_run / Layout.CONFIG).read_bytes()
    damage(out / Layout.CONFIG, "flipped")  # and other settings than the run's are refused, not repaired
    assert run(cache, out, *OWN, "--seed", "1") == 2
    assert "config.yaml is damaged (it is not what the run wrote), and these settings are not the ones it held" in \
        capsys.readouterr().err


def test_a_run_folder_of_an_earlier_version_has_its_files_recorded_as_they_are(own_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(own_run, out)
    (out / CHECKSUMS).unlink()
    kept = RunDir(out, RunConfig(**yaml.safe_load((out / Layout.CONFIG).read_text()))).repair()
    assert set(outputs(out)) <= set(kept) and all(file_sha256(out / n) == h for n, h in kept.items())


def test_shared_soft_labels_damaged_in_one_epoch_are_generated_again_from_it(tmp_path, capsys):
    from fastccfs.models import create_model
    from fastccfs.soft_labels import SharedLabels, generate

    teacher = create_model("convnet_bn", 10).eval()
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), np.uint8)
    labels = SharedLabels(str(tmp_path), 4, 12, 10, 3, seed=5)
    generate(labels, teacher, images, (0.5,) * 3, (0.25,) * 3, "cpu", "off", batch=8, progress=False)
    before = labels.values_path.read_bytes(), labels.classes_path.read_bytes()
    assert labels.epochs_done() == 4
    values = np.load(labels.values_path, mmap_mode="r+")
    values[2, 5, 1] += 1  # one stored logit of epoch 3
    values.flush()
    del values
    assert labels.epochs_done() == 2
    assert "epoch 3 is damaged" in capsys.readouterr().err
    generate(labels, teacher, images, (0.5,) * 3, (0.25,) * 3, "cpu", "off", batch=8, progress=False)
    assert (labels.values_path.read_bytes(), labels.classes_path.read_bytes()) == before


def test_a_distillation_redoes_what_was_damaged_and_never_the_users_teacher(own_run, cache, tmp_path, capsys):
    import fastccfs
    from fastccfs.api import _redo_damaged_distillation

    teacher = tmp_path / "mine.pt"
    shutil.copyfile(own_run / Layout.TEACHER, teacher)
    out = tmp_path / "d"
    options = dict(teacher=str(teacher), teacher_model="convnet_bn", cache=str(cache), progress=False,
                   iterations=20, batch_size=10)
    fastccfs.distill("demo", 1, out, **options)
    images = np.load(out / "distilled.npz")["images"]
    damage(out / "distilled.npz", "flipped")
    fastccfs.distill("demo", 1, out, **options)
    assert "distilled.npz is damaged (it is not what the distillation wrote): making the images again" in \
        capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out / "distilled.npz")["images"], images)
    assert teacher.read_bytes() == (own_run / Layout.TEACHER).read_bytes()  # the user's file, untouched
    # A teacher the distillation trained itself, damaged: it and everything made from it go.
    with tracking(out):
        write_json(out / Layout.TEACHER, {"a": 1})
    damage(out / Layout.TEACHER, "garbage")
    _redo_damaged_distillation(out)
    assert "making the teacher and the images again" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [CHECKSUMS]


def test_a_damaged_store_is_found_on_open_rebuilt_by_convert_and_agrees_with_a_resumed_run(own_run, tmp_path, capsys):
    from fastccfs.store import DamagedStore, Store, convert

    cache = tmp_path / "c"
    stores = convert("demo", cache=cache, progress=False)
    fingerprint = stores["train"].content_fingerprint()
    for name, change in (("images.npy", lambda a: a.__setitem__((7, 3, 3, 1), a[7, 3, 3, 1] ^ 1)),
                         ("labels.npy", lambda a: a.__setitem__(0, (a[0] + 1) % 10))):
        path = cache / "demo" / "train" / name
        array = np.load(path, mmap_mode="r+")
        change(array)
        array.flush()
        del array
        with pytest.raises(DamagedStore, match=f"{name} is damaged .*delete .* and run `fastccfs convert` again"):
            Store.open(path.parent)
        again = convert("demo", cache=cache, progress=False)  # the bundled source is here: rebuilt
        assert "is damaged; converting demo again" in capsys.readouterr().err
        assert again["train"].content_fingerprint() == fingerprint
    out = tmp_path / "run"  # a resumed run on the rebuilt store: the same data, so it goes on
    shutil.copytree(own_run, out)
    assert run(cache, out, *OWN) == 0
    meta = json.loads((cache / "demo" / "train" / "meta.json").read_text())
    assert set(meta["checksums"]) == {"images.npy", "labels.npy", "parent_indices.npy"}


def test_a_damaged_store_without_its_source_names_the_way_to_rebuild_it(tmp_path):
    from fastccfs.store import convert

    cache = tmp_path / "c"
    stores = convert("demo", cache=cache, progress=False)
    shutil.copytree(stores["train"].path.parent, cache / "cifar10")  # stands in for a CIFAR-10 converted earlier
    path = cache / "cifar10" / "test" / "labels.npy"
    labels = np.load(path)
    labels[1] = (labels[1] + 1) % 10
    np.save(path, labels)
    with pytest.raises(UserError) as e:
        convert("cifar10", root=tmp_path / "nothing", cache=cache, progress=False)
    assert "labels.npy is damaged" in str(e.value) and "its source is not here to rebuild it from" in str(e.value)
    assert "cifar-10-python.tar.gz" in str(e.value)
