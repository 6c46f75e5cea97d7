"""Datasets as tensors: x float32 (N, C, H, W) in [0, 1], y int64 (N,).

Datasets: "mnist" (the official idx files), "cifar10" (the full CIFAR-10: the official python
batches, or a keras-style npz the user provides) and "cifar10_subset" (a real 5,085 / 1,017-image
prefix of the official batches, ``cifar10_subset.npz``; see data/README.md).

The data root is, in order: the ``root`` argument, the ``ROBUST_UTILS_DATA`` environment
variable, then ``data/`` of this repository. Nothing is downloaded: a missing or corrupt file
is an error naming the file, its expected md5 and where to get it. The expected md5s live in
``data/checksums.json`` (tracked in git).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .paths import project_root
from .runtime import resolve_device

DATASETS = ("mnist", "cifar10", "cifar10_subset")
SPLITS = ("train", "test")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar10_subset": 10}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CLASS_NAMES = {"mnist": tuple(str(d) for d in range(10)), "cifar10": CIFAR10_CLASSES,
               "cifar10_subset": CIFAR10_CLASSES}

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MNIST_HOWTO = (
    "Get the four official MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; e.g. from "
    "https://ossci-datasets.s3.amazonaws.com/mnist/, the mirror torchvision uses), put them in "
    "<root>/MNIST/raw/, and point ROBUST_UTILS_DATA at <root> (see data/README.md)."
)

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR10_NPZ = "cifar10.npz"
_CIFAR10_SUBSET = "cifar10_subset.npz"
_CIFAR10_SIZES = {"train": 50000, "test": 10000}
# The first ten labels of data_batch_1 and of test_batch: a content check for a user's npz, which
# has no official checksum.
_CIFAR10_FIRST_LABELS = {"train": (6, 9, 9, 4, 1, 1, 2, 7, 8, 3), "test": (3, 8, 8, 0, 6, 6, 1, 6, 3, 1)}
_CIFAR10_HOWTO = (
    "Get the official CIFAR-10 python version (cifar-10-python.tar.gz, md5 "
    "c58f30108f718f92721af3b95e74349a, from https://www.cs.toronto.edu/~kriz/cifar.html), unpack it "
    "so that <root>/cifar-10-batches-py/ holds data_batch_1..5 and test_batch, and point "
    "ROBUST_UTILS_DATA at <root>; or save keras.datasets.cifar10.load_data()'s arrays as "
    "<root>/cifar10.npz with keys x_train, y_train, x_test, y_test (see data/README.md)."
)
_CIFAR10_SUBSET_HOWTO = (
    "cifar10_subset.npz is the project's real CIFAR-10 prefix (the first 1017 images of each official "
    "batch; see ../shared/data/SOURCES.md); put it in <root>/ and point ROBUST_UTILS_DATA at <root>."
)


class DataError(FileNotFoundError):
    """A dataset file is missing or its checksum does not match the manifest."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``root``, else $ROBUST_UTILS_DATA, else ``<repo>/data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("ROBUST_UTILS_DATA")
    return Path(env) if env else project_root() / "data"


def manifest() -> dict[str, str]:
    """The tracked checksum manifest: relative path under the data root -> md5 (hex)."""
    with open(project_root() / "data" / "checksums.json") as f:
        return json.load(f)["md5"]


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """md5 of a file, hex."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verified_path(root: Path, rel: str, howto: str) -> Path:
    """``root / rel`` after checking it exists and matches the manifest's md5.

    Raises:
        DataError: the file is missing or corrupt; the message names the file, the expected md5
            and how to obtain it.
    """
    expected = manifest().get(rel)
    if expected is None:
        raise KeyError(f"{rel} is not in data/checksums.json")
    path = root / rel
    if not path.is_file():
        raise DataError(f"missing data file {path} (expected md5 {expected}). {howto}")
    got = _cached_md5(str(path), path.stat().st_mtime_ns, path.stat().st_size)
    if got != expected:
        raise DataError(f"corrupt data file {path}: md5 {got}, expected {expected}. {howto}")
    return path


@lru_cache(maxsize=64)
def _cached_md5(path: str, mtime_ns: int, size: int) -> str:
    return md5sum(Path(path))


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzip), the format of the official MNIST files."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned byte payload
        raise DataError(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@lru_cache(maxsize=4)
def _load_mnist(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_name, lbl_name = _MNIST_FILES[split]
    img = _read_idx(verified_path(Path(root), f"MNIST/raw/{img_name}", _MNIST_HOWTO))
    lbl = _read_idx(verified_path(Path(root), f"MNIST/raw/{lbl_name}", _MNIST_HOWTO))
    x = torch.from_numpy(img.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(lbl.astype(np.int64))
    return x, y


def _unpickle_batch(path: Path) -> dict:
    # Only called on a file whose md5 matched the official one (verified_path), so the pickle
    # holds exactly the official arrays and nothing else.
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _hwc_to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 32, 32, 3) uint8 HWC and (N,) labels -> (N, 3, 32, 32) uint8 and (N,) int64 tensors."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
    return xt, torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64))


def _check_cifar_arrays(x: np.ndarray, y: np.ndarray, split: str, path: Path, n: int | None) -> None:
    """Shape, dtype and label checks of a CIFAR-10 array pair read from ``path``."""
    problems = []
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        problems.append(f"images {x.shape} {x.dtype}, expected (N, 32, 32, 3) uint8")
    if y.reshape(-1).shape[0] != x.shape[0]:
        problems.append(f"{y.reshape(-1).shape[0]} labels for {x.shape[0]} images")
    if n is not None and x.shape[0] != n:
        problems.append(f"{x.shape[0]} {split} images, expected {n}")
    labels = y.reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        problems.append("labels outside 0..9")
    if labels.size >= 10 and tuple(int(v) for v in labels[:10]) != _CIFAR10_FIRST_LABELS[split]:
        problems.append(f"first labels {labels[:10].tolist()}, expected {list(_CIFAR10_FIRST_LABELS[split])} "
                        "(the official order)")
    if problems:
        raise DataError(f"corrupt data file {path} ({split}): " + "; ".join(problems) + f". {_CIFAR10_HOWTO}")


@lru_cache(maxsize=4)
def _load_cifar10(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = Path(root)
    if (base / _CIFAR10_DIR).is_dir() or not (base / _CIFAR10_NPZ).is_file():
        xs, ys = [], []
        for name in _CIFAR10_BATCHES[split]:
            try:
                path = verified_path(base, f"{_CIFAR10_DIR}/{name}", _CIFAR10_HOWTO)
            except DataError as e:
                if (base / _CIFAR10_SUBSET).is_file():
                    raise DataError(
                        f"{e} Only the 5,085/1,017-image subset {base / _CIFAR10_SUBSET} is here: it serves "
                        "dataset 'cifar10_subset' (the smoke and classroom profiles), not the full CIFAR-10 "
                        "that the paper profile asks for.") from None
                raise
            batch = _unpickle_batch(path)
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        _check_cifar_arrays(x, y, split, base / _CIFAR10_DIR, _CIFAR10_SIZES[split])
        return _hwc_to_tensors(x, y)
    path = base / _CIFAR10_NPZ
    with np.load(path, allow_pickle=False) as z:
        x, y = z[f"x_{split}"], z[f"y_{split}"]
    _check_cifar_arrays(x, y, split, path, _CIFAR10_SIZES[split])
    return _hwc_to_tensors(x, y)


@lru_cache(maxsize=4)
def _load_cifar10_subset(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    path = verified_path(Path(root), _CIFAR10_SUBSET, _CIFAR10_SUBSET_HOWTO)
    with np.load(path, allow_pickle=False) as z:
        return _hwc_to_tensors(z[f"x_{split}"], z[f"y_{split}"])


_LOADERS = {"mnist": _load_mnist, "cifar10": _load_cifar10, "cifar10_subset": _load_cifar10_subset}


def balanced_subset(y: torch.Tensor, n: int, seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """Indices of a class-balanced random subset of size n (seed-determined, sorted).

    Each class gets n // K samples; the n % K left over go to the classes that come first in a
    seeded permutation. A class with too few samples gives what it has and the rest is drawn
    from the others.

    Args:
        y: (N,) int64 labels.   n: subset size, 1 <= n <= N.   seed: subset seed.
    Returns:
        (n,) int64 indices into y, sorted.
    Raises:
        ValueError: n out of range.
    """
    total = y.numel()
    if not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an int in [1, {total}], got {n!r}")
    k = num_classes or int(y.max()) + 1
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=g)
    ys = y[perm]
    # rank of each sample within its class, in permutation order
    order = torch.argsort(ys, stable=True)
    counts = torch.bincount(ys, minlength=k)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(total) - starts[ys[order]]
    quota = torch.full((k,), n // k, dtype=torch.int64)
    quota[torch.randperm(k, generator=g)[: n % k]] += 1
    take = rank < quota[ys]
    chosen = perm[take]
    if chosen.numel() < n:  # some class ran short: fill from the rest, in permutation order
        rest = perm[~take][: n - chosen.numel()]
        chosen = torch.cat([chosen, rest])
    return torch.sort(chosen).values


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None, n: int | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as tensors.

    Args:
        name: one of ``DATASETS``:
            - "mnist": the four official idx .gz files under <root>/MNIST/raw/, md5-checked;
              x (N, 1, 28, 28); 60,000 / 10,000 images.
            - "cifar10": the full CIFAR-10, x (N, 3, 32, 32); 50,000 / 10,000 images. Read from the
              official python batches <root>/cifar-10-batches-py/{data_batch_1..5, test_batch}
              (md5-checked against the official values) when that folder exists, otherwise from a
              keras-style <root>/cifar10.npz (keys x_train (50000, 32, 32, 3) uint8, y_train
              (50000,) or (50000, 1), x_test, y_test; no official checksum exists for such a
              file, so its shapes, dtypes and first ten labels are checked instead).
            - "cifar10_subset": <root>/cifar10_subset.npz (md5-checked), the first 1,017 images of
              each official batch: 5,085 train / 1,017 test images, x (N, 3, 32, 32).
        split: "train" or "test".
        root: data root; default $ROBUST_UTILS_DATA, else <repo>/data.
        n: if given, a class-balanced, seed-determined subset of n samples (``balanced_subset``).
        seed: the subset seed.   device: where the tensors are put.
    Returns:
        x: (N, C, H, W) float32 in [0, 1] (pixel / 255);  y: (N,) int64.
    Raises:
        ValueError: unknown name or split, n out of range.
        DataError: a missing or corrupt file (names the file, its md5 and how to get it; for
            "cifar10" with only the subset present, says so).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    x, y = _LOADERS[name](str(data_root(root).resolve()), split)
    if n is not None:
        idx = balanced_subset(y, n, seed, NUM_CLASSES[name])
        x, y = x[idx], y[idx]
    dev = resolve_device(device)
    return x.to(dev, torch.float32).div_(255.0), y.to(dev)
