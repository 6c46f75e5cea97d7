"""The classroom checkpoint bundle: the trained checkpoints of one profile, with sha256 checksums.

Infrastructure, not from a paper. A teacher runs a profile once (``python -m robust_utils run
--profile classroom``: ``train.fit`` trains and caches the models and each notebook's
results.json lists the checkpoint keys it used), then ``python -m robust_utils
export-checkpoints`` copies exactly those checkpoints from the cache into a bundle folder
(``paths.bundle_dir()``: $ROBUST_UTILS_CHECKPOINTS, else data/checkpoints/) with a
``manifest.json``::

    {"format": 1, "profile": "classroom", "torch": "2.x", "created_by": "...",
     "checkpoints": {key: {"sha256": ..., "bytes": ..., "notebooks": [stem, ...]}}}

On a cache miss ``fit`` asks ``find(key)``: a listed checkpoint is verified against its sha256
and loaded with ``weights_only=True``, so a student never retrains a model for an exercise.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from . import cache, paths
from .paths import bundle_dir
from .runner import list_profiles, read_results

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
CREATED_BY = "python -m robust_utils export-checkpoints"
HOW_TO_GET = ("copy the bundle again from your teacher, or run `python -m robust_utils run --profile classroom` "
              "then `python -m robust_utils export-checkpoints`")


class BundleError(ValueError):
    """A bundle that cannot be exported or trusted; the message names the file and the fix."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(path: Path) -> dict:
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


def find(key: str) -> Path | None:
    """The bundle's checkpoint file for ``key``, checksum verified, or None if the bundle lacks it.

    Args:
        key: a checkpoint key (``train.FitResult.key``, a hash of the training configuration).
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
    entry = _read_manifest(manifest_path)["checkpoints"].get(key)
    if entry is None:
        return None
    path = root / f"{key}.pt"
    expected = entry["sha256"]
    if not path.is_file():
        raise BundleError(f"checkpoint {path} is listed in {manifest_path} but missing "
                          f"(expected sha256 {expected}); {HOW_TO_GET}")
    actual = _sha256(path)
    if actual != expected:
        raise BundleError(f"checkpoint {path} is corrupt: sha256 {actual}, expected {expected} "
                          f"(from {manifest_path}); {HOW_TO_GET}")
    return path


def _used_keys(profile_dir: Path, profile: str) -> dict[str, list[str]]:
    """{key: [notebook stems]} over every <profile_dir>/*/results.json, in order of first use."""
    files = sorted(profile_dir.glob("*/results.json"))
    if not files:
        raise BundleError(f"no results.json under {profile_dir}/*/; run `python -m robust_utils run --profile "
                          f"{profile}` first (it trains and caches the models and records which it used)")
    used: dict[str, list[str]] = {}
    for path in files:
        try:
            data = read_results(path)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path} is not a valid results.json ({exc}); re-run that notebook") from exc
        keys = data.get("checkpoints")
        if not isinstance(keys, list):
            raise BundleError(f"{path} has no 'checkpoints' list: it predates checkpoint recording; re-run that "
                              f"notebook (`python -m robust_utils run --profile {profile} --notebooks "
                              f"{path.parent.name}`)")
        for key in keys:
            used.setdefault(str(key), []).append(path.parent.name)
    return used


def export_bundle(profile: str = "classroom", figures_dir: str | os.PathLike | None = None,
                  out: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy the checkpoints a profile's notebooks used from the cache into a bundle with a manifest.

    Infrastructure for teaching (``python -m robust_utils export-checkpoints``). Every missing
    checkpoint is reported before anything is written; files already in ``out`` with the right
    sha256 are left alone; each copy is written atomically and loaded once with
    ``weights_only=True`` before ``manifest.json`` is written (last, atomically).

    Args:
        profile: the profile whose notebooks' checkpoints to bundle (a name from ``runner.list_profiles``).
        figures_dir: the figures root holding <profile>/<notebook>/results.json (default: paths.figures_root()).
        out: the bundle folder (default: ``paths.bundle_dir()``).
        cache_dir: the checkpoint cache to copy from (default: paths.cache_root()).
    Returns:
        The path of the written manifest.json.
    Raises:
        BundleError: unknown profile (the message lists the valid ones); no results.json for the
            profile; a results.json without a 'checkpoints' list; a checkpoint missing from the
            cache (naming its key, notebook and cache path); a copied checkpoint that does not
            load with weights_only=True.
    """
    profiles = list_profiles()
    if profile not in profiles:
        raise BundleError(f"unknown profile {profile!r}; valid profiles: {', '.join(profiles) or '(none)'}")
    root = Path(figures_dir) if figures_dir is not None else paths.figures_root()
    used = _used_keys(root / profile, profile)

    sources = {key: cache.checkpoint_path(key, cache_dir) for key in used}
    missing = [f"{key} (notebook {', '.join(used[key])}): {src}" for key, src in sources.items() if not src.is_file()]
    if missing:
        raise BundleError(f"{len(missing)} checkpoint(s) missing from the cache, nothing exported: "
                          + "; ".join(missing) + f". Re-run `python -m robust_utils run --profile {profile}` "
                          "with the same cache (ROBUST_UTILS_CACHE), then export again")

    out_dir = Path(out) if out is not None else bundle_dir()
    entries: dict[str, dict] = {}
    for key, src in sources.items():
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        dest = out_dir / f"{key}.pt"
        if not (dest.is_file() and _sha256(dest) == digest):
            cache.atomic_write_bytes(dest, data)
        try:
            cache.load_checkpoint(dest)
        except Exception as exc:  # noqa: BLE001 - any failure to load means the bundle is unusable
            raise BundleError(f"checkpoint {src} (key {key}) does not load with weights_only=True: {exc}") from exc
        entries[key] = {"sha256": digest, "bytes": len(data), "notebooks": used[key]}

    manifest = cache.atomic_write_json(out_dir / MANIFEST, {
        "format": BUNDLE_FORMAT, "profile": profile, "torch": torch.__version__, "created_by": CREATED_BY,
        "checkpoints": entries,
    })
    total = sum(e["bytes"] for e in entries.values())
    print(f"exported {len(entries)} checkpoint(s) of profile {profile}, {total / 2**20:.1f} MiB, to {out_dir}")
    return manifest


__all__ = ["BundleError", "bundle_dir", "export_bundle", "find"]
