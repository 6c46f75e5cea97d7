"""The checkpoint store: keys that hash a whole training configuration, the cache folder, the
teacher's checksummed bundle, and the ledger of the checkpoints this process used.

Infrastructure, not from a paper. ``training.fit`` asks the store for a key's checkpoint: first
the cache (``paths.cache_root()``: $ROBUST_UTILS_CACHE, else ~/.cache/robust_utils), then the
bundle (``paths.bundle_dir()``: $ROBUST_UTILS_CHECKPOINTS, else data/checkpoints/) that
``python -m robust_utils export-checkpoints`` writes, with a ``manifest.json``::

    {"format": 1, "profile": "classroom", "torch": "2.x", "created_by": "...",
     "checkpoints": {key: {"sha256": ..., "bytes": ..., "notebooks": [stem, ...]}}}

A key is ``<identity>-<placement>`` (``checkpoint_key``): the identity hashes everything but where
the training ran (model, initial weights, data, loss, optimiser, epochs, seed, ...); the placement is
the device type, and on CPU the thread count too ("cpu-t2": CPU weights differ in their low digits
between thread counts; CUDA weights do not depend on CPU threads). A checkpoint trained on another
device type (e.g. CUDA for a CPU run) is found by its identity (``other_device_candidates``) when
the user allows it (``any_device_allowed``: ``fit(any_device=True)``
or ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE=1). A bundled checkpoint is verified against its sha256
before it is loaded; every checkpoint is loaded with ``torch.load(weights_only=True)``
(``core.checkpoint_io``), so no code in a file ever runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator

import torch

from .checkpoint_io import load_checkpoint, save_checkpoint
from .io import json_default
from .paths import bundle_dir, cache_root

CACHE_FORMAT = 2  # bump when the meaning of a cached checkpoint changes (2: device-free identity + threads)
BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
ANY_DEVICE_VARIABLE = "ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE"
PARTIAL_SUFFIX = ".partial.pt"
_KEY = re.compile(r"([0-9a-f]{20})-([a-z][a-z0-9_]*?)(?:-t([1-9][0-9]*))?")
PLACEMENT = ("device", "threads")  # the config fields that make the key's suffix, not its identity


def how_to_get(profile: str | None = None) -> str:
    """The fix for a missing or bad bundle file: get the bundle again, or regenerate it with the
    profile it was made from (``profile``; "PROFILE" when unknown)."""
    p = profile or "PROFILE"
    return (f"copy the bundle again from your teacher, or run `python -m robust_utils run --profile {p}` then "
            f"`python -m robust_utils export-checkpoints --profile {p}`"
            + ("" if profile else " (PROFILE: the profile the bundle was made from)"))


HOW_TO_GET = how_to_get()  # the profile-neutral text, kept for callers of the old constant


class BundleError(ValueError):
    """A checkpoint bundle that cannot be exported or trusted; the message names the file and the fix."""


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the shapes, dtypes and bytes of tensors (identifies a dataset or a weight set).

    Args:
        tensors: any tensors (any device; 0-dim and empty ones too).
    Returns:
        The hex digest (64 characters).
    """
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def config_key(config: dict) -> str:
    """A short stable hash (20 hex characters) of a JSON-serialisable configuration (sorted keys)."""
    blob = json.dumps({"format": CACHE_FORMAT, **config}, sort_keys=True, default=json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_key(config: dict) -> str:
    """The key of a training configuration: ``<identity>-<placement>``.

    Args:
        config: JSON-serialisable, with "device" the device type it trains on ("cpu", "cuda", ...)
            and "threads" (torch.get_num_threads() while training; needed on CPU).
    Returns:
        ``config_key`` of the configuration without "device" and "threads" (the identity, 20 hex
        characters), then "-cpu-t<threads>" on CPU or "-<device type>" elsewhere; e.g.
        "3f0c...e1-cpu-t2", "3f0c...e1-cuda".
    Raises:
        ValueError: no "device", or not a lower-case device type; on CPU, "threads" not an int >= 1.
    """
    device, threads = config.get("device"), config.get("threads")
    if not isinstance(device, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", device):
        raise ValueError(f"config needs 'device', a device type such as 'cpu' or 'cuda', got {device!r}")
    identity = config_key({k: v for k, v in config.items() if k not in PLACEMENT})
    if device != "cpu":
        return f"{identity}-{device}"
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"a CPU configuration needs 'threads', an int >= 1, got {threads!r}")
    return f"{identity}-cpu-t{threads}"


def split_key(key: str) -> tuple[str, str, int | None] | None:
    """(identity, device type, CPU thread count or None) of a ``checkpoint_key``; None for any other string."""
    m = _KEY.fullmatch(key)
    if m is None or (m.group(2) == "cpu") != (m.group(3) is not None):
        return None
    return m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None


def checkpoint_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint with this key lives: <cache_dir or cache_root()>/<key>.pt."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / f"{key}.pt"


def partial_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``fit`` keeps the last complete epoch of an unfinished training: <cache>/<key>.partial.pt."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / f"{key}{PARTIAL_SUFFIX}"


def any_device_allowed(option: bool | None = None) -> bool:
    """Whether checkpoints trained on another device may be used: ``option`` if given, else the
    environment variable ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE ("1"/"true"/"yes" allow,
    unset/""/"0"/"false"/"no" do not; the runner's ``--checkpoints-from-any-device`` sets it).

    Raises:
        ValueError: ``option`` not a bool or None, or the variable holds another value (named).
    """
    if option is not None:
        if not isinstance(option, bool):
            raise ValueError(f"any_device must be True, False or None, got {option!r}")
        return option
    raw = os.environ.get(ANY_DEVICE_VARIABLE, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValueError(f"{ANY_DEVICE_VARIABLE}={os.environ[ANY_DEVICE_VARIABLE]!r} is not understood; "
                     f"set it to 1 (allow checkpoints trained on another device) or 0")


def other_device_candidates(key: str, cache_dir: str | os.PathLike | None = None) -> Iterator[tuple[str, Path, str]]:
    """Checkpoints of the same identity trained on another device type: (key, path, "cache" | "bundle").

    The cache's files first (sorted by name), then the bundle's (listed in its manifest, each
    sha256-verified by ``find_in_bundle`` when reached). A CPU checkpoint at another thread
    count is not "another device" and never offered. Nothing for a key not of ``checkpoint_key``'s form.

    Raises:
        BundleError: as ``find_in_bundle``, for a bundle file that is reached.
    """
    parts = split_key(key)
    if parts is None:
        return
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    if folder.is_dir():
        for path in sorted(folder.glob(f"{parts[0]}-*.pt")):
            other = path.name[:-len(".pt")]
            if (split_key(other) or ("", parts[1]))[1] != parts[1]:
                yield other, path, "cache"
    manifest = bundle_dir() / MANIFEST
    if manifest.is_file():
        for other in sorted(read_manifest(manifest)["checkpoints"]):
            found = split_key(other)
            if found is not None and found[0] == parts[0] and found[1] != parts[1]:
                path = find_in_bundle(other)
                if path is not None:
                    yield other, path, "bundle"

# --------------------------------------------------------------------------- the bundle


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    """A bundle's manifest.json, checked for its 'checkpoints' map of {key: {"sha256": ...}}.

    Raises:
        BundleError: unreadable or malformed (the message names the file and the fix).
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = manifest["checkpoints"]
        if not isinstance(entries, dict) or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str)
                                                    for e in entries.values()):
            raise ValueError("'checkpoints' must map each key to {'sha256': ..., ...}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"checkpoint bundle manifest {path} is unreadable or corrupt ({exc}); "
                          f"delete the folder {path.parent} or {HOW_TO_GET}") from exc
    return manifest


def find_in_bundle(key: str) -> Path | None:
    """The bundle's checkpoint file for ``key``, checksum verified, or None if the bundle lacks it.

    Args:
        key: a checkpoint key (``training.FitResult.key``, a hash of the training configuration).
    Returns:
        ``bundle_dir()/<key>.pt`` if ``bundle_dir()/manifest.json`` lists the key and the file's
        sha256 matches; None if there is no manifest or it does not list the key.
    Raises:
        BundleError: the manifest is unreadable, or the listed file is missing or its sha256
            differs (the message names the file, the expected sha256 and how to get it).
    """
    root = bundle_dir()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = read_manifest(manifest_path)
    entry = manifest["checkpoints"].get(key)
    if entry is None:
        return None
    fix = how_to_get(manifest.get("profile") if isinstance(manifest.get("profile"), str) else None)
    path = root / f"{key}.pt"
    expected = entry["sha256"]
    if not path.is_file():
        raise BundleError(f"checkpoint {path} is listed in {manifest_path} but missing "
                          f"(expected sha256 {expected}); {fix}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"checkpoint {path} is corrupt: sha256 {actual}, expected {expected} "
                          f"(from {manifest_path}); {fix}")
    return path


def bundle_profile() -> str | None:
    """The profile the bundle (``paths.bundle_dir()``) was exported from, per its manifest; None
    without a readable manifest or profile."""
    try:
        profile = read_manifest(bundle_dir() / MANIFEST).get("profile")
    except BundleError:
        return None
    return profile if isinstance(profile, str) else None


# --------------------------------------------------------------------------- the ledger


class CheckpointLedger:
    """The checkpoint keys a process loaded or saved, in order of first use: key -> description.

    A notebook runs in its own kernel, so the process's ledger (``record_use``,
    ``used_checkpoints``) is that notebook's list; ``app.results.Results.save`` writes it into
    results.json and ``python -m robust_utils export-checkpoints`` reads it back.
    """

    def __init__(self) -> None:
        self._used: dict[str, str] = {}

    def record(self, key: str, description: str) -> None:
        """Note that ``key`` was loaded or saved (the first description is kept)."""
        self._used.setdefault(key, description)

    def keys(self) -> list[str]:
        """The recorded keys, in order of first use."""
        return list(self._used)

    def descriptions(self) -> dict[str, str]:
        """{key: description}, in order of first use (e.g. "LeNet-5 AT (trained on cuda)")."""
        return dict(self._used)


_LEDGER = CheckpointLedger()  # this process's ledger; only record_use and used_checkpoints touch it


def record_use(key: str, description: str) -> None:
    """Record in this process's ledger that ``training.fit`` loaded or saved the checkpoint ``key``."""
    _LEDGER.record(key, description)


def forget_used_checkpoints() -> None:
    """Empty this process's ledger (a test, or a long-lived process that runs several notebooks' code)."""
    _LEDGER.__init__()


def used_checkpoints() -> list[str]:
    """The checkpoint keys ``training.fit`` loaded or saved in this process, in order of first use."""
    return _LEDGER.keys()


def used_checkpoint_descriptions() -> dict[str, str]:
    """{key: what ``training.fit`` used it for}, in order of first use; a checkpoint trained on another
    device says so ("... (trained on cuda)")."""
    return _LEDGER.descriptions()


__all__ = ["ANY_DEVICE_VARIABLE", "BUNDLE_FORMAT", "BundleError", "CACHE_FORMAT", "CheckpointLedger", "HOW_TO_GET",
           "MANIFEST", "PARTIAL_SUFFIX", "PLACEMENT", "any_device_allowed", "bundle_profile", "checkpoint_key", "checkpoint_path",
           "config_key", "find_in_bundle", "forget_used_checkpoints", "how_to_get", "load_checkpoint",
           "other_device_candidates", "partial_path", "read_manifest", "record_use", "save_checkpoint", "sha256_file",
           "split_key", "tensor_digest", "used_checkpoint_descriptions", "used_checkpoints"]
