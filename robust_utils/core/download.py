"""``python -m robust_utils download NAME...``: fetch the datasets that are not embedded in data/.

Infrastructure, not from a paper. Each file comes from its dataset's official location through
pooch (https://www.fatiando.org/pooch/): streamed to a temporary name in the destination folder,
md5-checked against data/checksums.json, then renamed into place, with retries and a progress
bar. A file already present with the right md5 is not fetched again; a corrupt one is replaced.
A wrong checksum (after the retries) is a DataError naming the file, the expected and the actual
md5, and leaves nothing behind.

    mnist    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (the four official files)
    cifar10  cifar-10-batches-py/{data_batch_1..5,test_batch}, unpacked from cifar-10-python.tar.gz
             (the archive is removed once every batch is in place and verified)
    svhn     SVHN/{train,test}_32x32.mat (the cropped-digits format)

The base URL of every file is the official one unless a mirror is given (the ``mirror`` argument,
else $ROBUST_UTILS_DATA_MIRROR): then every file is fetched from ``<mirror>/<file name>``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

from .datafiles import (CIFAR10_BATCHES, DATA_VARIABLE, DOWNLOADABLE, FETCH, MNIST_FILES, SVHN_FILES, DataError,
                        DataFile, check_files, data_root, download_manifest, manifest)
from .io import atomic_write_bytes

MIRROR_VARIABLE = "ROBUST_UTILS_DATA_MIRROR"
# Official locations, tried in order (the first MNIST one is the mirror torchvision uses).
OFFICIAL_URLS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/",),
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
TIMEOUT_S = 60


def _targets(name: str) -> list[str]:
    """The files (relative to the data root) that downloading ``name`` puts in place."""
    if name == "mnist":
        return [rel for split in ("train", "test") for rel in MNIST_FILES[split]]
    if name == "cifar10":
        return [rel for split in ("train", "test") for rel in CIFAR10_BATCHES[split]]
    return [SVHN_FILES["train"], SVHN_FILES["test"]]


class _Md5Recorder:
    """A pooch downloader (HTTP, timeout, optional progress bar) that remembers the md5 of what it
    fetched, so a checksum error can name the actual hash."""

    def __init__(self, progressbar: bool):
        import pooch

        self.http = pooch.HTTPDownloader(progressbar=progressbar, timeout=TIMEOUT_S)
        self.md5: str | None = None

    def __call__(self, url: str, output_file: str, pup: object, check_only: bool = False) -> object:
        self.md5 = None
        result = self.http(url, output_file, pup, check_only=check_only)
        if not check_only:
            h = hashlib.md5()
            with open(output_file, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            self.md5 = h.hexdigest()
        return result


def fetch_file(folder: Path, fname: str, md5: str, bases: Iterable[str], fetch: str, retries: int = 2,
               progressbar: bool = True) -> Path:
    """Fetch ``bases[i] + fname`` into ``folder/fname`` with pooch, md5-checked (infrastructure).

    Args:
        folder: the destination folder (created if needed).   fname: the file name, also the URL's tail.
        md5: the expected md5 (hex).   bases: base URLs tried in order while the server cannot be reached.
        fetch: the command named in errors.   retries: extra attempts per URL (pooch's retry_if_failed).
        progressbar: show pooch's tqdm progress bar on stderr.
    Returns:
        The path of the verified file (a present file with the right md5 is not fetched again).
    Raises:
        DataError: wrong checksum (names the file, the expected and the actual md5; nothing is left
            behind), or no URL could be reached (names each URL and the error).
    """
    import pooch
    import requests

    failures = []
    for base in bases:
        pup = pooch.create(path=folder, base_url=base, registry={fname: f"md5:{md5}"}, retry_if_failed=retries)
        recorder = _Md5Recorder(progressbar)
        try:
            path = Path(pup.fetch(fname, downloader=recorder))
        except ValueError:  # pooch's checksum mismatch; its temporary file is already deleted
            raise DataError(f"checksum mismatch for {folder / fname} downloaded from {pup.get_url(fname)}: md5 "
                            f"{recorder.md5 or 'unknown'}, expected {md5}; nothing was kept. Try again "
                            f"later or from another mirror (${MIRROR_VARIABLE}), then `{fetch}`.") from None
        except requests.exceptions.RequestException as e:
            failures.append(f"{base}{fname}: {type(e).__name__}: {e}")
            continue
        if recorder.md5 is not None:  # downloaded now: pooch's temporary file is owner-only
            os.chmod(path, 0o644)
        return path
    raise DataError(f"could not download {fname} into {folder}: " + "; ".join(failures)
                    + f". Check the network (or set ${MIRROR_VARIABLE}) and run `{fetch}` again.")


def unpack_cifar10(archive: Path, root: Path) -> list[Path]:
    """Write the six official batches of ``cifar-10-python.tar.gz`` under ``root/cifar-10-batches-py/``.

    Only those six members are read (no path in the archive is trusted); each is md5-checked
    against data/checksums.json before it is written atomically (core.io). Infrastructure.

    Raises:
        DataError: the archive cannot be read, lacks a batch, or a batch has the wrong md5 (names
            the member, the expected and the actual md5; that batch is not written).
    """
    expected, written = manifest(), []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for rel in _targets("cifar10"):
                member = tar.extractfile(rel)
                if member is None:
                    raise KeyError(rel)
                raw = member.read()
                if (got := hashlib.md5(raw).hexdigest()) != expected[rel]:
                    raise DataError(f"checksum mismatch for {rel} in {archive}: md5 {got}, expected {expected[rel]}; "
                                    f"it was not written. Delete {archive} and run `{FETCH['cifar10']}` again.")
                written.append(atomic_write_bytes(root / rel, raw))
    except DataError:
        raise
    except (tarfile.TarError, KeyError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"cannot unpack {archive} ({type(e).__name__}: {e}). Delete it and run "
                        f"`{FETCH['cifar10']}` again.") from None
    return written


def _writable_root(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data root {root} ({e}); point ${DATA_VARIABLE} at a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise DataError(f"the data root {root} is not writable; point ${DATA_VARIABLE} at a writable folder")
    return root


def _download_one(name: str, root: Path, bases: tuple[str, ...], retries: int, progressbar: bool,
                  log: Callable[[str], None]) -> list[Path]:
    targets = [root / rel for rel in _targets(name)]
    table = manifest()
    if not check_files([DataFile(root / rel, table[rel], FETCH[name]) for rel in _targets(name)]):
        log(f"{name}: already in {', '.join(dict.fromkeys(str(p.parent) for p in targets))} (md5 verified)")
        return targets
    if name == "cifar10":
        log(f"{name}: fetching {CIFAR10_ARCHIVE} (170 MB) into {root}")
        archive = fetch_file(root, CIFAR10_ARCHIVE, download_manifest()[CIFAR10_ARCHIVE], bases, FETCH[name],
                             retries, progressbar)
        written = unpack_cifar10(archive, root)
        archive.unlink()
        log(f"{name}: unpacked and verified {len(written)} batches in {root / 'cifar-10-batches-py'}; "
            f"removed {archive.name}")
        return written
    log(f"{name}: fetching {len(targets)} files into {targets[0].parent}")
    return [fetch_file(path.parent, path.name, table[rel], bases, FETCH[name], retries, progressbar)
            for rel, path in zip(_targets(name), targets)]


def download(names: Iterable[str], root: str | os.PathLike | None = None, mirror: str | None = None,
             retries: int = 2, progressbar: bool = True, log: Callable[[str], None] = print) -> list[Path]:
    """Fetch datasets that are not embedded into the data root's layout, checksum-verified (infrastructure).

    Args:
        names: any of "mnist", "cifar10", "svhn" (repeats are ignored).
        root: the data root (default: $ROBUST_UTILS_DATA, else the repository's data/).
        mirror: a base URL serving every file by its name; default $ROBUST_UTILS_DATA_MIRROR, else
            each dataset's official location.
        retries: extra attempts per file after a network error or a checksum mismatch.
        progressbar: show a progress bar per file on stderr.   log: where progress lines go.
    Returns:
        The paths of every file in place (fetched now or already verified).
    Raises:
        ValueError: no name, or an unknown one (before anything is fetched).
        DataError: the data root is not writable, a file cannot be fetched, or a checksum does not
            match (the message names the file, the expected and the actual md5; nothing is left behind).
    """
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in DOWNLOADABLE]
    if not names or unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(map(repr, unknown)) or '(none given)'} to download; "
                         f"valid: {', '.join(DOWNLOADABLE)} (MNIST and the CIFAR-10 subset are already in data/)")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    mirror = mirror or os.environ.get(MIRROR_VARIABLE) or None
    base = _writable_root(data_root(root).absolute())
    paths = []
    for name in names:
        bases = (mirror.rstrip("/") + "/",) if mirror else OFFICIAL_URLS[name]
        paths += _download_one(name, base, bases, retries, progressbar, log)
    return paths


__all__ = ["CIFAR10_ARCHIVE", "MIRROR_VARIABLE", "OFFICIAL_URLS", "download", "fetch_file", "unpack_cifar10"]
