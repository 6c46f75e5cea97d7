"""Atomic file writes (temporary file in the same folder, fsync, os.replace) and JSON output.

Infrastructure, not from a paper: every result, figure and checkpoint of the companion is written
through these, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace).

    The file gets the permissions of an ordinary new file (0o666 minus the umask), not the
    owner-only 0o600 of the temporary file, so that figures and reports can be served or shared.

    Args:
        path: the destination; its folder is created if needed.   data: the bytes to write.
    Returns:
        The path written.
    Raises:
        OSError: the folder cannot be created or written (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for the values a notebook records: tensors, numpy scalars, paths.

    Raises:
        TypeError: any other type.
    """
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (UTF-8), atomically; returns the path.

    Raises:
        TypeError: a value ``json_default`` cannot serialise.   OSError: as ``atomic_write_bytes``.
    """
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n").encode())


__all__ = ["atomic_write_bytes", "atomic_write_json", "json_default"]
