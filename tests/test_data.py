"""robust_utils.core.data: real MNIST, CIFAR-10 and SVHN as tensors, balanced subsets, checksum and format
errors, and the preflight helpers (required_files, check_files) of core.datafiles."""

import gzip
import pickle
import shutil

import numpy as np
import pytest
import torch

import scipy.io

from robust_utils.core import data, datafiles


def test_mnist_test_split_shapes_and_range():
    x, y = data.load_dataset("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # first labels and class counts of the official test set
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_balanced_subset_is_balanced_and_seeded():
    _, y_full = data.load_dataset("mnist", "train")
    x, y = data.load_dataset("mnist", "train", n=1005, seed=3)
    counts = torch.bincount(y, minlength=10)
    assert len(y) == 1005 and counts.max() - counts.min() <= 1
    x2, y2 = data.load_dataset("mnist", "train", n=1005, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    _, y3 = data.load_dataset("mnist", "train", n=1005, seed=4)
    idx3 = data.balanced_subset(y_full, 1005, seed=4)
    assert torch.equal(y_full[idx3], y3)
    assert not torch.equal(data.balanced_subset(y_full, 1005, seed=3), idx3)


def test_balanced_subset_fills_short_classes():
    y = torch.tensor([0] * 2 + [1] * 50)
    idx = data.balanced_subset(y, 20, seed=0)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert (y[idx] == 0).sum() == 2  # class 0 gives what it has, class 1 the rest


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="imagenet", split="train"), "unknown dataset 'imagenet'; valid: mnist, cifar10, cifar10_subset, svhn"),
    (dict(name="mnist", split="val"), "unknown split 'val'"),
    (dict(name="mnist", split="test", n=0), r"n must be an int in \[1, 10000\]"),
    (dict(name="mnist", split="test", n=10001), r"n must be an int in \[1, 10000\]"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset(**kwargs)


def _copy_mnist(tmp_path):
    src = data.data_root() / "MNIST" / "raw"
    dst = tmp_path / "MNIST" / "raw"
    dst.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(src / name, dst / name)
    return dst


def test_missing_file_names_file_md5_and_howto(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load_dataset("mnist", "test", root=tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "9fb629c4189551a2d022fa330f9573f3" in msg
    assert "ROBUST_UTILS_DATA" in msg and "python -m robust_utils download mnist" in msg


def test_corrupt_file_raises_md5_mismatch(tmp_path):
    dst = _copy_mnist(tmp_path)
    with gzip.open(dst / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        raw = bytearray(f.read())
    raw[8] = (raw[8] + 1) % 10  # change one label
    with gzip.open(dst / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(raw))
    with pytest.raises(data.DataError, match=r"corrupt data file .*t10k-labels-idx1-ubyte.gz: md5 [0-9a-f]{32}, "
                                             r"expected ec29112dd5afa0611ce80d1b7f02629c"):
        data.load_dataset("mnist", "test", root=tmp_path)


def test_root_argument_and_environment(tmp_path, monkeypatch):
    _copy_mnist(tmp_path)
    x, _ = data.load_dataset("mnist", "test", root=tmp_path, n=10)
    assert x.shape == (10, 1, 28, 28)
    monkeypatch.setenv("ROBUST_UTILS_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("ROBUST_UTILS_DATA")
    assert data.data_root().name == "data"


# ------------------------------------------------------------------------------------ CIFAR-10

def test_cifar10_subset_matches_data_readme():
    """The embedded subset loads as (N, 3, 32, 32) float in [0, 1] with the class counts of data/README.md."""
    x, y = data.load_dataset("cifar10_subset", "train")
    assert x.shape == (5085, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert torch.bincount(y).tolist() == [517, 524, 490, 493, 537, 475, 503, 516, 529, 501]
    xt, yt = data.load_dataset("cifar10_subset", "test")
    assert xt.shape == (1017, 3, 32, 32) and yt[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(yt).tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    # the first pixels of data_batch_1's first row (R plane) as printed everywhere: 59, 43, 50, 68
    assert (x[0, 0, 0, :4] * 255).round().tolist() == [59, 43, 50, 68]
    assert 0 <= float(x.min()) and float(x.max()) <= 1


def _write_official_batches(root, x_hwc, y, manifest):
    """Write python batches in the official layout (rows of 1024 R, 1024 G, 1024 B) and record their md5."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = x_hwc.transpose(0, 3, 1, 2).reshape(len(x_hwc), 3072)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    for i, name in enumerate(names):
        part = slice(i * 2, i * 2 + 2)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": y[part].tolist(), "data": rows[part]}, f)
        manifest[f"cifar-10-batches-py/{name}"] = data.md5sum(folder / name)


def test_cifar10_official_batches_are_read_in_channel_order(tmp_path, monkeypatch):
    z = np.load(data.data_root() / "cifar10_subset.npz")
    x_hwc, y = z["x_train"][:10], z["y_train"][:10]
    manifest = dict(data.manifest())
    _write_official_batches(tmp_path, x_hwc, y, manifest)
    monkeypatch.setattr(datafiles, "manifest", lambda: manifest)
    monkeypatch.setitem(data._CIFAR10_SIZES, "train", 10)
    data._load_cifar10.cache_clear()
    x, yy = data.load_dataset("cifar10", "train", root=tmp_path)
    data._load_cifar10.cache_clear()
    expected, _ = data.load_dataset("cifar10_subset", "train")
    assert torch.equal(x, expected[:10]) and yy.tolist() == y.tolist()
    # one flipped byte: the md5 check names the file and the expected md5
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"corrupt data file .*data_batch_3: md5 [0-9a-f]{32}, expected "
                                             + manifest["cifar-10-batches-py/data_batch_3"]):
        data.load_dataset("cifar10", "train", root=tmp_path)
    data._load_cifar10.cache_clear()


def test_cifar10_keras_npz_is_checked(tmp_path, monkeypatch):
    z = np.load(data.data_root() / "cifar10_subset.npz")
    monkeypatch.setitem(data._CIFAR10_SIZES, "test", 20)
    np.savez(tmp_path / "cifar10.npz", x_train=z["x_train"][:5], y_train=z["y_train"][:5, None],
             x_test=z["x_test"][:20], y_test=z["y_test"][:20, None].astype(np.uint8))
    data._load_cifar10.cache_clear()
    x, y = data.load_dataset("cifar10", "test", root=tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.dtype == torch.int64 and y[:3].tolist() == [3, 8, 8]
    with pytest.raises(data.DataError, match=r"5 train images, expected 50000"):
        data.load_dataset("cifar10", "train", root=tmp_path)
    np.savez(tmp_path / "cifar10.npz", x_test=z["x_test"][:20], y_test=z["y_test"][::-1][:20].copy())
    data._load_cifar10.cache_clear()
    with pytest.raises(data.DataError, match=r"first labels .* \(the official order\)"):
        data.load_dataset("cifar10", "test", root=tmp_path)
    data._load_cifar10.cache_clear()


def test_full_cifar10_missing_says_only_the_subset_is_here(tmp_path):
    shutil.copy(data.data_root() / "cifar10_subset.npz", tmp_path / "cifar10_subset.npz")
    data._load_cifar10.cache_clear()
    with pytest.raises(data.DataError) as e:
        data.load_dataset("cifar10", "train", root=tmp_path)
    msg = str(e.value)
    assert "data_batch_1" in msg and "c99cafc152244af753f735de768cd75f" in msg and "cifar-10-python.tar.gz" in msg
    assert "cifar10_subset" in msg and "paper profile" in msg


def test_cifar10_subset_is_derived_from_the_batches_when_present(tmp_path, monkeypatch):
    """With the six official batches present, 'cifar10_subset' is their first images of each batch, in
    order: here batches whose first 3 rows are the subset's own images give back exactly those."""
    z = np.load(data.data_root() / "cifar10_subset.npz")
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    manifest = dict(datafiles.manifest())
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        for i, name in enumerate(names):
            x_hwc = np.concatenate([z[f"x_{split}"][i * 1017: i * 1017 + 3],
                                    rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)])
            labels = z[f"y_{split}"][i * 1017: i * 1017 + 3].tolist() + [0, 0]
            rows = x_hwc.transpose(0, 3, 1, 2).reshape(5, 3072)
            with open(folder / name, "wb") as f:
                pickle.dump({"batch_label": name, "labels": labels, "data": rows}, f)
            manifest[f"cifar-10-batches-py/{name}"] = data.md5sum(folder / name)
    monkeypatch.setattr(datafiles, "manifest", lambda: manifest)
    monkeypatch.setattr(data, "_CIFAR10_SUBSET_PER_BATCH", 3)
    data._load_cifar10_subset.cache_clear()
    x, y = data.load_dataset("cifar10_subset", "train", root=tmp_path)
    xt, yt = data.load_dataset("cifar10_subset", "test", root=tmp_path)
    data._load_cifar10_subset.cache_clear()
    ref_x, ref_y = data.load_dataset("cifar10_subset", "train")
    idx = torch.tensor([i * 1017 + j for i in range(5) for j in range(3)])
    assert torch.equal(x, ref_x[idx]) and torch.equal(y, ref_y[idx])
    ref_xt, ref_yt = data.load_dataset("cifar10_subset", "test")
    assert torch.equal(xt, ref_xt[:3]) and torch.equal(yt, ref_yt[:3])
    assert [f.path.name for f in data.required_files("cifar10_subset", tmp_path)] == \
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    (folder / "test_batch").unlink()  # not all six: the embedded npz again
    assert [f.path.name for f in data.required_files("cifar10_subset", tmp_path)] == ["cifar10_subset.npz"]


@pytest.mark.parametrize("arrays, match", [
    (dict(x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2, np.int64)), "no array x_test, y_test"),
    (dict(x_test=np.zeros((2, 32, 32, 3), np.uint8)), "no array y_test"),
    (dict(x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2, np.float32)), "labels of dtype float32"),
    (dict(x_test=np.zeros((2, 32, 32, 3), np.float32), y_test=np.zeros(2, np.int64)), r"images .* float32"),
    (dict(x_test=np.array([object()] * 2), y_test=np.zeros(2, np.int64)), "cannot be read"),
])
def test_a_users_cifar10_npz_with_wrong_keys_or_dtypes_names_the_path(tmp_path, monkeypatch, arrays, match):
    """Issue 19.7: missing keys and wrong dtypes are DataErrors naming the file, never raw numpy errors."""
    monkeypatch.setitem(data._CIFAR10_SIZES, "test", 2)
    path = tmp_path / "cifar10.npz"
    np.savez(path, **arrays)
    data._load_cifar10.cache_clear()
    with pytest.raises(data.DataError, match=match) as e:
        data.load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(e.value) and "python -m robust_utils download cifar10" in str(e.value)
    data._load_cifar10.cache_clear()


@pytest.mark.parametrize("content", [b"garbage, not an npz", b"PK\x03\x04truncated zip", "npy"])
def test_a_garbage_cifar10_npz_names_the_path(tmp_path, content):
    path = tmp_path / "cifar10.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(content)
    data._load_cifar10.cache_clear()
    with pytest.raises(data.DataError, match=r"unreadable data file .*cifar10\.npz") as e:
        data.load_dataset("cifar10", "test", root=tmp_path)
    assert "python -m robust_utils download cifar10" in str(e.value)
    data._load_cifar10.cache_clear()


# ------------------------------------------------------------------------------------ SVHN

def _write_svhn(root, n, manifest, split="train", **override):
    """A small .mat in SVHN's format (X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0), md5 recorded."""
    (root / "SVHN").mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
    path = root / "SVHN" / f"{split}_32x32.mat"
    scipy.io.savemat(path, {"X": x, "y": y} | override)
    manifest[f"SVHN/{split}_32x32.mat"] = data.md5sum(path)
    return x, y


def test_svhn_loads_with_label_10_as_digit_0(tmp_path, monkeypatch):
    manifest = dict(datafiles.manifest())
    monkeypatch.setattr(datafiles, "manifest", lambda: manifest)
    x_raw, _ = _write_svhn(tmp_path, 12, manifest)
    _write_svhn(tmp_path, 4, manifest, split="test")
    data._load_svhn.cache_clear()
    x, y = data.load_dataset("svhn", "train", root=tmp_path)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]  # label 10 is the digit 0
    # pixel (row 5, column 7, green) of image 3 is X[5, 7, 1, 3]
    assert round(float(x[3, 1, 5, 7]) * 255) == int(x_raw[5, 7, 1, 3])
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    xs, ys = data.load_dataset("svhn", "test", root=tmp_path, n=2)
    assert xs.shape == (2, 3, 32, 32) and data.NUM_CLASSES["svhn"] == 10 and data.CLASS_NAMES["svhn"][0] == "0"
    data._load_svhn.cache_clear()


@pytest.mark.parametrize("override, match", [
    (dict(X=np.zeros((28, 28, 1, 3), np.uint8)), r"X is \(28, 28, 1, 3\) uint8, expected \(32, 32, 3, N\) uint8"),
    (dict(y=np.zeros((3, 1), np.uint8)), r"y must hold 3 labels in 1\.\.10"),
    (dict(y=np.ones((2, 1), np.uint8)), r"y must hold 3 labels in 1\.\.10"),
])
def test_a_malformed_svhn_file_names_the_path(tmp_path, monkeypatch, override, match):
    manifest = dict(datafiles.manifest())
    monkeypatch.setattr(datafiles, "manifest", lambda: manifest)
    _write_svhn(tmp_path, 3, manifest, **override)
    data._load_svhn.cache_clear()
    with pytest.raises(data.DataError, match=match) as e:
        data.load_dataset("svhn", "train", root=tmp_path)
    assert str(tmp_path / "SVHN" / "train_32x32.mat") in str(e.value)
    data._load_svhn.cache_clear()


def test_svhn_garbage_and_missing_files(tmp_path, monkeypatch):
    data._load_svhn.cache_clear()
    with pytest.raises(data.DataError) as e:
        data.load_dataset("svhn", "test", root=tmp_path)
    msg = str(e.value)
    assert "missing data file" in msg and "test_32x32.mat" in msg and "eb5a983be6a315427106f1b164d9cef3" in msg
    assert "python -m robust_utils download svhn" in msg
    (tmp_path / "SVHN").mkdir()
    (tmp_path / "SVHN" / "test_32x32.mat").write_bytes(b"\x00garbage" * 40)
    manifest = dict(datafiles.manifest()) | {"SVHN/test_32x32.mat": data.md5sum(tmp_path / "SVHN" / "test_32x32.mat")}
    monkeypatch.setattr(datafiles, "manifest", lambda: manifest)
    with pytest.raises(data.DataError, match=r"unreadable data file .*test_32x32\.mat"):
        data.load_dataset("svhn", "test", root=tmp_path)
    data._load_svhn.cache_clear()


# ------------------------------------------------------------------------------ preflight helpers

def test_required_files_name_each_file_md5_and_fetch_command(tmp_path):
    files = data.required_files("mnist")
    assert [f.path for f in files] == [data.data_root().absolute() / rel for s in ("train", "test")
                                       for rel in datafiles.MNIST_FILES[s]]
    assert files[2].md5 == "9fb629c4189551a2d022fa330f9573f3"
    assert {f.fetch for f in files} == {"python -m robust_utils download mnist"}
    assert data.check_files(files + data.required_files("cifar10_subset")) == []  # the embedded data
    cifar = data.required_files("cifar10", tmp_path)
    assert [f.path.name for f in cifar] == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    assert cifar[0].md5 == "c99cafc152244af753f735de768cd75f"
    assert [f.path.name for f in data.required_files("svhn", tmp_path)] == ["train_32x32.mat", "test_32x32.mat"]
    np.savez(tmp_path / "cifar10.npz", x_test=np.zeros(1))  # a user's npz: no official md5
    (user,) = data.required_files("cifar10", tmp_path)
    assert user.path == tmp_path.absolute() / "cifar10.npz" and user.md5 is None
    assert data.check_files([user]) == []
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.required_files("imagenet")


def test_check_files_reports_missing_and_corrupt_files(tmp_path):
    dst = _copy_mnist(tmp_path)
    (dst / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    problems = data.check_files(data.required_files("mnist", tmp_path))
    assert len(problems) == 3  # two training files missing, one test file corrupt
    assert problems[0] == (f"missing {dst / 'train-images-idx3-ubyte.gz'} (expected md5 "
                           "f68b3c2dcbeaaa9fbdd348bbdeb94873): fetch it with `python -m robust_utils download mnist`")
    corrupt = data.md5sum(dst / "t10k-labels-idx1-ubyte.gz")
    assert problems[2] == (f"corrupt {dst / 't10k-labels-idx1-ubyte.gz'} (md5 {corrupt}, expected md5 "
                           "ec29112dd5afa0611ce80d1b7f02629c): fetch it again with `python -m robust_utils download mnist`")
    gone = datafiles.DataFile(tmp_path / "cifar10.npz", None, "python -m robust_utils download cifar10")
    assert data.check_files([gone]) == [f"missing {tmp_path / 'cifar10.npz'} (no official md5): fetch it with "
                                        "`python -m robust_utils download cifar10`"]
