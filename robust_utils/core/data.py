"""Datasets as tensors: x float32 (N, C, H, W) in [0, 1], y int64 (N,).

Datasets: "mnist" (the official idx files, embedded in data/), "cifar10" (the full CIFAR-10: the
official python batches, or a keras-style npz the user provides), "cifar10_subset" (a real
5,085 / 1,017-image prefix of the official batches: derived from the batches when they are present,
else the embedded ``cifar10_subset.npz``; see data/README.md) and "svhn" (the official
``{train,test}_32x32.mat``).

The data root is, in order: the ``root`` argument, the ``ROBUST_UTILS_DATA`` environment
variable, then ``data/`` of this repository. Nothing is downloaded here (``python -m robust_utils
download NAME`` does that): a missing or corrupt file is a :class:`DataError` naming the file, its
expected md5 and the command that fetches it. The expected md5s live in ``data/checksums.json``;
file locations, checksums and the preflight helpers are in :mod:`robust_utils.core.datafiles`.
Infrastructure, not from a paper.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .datafiles import (CIFAR10_BATCHES, CIFAR10_DIR, CIFAR10_NPZ, CIFAR10_SUBSET, HOWTO, MNIST_FILES,
                        SVHN_FILES, DataError, DataFile, check_files, cifar10_batches_present, data_root,
                        manifest, md5sum, required_files, verified_path)
from .runtime import resolve_device

DATASETS = ("mnist", "cifar10", "cifar10_subset", "svhn")
SPLITS = ("train", "test")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar10_subset": 10, "svhn": 10}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))
CLASS_NAMES = {"mnist": DIGITS, "cifar10": CIFAR10_CLASSES, "cifar10_subset": CIFAR10_CLASSES, "svhn": DIGITS}

_CIFAR10_SIZES = {"train": 50000, "test": 10000}
# The subset holds the first 1,017 images of each official batch (3 MiB of each pickle survived).
_CIFAR10_SUBSET_PER_BATCH = 1017
# The first ten labels of data_batch_1 and of test_batch: a content check for a user's npz, which
# has no official checksum.
_CIFAR10_FIRST_LABELS = {"train": (6, 9, 9, 4, 1, 1, 2, 7, 8, 3), "test": (3, 8, 8, 0, 6, 6, 1, 6, 3, 1)}
# What np.load / scipy.io.loadmat raise on a truncated or garbage file.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzip), the format of the official MNIST files."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned byte payload
        raise DataError(f"{path}: not an unsigned-byte idx file (magic {magic:#x}). {HOWTO['mnist']}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@lru_cache(maxsize=4)
def _load_mnist(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_rel, lbl_rel = MNIST_FILES[split]
    img = _read_idx(verified_path(Path(root), img_rel, HOWTO["mnist"]))
    lbl = _read_idx(verified_path(Path(root), lbl_rel, HOWTO["mnist"]))
    x = torch.from_numpy(img.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(lbl.astype(np.int64))
    return x, y


def _read_batches(base: Path, rels: tuple[str, ...], howto: str, first: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The official python batches ``rels`` (md5-checked), concatenated: (N, 32, 32, 3) uint8 HWC and
    (N,) int64; with ``first``, only the first ``first`` images of each batch."""
    xs, ys = [], []
    for rel in rels:
        path = verified_path(base, rel, howto)
        # Only unpickled after its md5 matched the official one, so it holds exactly the official arrays.
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        rows = np.asarray(batch["data"], dtype=np.uint8)[:first]  # (n, 3072): 1024 R, 1024 G, 1024 B
        xs.append(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch["labels"], dtype=np.int64)[:first])
    return np.concatenate(xs), np.concatenate(ys)


def _hwc_to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 32, 32, 3) uint8 HWC and (N,) labels -> (N, 3, 32, 32) uint8 and (N,) int64 tensors."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
    return xt, torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64))


def _check_cifar_arrays(x: np.ndarray, y: np.ndarray, split: str, path: Path, n: int | None) -> None:
    """Shape, dtype and label checks of a CIFAR-10 array pair read from ``path``."""
    problems = []
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        problems.append(f"images {x.shape} {x.dtype}, expected (N, 32, 32, 3) uint8")
    labels = y.reshape(-1)
    if not np.issubdtype(labels.dtype, np.integer):
        problems.append(f"labels of dtype {labels.dtype}, expected an integer dtype")
    if labels.shape[0] != (x.shape[0] if x.ndim else 1):
        problems.append(f"{labels.shape[0]} labels for {x.shape[0] if x.ndim else 1} images")
    if n is not None and x.ndim and x.shape[0] != n:
        problems.append(f"{x.shape[0]} {split} images, expected {n}")
    if not problems and labels.size and (labels.min() < 0 or labels.max() > 9):
        problems.append("labels outside 0..9")
    if not problems and labels.size >= 10 and tuple(int(v) for v in labels[:10]) != _CIFAR10_FIRST_LABELS[split]:
        problems.append(f"first labels {labels[:10].tolist()}, expected {list(_CIFAR10_FIRST_LABELS[split])} "
                        "(the official order)")
    if problems:
        raise DataError(f"corrupt data file {path} ({split}): " + "; ".join(problems) + f". {HOWTO['cifar10']}")


def _read_npz(path: Path, split: str, howto: str) -> tuple[np.ndarray, np.ndarray]:
    """``x_<split>``, ``y_<split>`` of an npz archive; a DataError naming ``path`` when the file is
    not a readable npz (garbage, truncated, pickled objects) or lacks either key."""
    keys = (f"x_{split}", f"y_{split}")
    try:
        z = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DataError(f"unreadable data file {path}: not an npz archive ({type(e).__name__}: {e}). {howto}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"unreadable data file {path}: a single .npy array, expected an npz archive "
                        f"with keys x_train, y_train, x_test, y_test. {howto}")
    with z:
        if missing := [k for k in keys if k not in z.files]:
            raise DataError(f"corrupt data file {path}: no array {', '.join(missing)} (it holds "
                            f"{', '.join(z.files) or 'nothing'}); expected keys x_train, y_train, x_test, "
                            f"y_test. {howto}")
        try:
            return z[keys[0]], z[keys[1]]
        except _READ_ERRORS as e:
            raise DataError(f"corrupt data file {path}: array {keys[0]} or {keys[1]} cannot be read "
                            f"({type(e).__name__}: {e}). {howto}") from None


@lru_cache(maxsize=4)
def _load_cifar10(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = Path(root)
    if (base / CIFAR10_DIR).is_dir() or not (base / CIFAR10_NPZ).is_file():
        try:
            x, y = _read_batches(base, CIFAR10_BATCHES[split], HOWTO["cifar10"])
        except DataError as e:
            if (base / CIFAR10_SUBSET).is_file():
                raise DataError(
                    f"{e} Only the 5,085/1,017-image subset {base / CIFAR10_SUBSET} is here: it serves "
                    "dataset 'cifar10_subset' (the smoke and classroom profiles), not the full CIFAR-10 "
                    "that the paper profile asks for.") from None
            raise
        _check_cifar_arrays(x, y, split, base / CIFAR10_DIR, _CIFAR10_SIZES[split])
        return _hwc_to_tensors(x, y)
    path = base / CIFAR10_NPZ
    x, y = _read_npz(path, split, HOWTO["cifar10"])
    _check_cifar_arrays(x, y, split, path, _CIFAR10_SIZES[split])
    return _hwc_to_tensors(x, y)


@lru_cache(maxsize=4)
def _load_cifar10_subset(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = Path(root)
    if cifar10_batches_present(base):  # the same images, read from the full download
        return _hwc_to_tensors(*_read_batches(base, CIFAR10_BATCHES[split], HOWTO["cifar10"],
                                              first=_CIFAR10_SUBSET_PER_BATCH))
    path = verified_path(base, CIFAR10_SUBSET, HOWTO["cifar10_subset"])
    return _hwc_to_tensors(*_read_npz(path, split, HOWTO["cifar10_subset"]))


@lru_cache(maxsize=2)
def _load_svhn(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.io  # only SVHN needs it

    path = verified_path(Path(root), SVHN_FILES[split], HOWTO["svhn"])
    try:
        mat = scipy.io.loadmat(path)
    except _READ_ERRORS + (NotImplementedError,) as e:
        raise DataError(f"unreadable data file {path}: not a MATLAB file ({type(e).__name__}: {e}). "
                        f"{HOWTO['svhn']}") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        got = f"{x.shape} {x.dtype}" if isinstance(x, np.ndarray) else "missing"
        raise DataError(f"corrupt data file {path}: X is {got}, expected (32, 32, 3, N) uint8. {HOWTO['svhn']}")
    labels = np.asarray(y if y is not None else [], dtype=np.float64).reshape(-1)
    if labels.shape[0] != x.shape[3] or (labels.size and not np.isin(labels, np.arange(1, 11)).all()):
        raise DataError(f"corrupt data file {path}: y must hold {x.shape[3]} labels in 1..10 (10 is digit 0). "
                        f"{HOWTO['svhn']}")
    labels = labels.astype(np.int64) % 10  # SVHN writes digit 0 as label 10
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # (32, 32, 3, N) -> (N, 3, 32, 32)
    return xt, torch.from_numpy(labels)


_LOADERS = {"mnist": _load_mnist, "cifar10": _load_cifar10, "cifar10_subset": _load_cifar10_subset,
            "svhn": _load_svhn}


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
            - "mnist": the four official idx .gz files under <root>/MNIST/raw/ (embedded in the
              repository's data/), md5-checked; x (N, 1, 28, 28); 60,000 / 10,000 images.
            - "cifar10": the full CIFAR-10, x (N, 3, 32, 32); 50,000 / 10,000 images. Read from the
              official python batches <root>/cifar-10-batches-py/{data_batch_1..5, test_batch}
              (md5-checked against the official values; ``python -m robust_utils download cifar10``)
              when that folder exists, otherwise from a keras-style <root>/cifar10.npz (keys x_train
              (50000, 32, 32, 3) uint8, y_train (50000,) or (50000, 1) integer, x_test, y_test; no
              official checksum exists for such a file, so its keys, shapes, dtypes and first ten
              labels are checked instead).
            - "cifar10_subset": the first 1,017 images of each official batch, 5,085 train / 1,017
              test, x (N, 3, 32, 32): read from the official batches when all six are present (the
              same bytes), else from the embedded <root>/cifar10_subset.npz (md5-checked).
            - "svhn": <root>/SVHN/{train,test}_32x32.mat (md5-checked; ``python -m robust_utils
              download svhn``), x (N, 3, 32, 32); 73,257 / 26,032 images; SVHN's label 10 (digit 0)
              becomes 0.
        split: "train" or "test".
        root: data root; default $ROBUST_UTILS_DATA, else <repo>/data.
        n: if given, a class-balanced, seed-determined subset of n samples (``balanced_subset``).
        seed: the subset seed.   device: where the tensors are put.
    Returns:
        x: (N, C, H, W) float32 in [0, 1] (pixel / 255);  y: (N,) int64 in 0..9.
    Raises:
        ValueError: unknown name or split, n out of range.
        DataError: a missing, corrupt or unreadable file (names the file, its md5 and the command
            that fetches it; for "cifar10" with only the subset present, says so).
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


__all__ = [
    "CIFAR10_CLASSES", "CLASS_NAMES", "DATASETS", "DIGITS", "NUM_CLASSES", "SPLITS", "DataError", "DataFile",
    "balanced_subset", "check_files", "data_root", "load_dataset", "manifest", "md5sum", "required_files",
    "verified_path",
]
