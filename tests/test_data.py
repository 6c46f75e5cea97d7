"""robust_utils.data: real MNIST and CIFAR-10 as tensors, balanced subsets, checksum errors."""

import gzip
import pickle
import shutil

import numpy as np
import pytest
import torch

from robust_utils.core import data


def test_mnist_test_split_shapes_and_range():
    x, y = data.load_dataset("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # first labels and class counts of the official test set (../shared/data/SOURCES.md)
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
    (dict(name="svhn", split="train"), "unknown dataset 'svhn'; valid: mnist, cifar10, cifar10_subset"),
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
    assert "ROBUST_UTILS_DATA" in msg


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

def test_cifar10_subset_matches_sources_md():
    """The subset loads as (N, 3, 32, 32) float in [0, 1] with the class counts of SOURCES.md."""
    x, y = data.load_dataset("cifar10_subset", "train")
    assert x.shape == (5085, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert torch.bincount(y).tolist() == [517, 524, 490, 493, 537, 475, 503, 516, 529, 501]
    xt, yt = data.load_dataset("cifar10_subset", "test")
    assert xt.shape == (1017, 3, 32, 32) and yt[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
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
    monkeypatch.setattr(data, "manifest", lambda: manifest)
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
