"""Bad input: one line naming the file and the fault, exit code 2, no traceback, nothing left in the cache."""
import io
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from conftest import CIFAR_JPEG, REPO, TINY_ZIP, need
from fastccfs.cli import main


def run_convert(capsys, dataset, cache, *extra):
    code = main(["convert", str(dataset), "--cache", str(cache), "--quiet", *map(str, extra)])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    assert "\n" not in err and err.startswith("fastccfs: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def assert_cache_clean(cache):
    """No store and no temporary folder was left behind."""
    leftovers = [p for p in cache.rglob("*")] if cache.exists() else []
    assert not [p for p in leftovers if p.is_file()], leftovers


@pytest.fixture(scope="module")
def real_jpegs():
    """{(split, class): [jpeg bytes]} — 12 real CIFAR-10 JPEGs per class and split."""
    out = {}
    with tarfile.open(need(CIFAR_JPEG)) as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 4 and int(parts[3][:4]) < 12:
                out.setdefault((parts[1], parts[2]), []).append(tar.extractfile(m).read())
    return out


def make_imagefolder(root, real_jpegs, classes=("cat", "dog", "ship")):
    for (split, cls), images in real_jpegs.items():
        if cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for k, data in enumerate(images):
                (root / split / cls / f"{k:04d}.jpg").write_bytes(data)
    return root


def test_corrupt_image(capsys, tmp_path, real_jpegs):
    root = make_imagefolder(tmp_path / "data", real_jpegs)
    bad = root / "train" / "dog" / "0005.jpg"
    bad.write_bytes(b"this is not a JPEG at all")
    code, err = run_convert(capsys, root, tmp_path / "cache")
    assert_one_line_error(code, err, str(bad), "cannot decode image")
    assert_cache_clean(tmp_path / "cache")


def test_truncated_image(capsys, tmp_path, real_jpegs):
    root = make_imagefolder(tmp_path / "data", real_jpegs)
    bad = root / "test" / "ship" / "0003.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    code, err = run_convert(capsys, root, tmp_path / "cache")
    assert_one_line_error(code, err, str(bad), "truncated")
    assert_cache_clean(tmp_path / "cache")


def test_truncated_image_in_a_large_split_decoded_by_workers(capsys, tmp_path, real_jpegs):
    """Enough images to use the process pool: a worker's error still ends as one line."""
    root = tmp_path / "data"
    for split, cls in (("train", "cat"), ("test", "cat")):
        (root / split / cls).mkdir(parents=True)
    data = real_jpegs[("train", "cat")][0]
    for k in range(2500):
        (root / "train" / "cat" / f"{k:05d}.jpg").write_bytes(data)
    (root / "test" / "cat" / "0.jpg").write_bytes(data)
    bad = root / "train" / "cat" / "02222.jpg"
    bad.write_bytes(data[:200])
    code, err = run_convert(capsys, root, tmp_path / "cache", "--workers", 2)
    assert_one_line_error(code, err, str(bad))
    assert_cache_clean(tmp_path / "cache")


def copy_cifar(cifar_root, root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for f in (cifar_root / "cifar-10-batches-py").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def test_truncated_pickle(capsys, tmp_path, cifar_root):
    folder = copy_cifar(cifar_root, tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:5000])
    code, err = run_convert(capsys, "cifar10", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "data_batch_3", "not a readable CIFAR pickle")
    assert_cache_clean(tmp_path / "cache")


def test_label_outside_the_class_list_in_a_pickle(capsys, tmp_path, cifar_root):
    folder = copy_cifar(cifar_root, tmp_path)
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="latin1")
    batch["labels"][42] = 12
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    code, err = run_convert(capsys, "cifar10", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "test sample 42 has label 12", "outside the 10 classes")
    assert_cache_clean(tmp_path / "cache")


def _tiny_variant(tmp_path, drop=None, annotation=None):
    """A copy of the real mini zip with some members dropped or the val annotations replaced."""
    out = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(TINY_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if drop and drop in info.filename:
                continue
            data = src.read(info)
            if annotation and info.filename.endswith("val_annotations.txt"):
                data = annotation(data.decode()).encode()
            dst.writestr(info, data)
    return out


def test_missing_class_folder(capsys, tmp_path):
    _tiny_variant(tmp_path, drop="train/n02124075/")
    code, err = run_convert(capsys, "tiny-imagenet", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "train/n02124075/images/", "missing")
    assert_cache_clean(tmp_path / "cache")


def test_label_outside_the_class_list_in_val_annotations(capsys, tmp_path):
    _tiny_variant(tmp_path, annotation=lambda text: text.replace("val_7.JPEG\tn", "val_7.JPEG\tx", 1))
    code, err = run_convert(capsys, "tiny-imagenet", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "val_annotations.txt line 8", "not in wnids.txt")
    assert_cache_clean(tmp_path / "cache")


def test_imagefolder_test_class_unknown_to_train(capsys, tmp_path, real_jpegs):
    root = make_imagefolder(tmp_path / "data", real_jpegs)
    (root / "test" / "horse").mkdir()
    (root / "test" / "horse" / "a.jpg").write_bytes(real_jpegs[("test", "horse")][0])
    code, err = run_convert(capsys, root, tmp_path / "cache")
    assert_one_line_error(code, err, "test/horse/", "train/ does not have")
    assert_cache_clean(tmp_path / "cache")


def test_empty_split(capsys, tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x, y_train=np.arange(4), x_test=x[:0], y_test=np.zeros(0, np.int64))
    code, err = run_convert(capsys, path, tmp_path / "cache")
    assert_one_line_error(code, err, str(path), "test split is empty")
    assert_cache_clean(tmp_path / "cache")


def test_negative_label_in_npz(capsys, tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    path = tmp_path / "neg.npz"
    np.savez(path, x_train=x, y_train=np.array([0, 1, -1, 1]), x_test=x, y_test=np.arange(4) % 2)
    code, err = run_convert(capsys, path, tmp_path / "cache")
    assert_one_line_error(code, err, "train sample 2 has label -1")


def test_zip_that_is_not_tiny_imagenet(capsys, tmp_path):
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("photos/readme.txt", "holiday pictures")
    code, err = run_convert(capsys, "tiny-imagenet", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "is not Tiny-ImageNet-200", "wnids.txt")
    assert_cache_clean(tmp_path / "cache")


def test_file_that_is_not_a_zip(capsys, tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"PK-no")
    code, err = run_convert(capsys, "tiny-imagenet", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "not a readable zip file")


def test_missing_dataset_names_the_file_to_put_where(capsys, tmp_path):
    code, err = run_convert(capsys, "cifar100", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "put cifar-100-python.tar.gz", str(tmp_path / "cifar-100-python.tar.gz"),
                          "--download")


def test_unknown_dataset(capsys, tmp_path):
    code, err = run_convert(capsys, "imagenet-22k", tmp_path / "cache")
    assert_one_line_error(code, err, "unknown dataset 'imagenet-22k'")


def test_images_of_different_sizes_ask_for_size_and_size_fixes_it(capsys, tmp_path, real_jpegs):
    from PIL import Image

    root = make_imagefolder(tmp_path / "data", real_jpegs)
    buf = io.BytesIO()
    Image.new("RGB", (40, 50), (10, 200, 30)).save(buf, "PNG")
    (root / "train" / "cat" / "9999.png").write_bytes(buf.getvalue())
    code, err = run_convert(capsys, root, tmp_path / "cache")
    assert_one_line_error(code, err, "9999.png is 40×50", "--size")
    assert main(["convert", str(root), "--cache", str(tmp_path / "cache"), "--quiet", "--size", "24"]) == 0
    from fastccfs.store import find_store

    train = find_store("data", "train", tmp_path / "cache")
    assert train.image_size == (24, 24)
    green = train.images[train.labels == 0][-1]  # 9999.png sorts last in class cat
    assert (green == [10, 200, 30]).all()


def test_download_through_a_mirror_and_offline_error(capsys, tmp_path, cifar_root, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz", compresslevel=1) as tar:
        tar.add(cifar_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setenv("FASTCCFS_MIRROR", "file://" + str(tmp_path / "nowhere"))
    code, err = run_convert(capsys, "cifar10", tmp_path / "cache", "--root", tmp_path / "root", "--download")
    assert_one_line_error(code, err, "could not download", str(tmp_path / "root" / "cifar-10-python.tar.gz"))
    assert not list((tmp_path / "root").glob("*")), "no partial download stays"
    monkeypatch.setenv("FASTCCFS_MIRROR", "file://" + str(mirror))
    code = main(["convert", "cifar10", "--root", str(tmp_path / "root"), "--cache", str(tmp_path / "cache"),
                 "--download", "--quiet"])
    assert code == 0 and (tmp_path / "root" / "cifar-10-python.tar.gz").is_file()


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastccfs", "--debug", "convert", "cifar10", "--root",
                             str(tmp_path), "--cache", str(tmp_path / "c")], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserError" in result.stderr
    plain = subprocess.run([sys.executable, "-m", "fastccfs", "convert", "cifar10", "--root", str(tmp_path),
                            "--cache", str(tmp_path / "c")], capture_output=True, text=True, cwd=REPO)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
