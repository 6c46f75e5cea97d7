"""Datasets as tensors: x float32 (N, C, H, W) in [0, 1], y int64 (N,).

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
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .paths import project_root
from .runtime import resolve_device

DATASETS = ("mnist",)
SPLITS = ("train", "test")
NUM_CLASSES = {"mnist": 10}

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
        name: "mnist" (the four official idx .gz files under <root>/MNIST/raw/, md5-checked).
        split: "train" or "test".
        root: data root; default $ROBUST_UTILS_DATA, else <repo>/data.
        n: if given, a class-balanced, seed-determined subset of n samples (``balanced_subset``).
        seed: the subset seed.   device: where the tensors are put.
    Returns:
        x: (N, C, H, W) float32 in [0, 1] (pixel / 255);  y: (N,) int64.
    Raises:
        ValueError: unknown name or split, n out of range.
        DataError: a missing or corrupt file (names the file, its md5 and how to get it).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    x, y = _load_mnist(str(data_root(root).resolve()), split)
    if n is not None:
        idx = balanced_subset(y, n, seed, NUM_CLASSES[name])
        x, y = x[idx], y[idx]
    dev = resolve_device(device)
    return x.to(dev, torch.float32).div_(255.0), y.to(dev)
