"""Checkpoint files that are never lost and never trusted blindly.

Infrastructure, not from a paper. Four rules, used by ``training.fit`` and the checkpoint store:

- **Load safely, fail clearly.** ``load_checkpoint`` reads with ``torch.load(weights_only=True)``
  (no code in a file ever runs) and turns every failure into one ``CheckpointError`` that names
  the file and says whether it is *corrupt* (empty, truncated, random or foreign bytes, a
  checkpoint of another kind), *untrusted* (a complete file that holds Python objects other than
  tensors and plain values, which the safe loader refuses: it may have been built to run code)
  or *unreadable* (the operating system refused to read it). It never suggests loading with
  ``weights_only=False``.
- **Check before work.** ``ensure_writable`` proves a folder writable by creating (and removing) a
  file in it, so a model is never trained into a cache that cannot keep it.
- **Keep what was computed.** ``save_or_rescue`` writes a checkpoint atomically and, if its
  folder refuses it, into a rescue folder (``rescue_dirs``), with a warning that says where.
- **Move aside, do not delete.** ``move_aside`` renames a bad cache entry to
  ``<name>.rejected-<time>-<pid>`` so that it is never looked up again and can still be inspected.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import torch

from .io import atomic_write_bytes

CACHE_VARIABLE = "ROBUST_UTILS_CACHE"
RESCUE_FOLDER = "robust_utils-rescued"
KINDS = ("corrupt", "untrusted", "unreadable")
_SAFE_GLOBALS = ("torch", "collections.OrderedDict", "builtins")  # what fit's own checkpoints name


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file, the kind and the fix.

    Attributes:
        path: the file.   kind: "corrupt", "untrusted" or "unreadable" (``KINDS``).
    """

    def __init__(self, message: str, path: str | os.PathLike, kind: str) -> None:
        super().__init__(message)
        self.path, self.kind = Path(path), kind


class CacheNotWritableError(OSError):
    """A checkpoint folder that cannot be written; raised before any training starts.

    Attributes:
        folder: the folder that refused a test file.
    """

    def __init__(self, message: str, folder: str | os.PathLike) -> None:
        super().__init__(message)
        self.folder = Path(folder)

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointWarning(UserWarning):
    """A checkpoint was moved aside, rescued to another folder, or could not be saved."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """``torch.save`` a payload (tensors and plain Python values only) atomically (``core.io``).

    Returns:
        The path written.
    Raises:
        OSError: the folder cannot be created or written (no partial file is left behind).
    """
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu",
                    required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint with ``weights_only=True``; every failure is one ``CheckpointError``.

    Args:
        path: the file.   map_location: where its tensors go (``torch.load``).
        required: keys the checkpoint's top-level dict must hold (e.g. ("state_dict", "history")).
    Returns:
        The checkpoint dict.
    Raises:
        CheckpointError: kind "corrupt" (empty, truncated, not a checkpoint, not a dict, a required
            key missing), "untrusted" (a complete file the safe loader refuses; it was not loaded
            and nothing in it ran) or "unreadable" (an operating-system error); the message names
            the file and never advises ``weights_only=False``.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notice about foreign pickle protocols
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear error
        message, kind = describe_failure(path, exc)
        raise CheckpointError(message, path, kind) from None  # torch's own text and advice stay out
    missing = [k for k in required if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is corrupt: it loads, but it is not a checkpoint of this kind "
                              f"(no {', '.join(repr(k) for k in missing)})", path, "corrupt")
    return ckpt


def describe_failure(path: Path, exc: BaseException) -> tuple[str, str]:
    """Why ``torch.load(path, weights_only=True)`` failed with ``exc``: (message, kind).

    The file is read again and examined without unpickling anything: a complete zip archive or
    pickle stream that the safe loader refused is "untrusted"; anything incomplete or foreign is
    "corrupt"; a file the operating system will not read is "unreadable".
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        return (f"checkpoint {path} is unreadable ({err.strerror or err}); check that it exists and that this "
                f"user may read it", "unreadable")
    stream = pickle_stream(data)
    names = pickle_globals(stream) if stream is not None else None
    if isinstance(exc, pickle.UnpicklingError) and names is not None:
        foreign = sorted({n for n in names if not n.startswith(_SAFE_GLOBALS)})
        what = f"Python objects ({', '.join(foreign[:5])})" if foreign else "Python objects"
        return (f"checkpoint {path} is untrusted: it is a complete file, but it holds {what} besides tensors "
                f"and plain values, which the safe loader (weights_only=True) refuses because unpickling them "
                f"could run code the file carries; it was not loaded and nothing in it ran", "untrusted")
    if not data:
        reason = "empty (0 bytes)"
    elif data[:4] == b"PK\x03\x04":
        reason = "truncated or damaged (a zip archive without a readable end)"
    else:
        reason = "not a PyTorch checkpoint (random or foreign bytes)"
    return f"checkpoint {path} is corrupt: {reason}; the loader said: {short_reason(exc)}", "corrupt"


def short_reason(exc: BaseException) -> str:
    """The first sentence of an exception's message, at most 160 characters, never torch's
    ``weights_only`` advice (that sentence is replaced by a neutral one)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].split(". ")[0] if lines else ""
    if "weights_only" in text or "Weights only" in text:
        text = "the safe loader refused its contents"
    return f"{type(exc).__name__}: {text[:160]}"


def pickle_stream(data: bytes) -> bytes | None:
    """The pickle stream of a checkpoint's bytes: data.pkl of a complete zip archive (torch's
    format), the bytes themselves if they are not a zip archive, None for a damaged archive."""
    if data[:4] != b"PK\x03\x04":
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if z.testzip() is not None:
                return None
            pkl = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            return z.read(pkl[0]) if pkl else None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):
        return None


def pickle_globals(stream: bytes) -> list[str] | None:
    """The "module.name" globals a pickle stream names, read with ``pickletools`` (nothing is
    unpickled or run); None if the bytes are not one complete pickle stream."""
    names: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(stream):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                names.append(".".join(strings[-2:]) or "?")
            elif isinstance(arg, str):
                strings.append(arg)
            if op.name == "STOP":
                return names
    except Exception:  # noqa: BLE001 - any parse failure means "not a complete pickle"
        return None
    return None


def ensure_writable(folder: str | os.PathLike, fix: str | None = None) -> Path:
    """Create ``folder`` if needed and prove it writable by creating and removing a file in it.

    ``os.access`` is not enough: it says yes to root on a read-only mount and ignores ACLs.

    Args:
        folder: the folder.   fix: what the user should do (default: make it writable or point
            ROBUST_UTILS_CACHE at a writable folder).
    Returns:
        The folder.
    Raises:
        CacheNotWritableError: the folder cannot be created or written (the message names it,
            the operating system's reason and the fix).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        fix = fix or f"make it writable, or set {CACHE_VARIABLE} to a writable folder"
        raise CacheNotWritableError(f"the checkpoint folder {folder} is not writable ({exc.strerror or exc}); "
                                    f"nothing was trained: {fix}", folder) from None
    return folder


def rescue_dirs() -> list[Path]:
    """Where ``save_or_rescue`` puts a checkpoint its folder refused, in order of preference:
    <temp folder>/robust_utils-rescued (``tempfile.gettempdir()``: $TMPDIR, else /tmp), then
    <current folder>/robust_utils-rescued."""
    return [Path(tempfile.gettempdir()) / RESCUE_FOLDER, Path.cwd() / RESCUE_FOLDER]


def save_or_rescue(path: str | os.PathLike, payload: dict, stacklevel: int = 1) -> Path | None:
    """Save a checkpoint atomically to ``path``; if that fails, to the first rescue folder that
    accepts it (``rescue_dirs``), with a ``CheckpointWarning`` naming both places.

    Args:
        path: the destination.   payload: as ``save_checkpoint``.
        stacklevel: where the warnings point: 1, the line that called this; 2, its caller; ...
    Returns:
        The path written; None if every place refused it (then a warning says so; the caller
        still holds the trained model in memory).
    """
    path = Path(path)
    try:
        return save_checkpoint(path, payload)
    except OSError as exc:
        first = f"{exc.strerror or exc}"
    for folder in rescue_dirs():
        target = folder / path.name
        try:
            save_checkpoint(target, payload)
        except OSError:
            continue
        warnings.warn(f"could not save the checkpoint to {path} ({first}); it was saved to {target} instead, so "
                      f"the training is not lost. Make the cache writable (or set {CACHE_VARIABLE}), then move the "
                      f"file there: mv {target} {path}", CheckpointWarning, stacklevel=stacklevel + 1)
        return target
    warnings.warn(f"could not save the checkpoint to {path} ({first}) nor to any rescue folder "
                  f"({', '.join(map(str, rescue_dirs()))}); the trained model exists only in this process",
                  CheckpointWarning, stacklevel=stacklevel + 1)
    return None


def move_aside(path: str | os.PathLike) -> Path:
    """Rename a bad checkpoint to ``<name>.rejected-<UTC time>-<pid>`` in its folder, so that no lookup
    finds it again and it can still be inspected.

    Returns:
        The new path.
    Raises:
        OSError: the folder does not allow the rename.
    """
    path = Path(path)
    target = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}")
    os.replace(path, target)
    return target


__all__ = ["CACHE_VARIABLE", "KINDS", "RESCUE_FOLDER", "CacheNotWritableError", "CheckpointError",
           "CheckpointWarning", "describe_failure", "ensure_writable", "load_checkpoint", "move_aside",
           "pickle_globals", "pickle_stream", "rescue_dirs", "save_checkpoint", "save_or_rescue", "short_reason"]
