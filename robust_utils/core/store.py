"""The checkpoint store: keys that hash a whole training configuration, the cache folder, the
teacher's checksummed bundle, and the ledger of the checkpoints this process used.

Infrastructure, not from a paper. ``training.fit`` asks the store for a key's checkpoint: first
the cache (``paths.cache_root()``: $ROBUST_UTILS_CACHE, else ~/.cache/robust_utils), then the
bundle (``paths.bundle_dir()``: $ROBUST_UTILS_CHECKPOINTS, else data/checkpoints/) that
``python -m robust_utils export-checkpoints`` writes, with a ``manifest.json``::

    {"format": 1, "profile": "classroom", "torch": "2.x", "created_by": "...",
     "checkpoints": {key: {"sha256": ..., "bytes": ..., "notebooks": [stem, ...]}}}

A bundled checkpoint is verified against its sha256 before it is loaded; every checkpoint is
loaded with ``torch.load(weights_only=True)``, so no code in a file ever runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import torch

from .io import atomic_write_bytes, json_default
from .paths import bundle_dir, cache_root

CACHE_FORMAT = 1  # bump when the meaning of a cached checkpoint changes
BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
HOW_TO_GET = ("copy the bundle again from your teacher, or run `python -m robust_utils run --profile classroom` "
              "then `python -m robust_utils export-checkpoints`")


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


def checkpoint_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint with this key lives: <cache_dir or cache_root()>/<key>.pt."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / f"{key}.pt"


def save_checkpoint(path: Path, payload: dict) -> Path:
    """torch.save ``payload`` (tensors and plain Python types only) atomically; returns the path."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs on load)."""
    return torch.load(path, map_location=map_location, weights_only=True)


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
    entry = read_manifest(manifest_path)["checkpoints"].get(key)
    if entry is None:
        return None
    path = root / f"{key}.pt"
    expected = entry["sha256"]
    if not path.is_file():
        raise BundleError(f"checkpoint {path} is listed in {manifest_path} but missing "
                          f"(expected sha256 {expected}); {HOW_TO_GET}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"checkpoint {path} is corrupt: sha256 {actual}, expected {expected} "
                          f"(from {manifest_path}); {HOW_TO_GET}")
    return path


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


__all__ = ["BundleError", "CheckpointLedger", "MANIFEST", "BUNDLE_FORMAT", "HOW_TO_GET", "checkpoint_path",
           "config_key", "find_in_bundle", "load_checkpoint", "forget_used_checkpoints", "read_manifest", "record_use", "save_checkpoint", "sha256_file",
           "tensor_digest", "used_checkpoints"]
