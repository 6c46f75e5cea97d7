"""Atomic writes and the checkpoint cache keyed by a hash of the full training configuration."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .paths import cache_root

CACHE_FORMAT = 1  # bump when the meaning of a cached checkpoint changes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace).

    The file gets the permissions of an ordinary new file (0o666 minus the umask), not the
    owner-only 0o600 of the temporary file, so that figures and reports can be served or shared.
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


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the shapes, dtypes and bytes of tensors (identifies a dataset or a weight set)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-serialisable configuration (sorted keys)."""
    blob = json.dumps({"format": CACHE_FORMAT, **config}, sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint with this key lives: <cache_dir or cache_root()>/<key>.pt."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / f"{key}.pt"


def save_checkpoint(path: Path, payload: dict) -> Path:
    """torch.save ``payload`` (tensors and plain Python types only) atomically."""
    import io

    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs on load)."""
    return torch.load(path, map_location=map_location, weights_only=True)
