"""Converting the real datasets: counts, shapes, classes, and the canonical orders of the published scores."""
import io
import json
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import SCORES, TINY_ZIP, need
from fastccfs.store import Store, convert

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_cifar10_counts_shapes_classes(cifar_stores):
    train, test = cifar_stores["train"], cifar_stores["test"]
    assert len(train) == 50000 and len(test) == 10000
    assert train.images.shape == (50000, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and test.images.shape == (10000, 32, 32, 3)
    assert train.classes == CIFAR10 and train.meta["class_names"] == CIFAR10
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2023, 0.1994, 0.2010)


def test_cifar10_train_is_in_official_order(cifar_stores):
    official = np.load(need(SCORES / "cscores_CIFAR10.npz"))["labels"]
    np.testing.assert_array_equal(cifar_stores["train"].labels, official)


def test_cifar10_pixels_are_the_pickled_rows(cifar_root, cifar_stores):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_3", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    row = batch["data"][17].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(cifar_stores["train"].images[20017], row)


def test_cifar10_from_tar_gz_equals_extracted(cifar_tar_gz, cifar_stores, tmp_path):
    stores = convert("cifar10", cifar_tar_gz, tmp_path / "cache", progress=False)
    for split in ("train", "test"):
        np.testing.assert_array_equal(stores[split].images, cifar_stores[split].images)
        np.testing.assert_array_equal(stores[split].labels, cifar_stores[split].labels)


def _cifar100_files(cifar_stores, n=600):
    """CIFAR-100's file format (fine labels, 'meta') around real CIFAR-10 pixels."""
    x = cifar_stores["train"].images[:n]
    fine = (np.arange(n) % 100).tolist()
    data = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(n, -1))
    part = {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "filenames": [""] * n}
    meta = {"fine_label_names": [f"class{i:02d}" for i in range(100)], "coarse_label_names": []}
    return x, fine, {"train": pickle.dumps(part), "test": pickle.dumps(part), "meta": pickle.dumps(meta)}


@pytest.mark.parametrize("form", ["folder", "tar.gz"])
def test_cifar100_layout(cifar_stores, tmp_path, form):
    x, fine, files = _cifar100_files(cifar_stores)
    if form == "folder":
        (tmp_path / "cifar-100-python").mkdir()
        for name, data in files.items():
            (tmp_path / "cifar-100-python" / name).write_bytes(data)
    else:
        with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    train = convert("cifar100", tmp_path, tmp_path / "cache", progress=False)["train"]
    assert train.num_classes == 100 and train.classes[7] == "class07"
    np.testing.assert_array_equal(train.labels, fine)
    np.testing.assert_array_equal(train.images, x)


def test_tiny_counts_classes_and_names(tiny_stores):
    train, test = tiny_stores["train"], tiny_stores["test"]
    assert len(train) == 10000 and len(test) == 2000
    assert train.images.shape == (10000, 64, 64, 3) and train.image_size == (64, 64)
    wnids = zipfile.ZipFile(TINY_ZIP).read("tiny-imagenet-200/wnids.txt").decode().split()
    assert train.classes == sorted(wnids) and len(train.classes) == 200
    assert np.bincount(train.labels).tolist() == [50] * 200
    assert np.bincount(test.labels, minlength=200).tolist() == [10] * 200
    assert train.meta["class_names"][train.classes.index("n01443537")] == "goldfish"
    assert test.meta["source_split"] == "val"
    assert train.mean == (0.4802, 0.4481, 0.3975)


def _decode_member(zf, name):
    return np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))


def test_tiny_train_order_is_the_published_scores_order(tiny_stores):
    """Store index 50·c + r holds the r-th name of class c in string order; mapped into the full
    set's order (index 500·c + rank among the 500 sorted names) the indices only increase, so the
    published scores of the mini store's images are forgetting_Tiny[that index]."""
    train = tiny_stores["train"]
    zf = zipfile.ZipFile(TINY_ZIP)
    full_rank = {f"{k}": r for r, k in enumerate(sorted(str(i) for i in range(500)))}
    mapped = []
    for c, wnid in enumerate(train.classes):
        names = sorted(f"{wnid}_{i}.JPEG" for i in range(50))
        assert names[:3] == [f"{wnid}_0.JPEG", f"{wnid}_1.JPEG", f"{wnid}_10.JPEG"]
        for r in (0, 2, 49) if c % 40 else range(50):
            np.testing.assert_array_equal(
                train.images[50 * c + r], _decode_member(zf, f"tiny-imagenet-200/train/{wnid}/images/{names[r]}"))
        mapped += [500 * c + full_rank[n.rsplit("_", 1)[1][:-5]] for n in names]
    assert np.all(np.diff(mapped) > 0)
    scores = np.load(need(SCORES / "forgetting_Tiny.npy"))
    assert scores[np.asarray(mapped)].shape == (10000,)


def test_tiny_val_labels_follow_annotations(tiny_stores):
    test = tiny_stores["test"]
    zf = zipfile.ZipFile(TINY_ZIP)
    lines = zf.read("tiny-imagenet-200/val/val_annotations.txt").decode().split("\n")
    file, wnid = lines[123].split("\t")[:2]
    assert test.classes[test.labels[123]] == wnid
    np.testing.assert_array_equal(test.images[123], _decode_member(zf, f"tiny-imagenet-200/val/images/{file}"))


def test_tiny_greyscale_jpegs_become_rgb(tiny_stores):
    train = tiny_stores["train"]
    c = train.classes.index("n04067472")
    r = sorted(f"n04067472_{i}.JPEG" for i in range(50)).index("n04067472_9.JPEG")
    img = train.images[50 * c + r].astype(int)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_tiny_extracted_folder_equals_zip(tiny_stores, tmp_path):
    with zipfile.ZipFile(TINY_ZIP) as zf:
        zf.extractall(tmp_path)
    stores = convert("tiny-imagenet", tmp_path, tmp_path / "cache", progress=False, workers=2)
    for split in ("train", "test"):
        np.testing.assert_array_equal(stores[split].images, tiny_stores[split].images)
        np.testing.assert_array_equal(stores[split].labels, tiny_stores[split].labels)


def test_root_may_name_the_archive_itself(tiny_stores, tmp_path):
    train = convert("tiny-imagenet", TINY_ZIP, tmp_path, progress=False)["train"]
    np.testing.assert_array_equal(train.labels, tiny_stores["train"].labels)


def test_demo_is_real_cifar10_in_official_order(demo_stores, cifar_stores):
    demo = demo_stores["train"]
    assert len(demo) == 3000 and len(demo_stores["test"]) == 600 and demo.classes == CIFAR10
    from fastccfs.datasets import DEMO_ZIP

    names = sorted(n for n in zipfile.ZipFile(DEMO_ZIP).namelist() if n.startswith("train/"))
    official = np.array([int(n.rsplit("/", 1)[1][:5]) for n in names])
    # The demo's file names are official train indices: pixels and labels agree with the full store.
    np.testing.assert_array_equal(demo.images, cifar_stores["train"].images[official])
    np.testing.assert_array_equal(demo.labels, cifar_stores["train"].labels[official])
    assert os.path.getsize(DEMO_ZIP) < 5 * 2**20


def test_second_convert_reuses_and_changed_input_reconverts(cifar_root, tmp_path):
    root = tmp_path / "root"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    for f in (cifar_root / "cifar-10-batches-py").iterdir():
        (root / "cifar-10-batches-py" / f.name).write_bytes(f.read_bytes())
    first = convert("cifar10", root, tmp_path / "cache", progress=False)
    made = json.loads((first["train"].path / "meta.json").read_text())["created"]
    inode = os.stat(first["train"].path / "images.npy").st_ino
    import fastccfs.store as store_module

    def no_decode(*args, **kwargs):
        raise AssertionError("an up-to-date store was decoded again")

    with pytest.MonkeyPatch.context() as patch:  # reuse decodes nothing and rewrites nothing
        patch.setattr(store_module, "_write_store", no_decode)
        patch.setattr(store_module.datasets, "read", no_decode)
        again = convert("cifar10", root, tmp_path / "cache", progress=False)
    assert os.stat(again["train"].path / "images.npy").st_ino == inode
    assert json.loads((again["train"].path / "meta.json").read_text())["created"] == made

    # Change one label of test_batch: the store must follow.
    path = root / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="latin1")
    batch["labels"][0] = (batch["labels"][0] + 1) % 10
    path.write_bytes(pickle.dumps(batch))
    changed = convert("cifar10", root, tmp_path / "cache", progress=False)
    assert changed["test"].labels[0] == batch["labels"][0]
    assert json.loads((changed["train"].path / "meta.json").read_text())["created"] >= made
    # No temporary or superseded folders stay behind.
    assert sorted(p.name for p in (tmp_path / "cache" / "cifar10").iterdir()) == ["test", "train"]


def test_store_open_refuses_a_non_store(tmp_path):
    from fastccfs.errors import UserError

    with pytest.raises(UserError, match="not a fastccfs store"):
        Store.open(tmp_path)
