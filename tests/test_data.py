"""robust_utils.data: real MNIST as tensors, balanced subsets, checksum errors."""

import gzip
import shutil

import pytest
import torch

from robust_utils import data


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
    (dict(name="svhn", split="train"), "unknown dataset 'svhn'; valid: mnist"),
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
