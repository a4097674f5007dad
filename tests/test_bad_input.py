"""Bad input: one line naming the file and the fault, exit code 2, no traceback, nothing left in the cache."""
import io
import pickle
import re
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from conftest import CIFAR_JPEG, REPO, TINY_ZIP, need
from fastccfs.errors import UserError
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


def test_download_through_a_mirror_and_offline_error(capsys, tmp_path, cifar_tar_gz, monkeypatch):
    mirror = cifar_tar_gz  # a mirror's folder: the published archive's name
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


# ----------------------------------------------------------------------------- issue 25: pixel formats

def _encoded(mode, pixels, fmt, **kw):
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(pixels) if isinstance(pixels, np.ndarray) else _filled(mode, pixels)
    assert im.mode == mode
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _filled(mode, values):
    from PIL import Image

    im = Image.new(mode, (len(values), 1))
    for i, v in enumerate(values):
        im.putpixel((i, 0), v)
    return im


@pytest.mark.parametrize("mode, fmt, source, expected", [
    # 16-bit greyscale (PNG opens as I;16, 16-bit PGM as I): v / 257, rounded; Pillow alone clips to 255
    ("I;16", "PNG", np.array([[0, 257 * 100 + 128]], np.uint16), [(0,) * 3, (100,) * 3]),
    ("I;16", "PNG", np.array([[65535, 257 * 100 + 129]], np.uint16), [(255,) * 3, (101,) * 3]),
    ("I;16", "TIFF", np.array([[1000, 40000]], np.uint16), [(4,) * 3, (156,) * 3]),
    ("I", "PPM", [1000, 65535], [(4,) * 3, (255,) * 3]),
    ("F", "TIFF", [0.5, 1.0], [(128,) * 3, (255,) * 3]),  # floats in [0, 1]: × 255, rounded
    ("1", "PNG", np.array([[0, 1]], bool), [(0,) * 3, (255,) * 3]),
    ("L", "PNG", np.array([[7, 200]], np.uint8), [(7,) * 3, (200,) * 3]),
    ("LA", "PNG", np.array([[[7, 0], [200, 255]]], np.uint8), [(7,) * 3, (200,) * 3]),  # alpha dropped
    ("RGBA", "PNG", np.array([[[1, 2, 3, 0], [4, 5, 6, 9]]], np.uint8), [(1, 2, 3), (4, 5, 6)]),
    ("CMYK", "TIFF", [(255, 0, 0, 0), (0, 0, 0, 128)], [(0, 255, 255), (127, 127, 127)]),
    ("YCbCr", "TIFF", [(255, 128, 128), (0, 128, 128)], [(255, 255, 255), (0, 0, 0)]),
    ("LAB", "TIFF", [(255, 128, 128), (0, 128, 128)], [(254, 255, 254), (1, 0, 1)]),
])
def test_every_pixel_format_becomes_8_bit_rgb_by_value(mode, fmt, source, expected):
    from fastccfs.images import decode

    pixels = decode(_encoded(mode, source, fmt), f"x.{fmt.lower()}", None)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 2, 3)
    assert [tuple(int(v) for v in p) for p in pixels[0]] == expected


def test_modes_without_a_file_and_refused_scales():
    from PIL import Image

    from fastccfs.images import rgb8

    cases = {("HSV", (0, 255, 255)): (255, 0, 0), ("P", None): (0, 0, 0), ("RGBa", (100, 50, 20, 128)): (199, 99, 39),
             ("La", (100, 128)): (199, 199, 199), ("PA", (0, 7)): (0, 0, 0), ("RGBX", (1, 2, 3, 0)): (1, 2, 3),
             ("I;16B", 65535): (255, 255, 255), ("I;16L", 514): (2, 2, 2)}
    for (mode, value), expected in cases.items():
        im = Image.new(mode, (1, 1), value) if value is not None else Image.new(mode, (1, 1))
        assert tuple(int(v) for v in rgb8(im, mode)[0, 0]) == expected, mode
    with pytest.raises(UserError, match=r"x.tif: float pixels range from 0 to 2, outside \[0, 1\]"):
        rgb8(_filled("F", [0.0, 2.0]), "x.tif")
    with pytest.raises(UserError, match=r"x.tif: a 32-bit integer image \(values -5…70000\) has no 8-bit scale"):
        rgb8(_filled("I", [-5, 70000]), "x.tif")


def test_a_16_bit_imagefolder_converts_by_value(capsys, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, cls in enumerate(("dark", "bright")):
            (tmp_path / "ds" / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((4, 4), 257 * (10 + 200 * c), np.uint16)).save(tmp_path / "ds" / split / cls / "a.png")
    code, _ = run_convert(capsys, tmp_path / "ds", tmp_path / "cache")
    from fastccfs.store import find_store

    train = find_store("ds", "train", tmp_path / "cache")
    assert code == 0 and sorted(np.unique(train.images).tolist()) == [10, 210]


# ----------------------------------------------------------------------------- issue 25: smaller ones

def test_npz_labels_that_skip_classes_are_refused(capsys, tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    path = tmp_path / "gaps.npz"
    np.savez(path, x_train=x, y_train=np.array([0, 5, 0, 5]), x_test=x, y_test=np.array([0, 5, 5, 0]))
    code, err = run_convert(capsys, path, tmp_path / "cache")
    assert_one_line_error(code, err, "class(es) 1, 2, 3, 4 have no train images (the labels skip them; 6 classes)",
                          "np.unique(y_train, return_inverse=True)")
    assert_cache_clean(tmp_path / "cache")


def test_a_cifar_batch_with_fewer_labels_than_images_says_so(capsys, tmp_path, cifar_root):
    folder = copy_cifar(cifar_root, tmp_path)
    batch = pickle.loads((folder / "data_batch_2").read_bytes(), encoding="latin1")
    batch["labels"] = batch["labels"][:-3]
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch))
    code, err = run_convert(capsys, "cifar10", tmp_path / "cache", "--root", tmp_path)
    assert_one_line_error(code, err, "data_batch_2", "holds 10000 images but 9997 labels")
    assert_cache_clean(tmp_path / "cache")


@pytest.mark.parametrize("scores, kind", [(np.ones(3000, bool), "bool"), (np.ones(3000, complex), "complex128"),
                                          (np.array(["1"] * 3000), "<U1")])
def test_scores_must_be_real_numbers(tmp_path, demo_stores, scores, kind):
    from fastccfs.scores import load_scores

    np.save(tmp_path / "s.npy", scores)
    with pytest.raises(UserError, match=f"scores must be real numbers .*got {re.escape(kind)} values"):
        load_scores(tmp_path / "s.npy", demo_stores["train"])
    assert load_scores_ok(tmp_path, demo_stores)


def load_scores_ok(tmp_path, demo_stores):
    from fastccfs.scores import load_scores

    np.save(tmp_path / "ok.npy", np.arange(3000, dtype=np.int16))
    return load_scores(tmp_path / "ok.npy", demo_stores["train"]).dtype == np.float64


# ----------------------------------------------------------------------------- issue 25: resources before work

def test_sizes_are_printed_in_a_unit_that_shows_the_difference():
    from fastccfs.resources import human

    assert [human(n) for n in (1000, 10_000, 5 * 2**20, 900 * 2**20, 3 * 2**30)] == \
        ["1,000 bytes", "10 KB", "5 MB", "900 MB", "3.00 GB"]


def test_convert_size_too_large_for_memory_is_refused_before_decoding(capsys, tmp_path, monkeypatch):
    from fastccfs import resources, store

    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": 8 * 2**30)
    monkeypatch.setattr(store, "decode", lambda *a: pytest.fail("decoded an image"))
    code, err = run_convert(capsys, "demo", tmp_path / "cache", "--size", "100000", "--workers", "2")
    assert_one_line_error(code, err, "convert --size 100000 (2 decoding process(es), each resizing to 100000×100000) "
                          "needs 167.64 GB of memory on cpu, which has 8.00 GB available", "pass a smaller --size")
    assert_cache_clean(tmp_path / "cache")


def test_run_needs_checked_before_work(capsys, tmp_path, cache, monkeypatch, demo_stores):
    from fastccfs import context, resources
    from fastccfs.cli import main as cli

    monkeypatch.setattr(context, "fit", lambda *a, **k: pytest.fail("training started"))
    base = ["run", "demo", "--cache", str(cache), "--quiet", "--model", "convnet_bn", "--teacher-model", "convnet_bn"]
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": 5 * 2**20)
    assert cli([*base, "--out", str(tmp_path / "a")]) == 2
    need = resources.human(demo_stores["train"].images.nbytes + demo_stores["test"].images.nbytes)
    assert capsys.readouterr().err.strip() == (
        f"fastccfs: error: the tensor loader (the demo train and test splits on the device) needs {need} of memory on "
        "cpu, which has 5 MB available: pass --loader ffcv (images read from disk), or use a machine with more memory")
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": 2**40)
    monkeypatch.setattr(resources, "free_disk", lambda path: 3 * 2**20)
    assert cli([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastccfs: error: the run (") and "teacher checkpoint" in err and "\n" not in err, err
    assert "which has 3 MB: free some space or pass another --out" in err
    assert not (tmp_path / "a").exists()
