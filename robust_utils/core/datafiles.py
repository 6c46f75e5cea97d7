"""The dataset files: where each lives under the data root, its md5, and the command that fetches it.

Infrastructure, not from a paper. The data root is, in order: the ``root`` argument, the
``ROBUST_UTILS_DATA`` environment variable, then ``data/`` of this repository (which ships the four
official MNIST files and the CIFAR-10 subset). The expected md5 of every file the loaders read is
in ``data/checksums.json`` (tracked in git), as are the md5s of the archives ``download`` fetches.

The runner's preflight uses :func:`required_files` and :func:`check_files` to list every missing or
corrupt file, with the command that fetches it, before any notebook starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .paths import project_root

DATA_VARIABLE = "ROBUST_UTILS_DATA"
DOWNLOADABLE = ("mnist", "cifar10", "svhn")

MNIST_FILES = {
    "train": ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz"),
    "test": ("MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": tuple(f"{CIFAR10_DIR}/data_batch_{i}" for i in range(1, 6)),
                   "test": (f"{CIFAR10_DIR}/test_batch",)}
CIFAR10_NPZ = "cifar10.npz"
CIFAR10_SUBSET = "cifar10_subset.npz"
SVHN_FILES = {"train": "SVHN/train_32x32.mat", "test": "SVHN/test_32x32.mat"}

FETCH = {
    "mnist": "python -m robust_utils download mnist",
    "cifar10": "python -m robust_utils download cifar10",
    # the subset is embedded in the repository; with the full batches downloaded it is derived from them
    "cifar10_subset": "python -m robust_utils download cifar10",
    "svhn": "python -m robust_utils download svhn",
}
HOWTO = {
    "mnist": f"Fetch the four official MNIST files with `{FETCH['mnist']}` (into <root>/MNIST/raw/; "
             f"the data root is the root argument, else ${DATA_VARIABLE}, else the repository's data/; "
             "see data/README.md).",
    "cifar10": f"Fetch the official CIFAR-10 python batches with `{FETCH['cifar10']}` (cifar-10-python.tar.gz "
               "from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked into <root>/cifar-10-batches-py/; "
               f"the data root is the root argument, else ${DATA_VARIABLE}, else the repository's data/), or "
               "save keras.datasets.cifar10.load_data()'s arrays as <root>/cifar10.npz with keys x_train, "
               "y_train, x_test, y_test (see data/README.md).",
    "cifar10_subset": "cifar10_subset.npz is embedded in the repository (restore it with "
                      "`git checkout -- data/cifar10_subset.npz`, or copy it into the data root "
                      f"${DATA_VARIABLE}); or run `{FETCH['cifar10_subset']}`: with the full batches "
                      "present the subset is derived from them (see data/README.md).",
    "svhn": f"Fetch SVHN's train_32x32.mat and test_32x32.mat with `{FETCH['svhn']}` (from "
            "http://ufldl.stanford.edu/housenumbers/, into <root>/SVHN/; the data root is the root "
            f"argument, else ${DATA_VARIABLE}, else the repository's data/; see data/README.md).",
}


class DataError(FileNotFoundError):
    """A dataset file is missing, corrupt (md5 mismatch, unreadable, wrong keys or dtypes) or could
    not be downloaded. The message names the file and the command that fetches it."""


@dataclass(frozen=True)
class DataFile:
    """One file a dataset needs.

    Attributes:
        path: absolute path under the data root.
        md5: the expected md5 (hex), or None for a user's file that has no official checksum
            (a keras-style cifar10.npz: its keys, shapes and dtypes are checked when it is loaded).
        fetch: the shell command that fetches it, e.g. "python -m robust_utils download svhn".
    """

    path: Path
    md5: str | None
    fetch: str


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``root``, else $ROBUST_UTILS_DATA, else ``<repo>/data`` (infrastructure)."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_VARIABLE)
    return Path(env) if env else project_root() / "data"


def checksums_path() -> Path:
    """The tracked checksum manifest, ``<repo>/data/checksums.json``."""
    return project_root() / "data" / "checksums.json"


def manifest() -> dict[str, str]:
    """The md5 (hex) of every file the loaders read, by path relative to the data root."""
    with open(checksums_path(), encoding="utf-8") as f:
        return json.load(f)["md5"]


def download_manifest() -> dict[str, str]:
    """The md5 (hex) of the archives ``download`` fetches but the loaders never read, by file name."""
    with open(checksums_path(), encoding="utf-8") as f:
        return json.load(f)["downloads"]


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """md5 of a file, hex."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _cached_md5(path: str, mtime_ns: int, size: int) -> str:
    return md5sum(path)


def file_md5(path: Path) -> str:
    """md5 of a file, cached by (path, mtime, size): a second check of an unchanged file is free."""
    st = path.stat()
    return _cached_md5(str(path), st.st_mtime_ns, st.st_size)


def verified_path(root: Path, rel: str, howto: str) -> Path:
    """``root / rel`` after checking it exists and matches the manifest's md5.

    Args:
        root: the data root.   rel: a key of data/checksums.json ("MNIST/raw/...").
        howto: what to do about it (names the fetch command), appended to the error.
    Raises:
        KeyError: ``rel`` is not in the manifest (a programming error).
        DataError: the file is missing or corrupt; the message names the file, the expected md5
            (and the actual one) and ``howto``.
    """
    expected = manifest().get(rel)
    if expected is None:
        raise KeyError(f"{rel} is not in data/checksums.json")
    path = Path(root) / rel
    if not path.is_file():
        raise DataError(f"missing data file {path} (expected md5 {expected}). {howto}")
    got = file_md5(path)
    if got != expected:
        raise DataError(f"corrupt data file {path}: md5 {got}, expected {expected}. {howto}")
    return path


def cifar10_batches_present(root: str | os.PathLike | None = None) -> bool:
    """Whether all six official CIFAR-10 batch files exist under the root (not yet md5-checked)."""
    base = data_root(root)
    return all((base / rel).is_file() for rels in CIFAR10_BATCHES.values() for rel in rels)


def _listed(base: Path, rels: list[str], name: str) -> list[DataFile]:
    table = manifest()
    return [DataFile(base / rel, table[rel], FETCH[name]) for rel in rels]


def required_files(name: str, root: str | os.PathLike | None = None) -> list[DataFile]:
    """The files that ``load_dataset(name, ...)`` reads (both splits), for a check before any work.

    Args:
        name: "mnist" (the four .gz), "cifar10" (the six official batches; a user's keras-style
            cifar10.npz, md5 None, when the batches folder is absent and that file exists),
            "cifar10_subset" (the six batches when all are present, else cifar10_subset.npz) or
            "svhn" (train_32x32.mat, test_32x32.mat).
        root: the data root (default as :func:`data_root`).
    Returns:
        DataFile entries with absolute paths, in a fixed order.
    Raises:
        ValueError: an unknown dataset name.
    """
    base = data_root(root).absolute()
    batches = [rel for split in ("train", "test") for rel in CIFAR10_BATCHES[split]]
    if name == "mnist":
        return _listed(base, [rel for split in ("train", "test") for rel in MNIST_FILES[split]], name)
    if name == "cifar10":
        if not (base / CIFAR10_DIR).is_dir() and (base / CIFAR10_NPZ).is_file():
            return [DataFile(base / CIFAR10_NPZ, None, FETCH[name])]
        return _listed(base, batches, name)
    if name == "cifar10_subset":
        return _listed(base, batches if cifar10_batches_present(base) else [CIFAR10_SUBSET], name)
    if name == "svhn":
        return _listed(base, [SVHN_FILES["train"], SVHN_FILES["test"]], name)
    raise ValueError(f"unknown dataset {name!r}; valid: mnist, cifar10, cifar10_subset, svhn")


def check_files(files: list[DataFile]) -> list[str]:
    """One problem line per missing or corrupt file (md5 mismatch); an empty list when all are fine.

    Each line names the file, the expected md5 (and the actual one when corrupt) and the command
    that fetches it. md5s are cached by size and mtime, so checking the embedded files is fast.
    """
    problems = []
    for f in files:
        expected = f"expected md5 {f.md5}" if f.md5 else "no official md5"
        if not f.path.is_file():
            problems.append(f"missing {f.path} ({expected}): fetch it with `{f.fetch}`")
            continue
        if f.md5 is not None and (got := file_md5(f.path)) != f.md5:
            problems.append(f"corrupt {f.path} (md5 {got}, {expected}): fetch it again with `{f.fetch}`")
    return problems


__all__ = [
    "CIFAR10_BATCHES", "CIFAR10_DIR", "CIFAR10_NPZ", "CIFAR10_SUBSET", "DATA_VARIABLE", "DOWNLOADABLE",
    "DataError", "DataFile", "FETCH", "HOWTO", "MNIST_FILES", "SVHN_FILES", "check_files", "checksums_path",
    "cifar10_batches_present", "data_root", "download_manifest", "file_md5", "manifest", "md5sum",
    "required_files", "verified_path",
]
