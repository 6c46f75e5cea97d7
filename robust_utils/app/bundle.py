"""The classroom checkpoint bundle: export the trained checkpoints of one profile, with sha256 checksums.

Infrastructure, not from a paper. A teacher runs a profile once (``python -m robust_utils run
--profile classroom``: ``training.fit`` trains and caches the models and each notebook's
results.json lists the checkpoint keys it used), then ``python -m robust_utils
export-checkpoints`` copies exactly those checkpoints from the cache into a bundle folder
(``paths.bundle_dir()``: $ROBUST_UTILS_CHECKPOINTS, else data/checkpoints/) with a
``manifest.json`` (format in ``core.store``). On a cache miss ``training.fit`` loads from it
(``core.store.find_in_bundle``: sha256 verified, ``weights_only=True``), so a student never
retrains a model for an exercise.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..core import io, paths, store
from ..core.paths import bundle_dir
from ..core.store import BUNDLE_FORMAT, MANIFEST, BundleError
from .profiles import list_profiles
from .summary import read_results

CREATED_BY = "python -m robust_utils export-checkpoints"


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
        profile: the profile whose notebooks' checkpoints to bundle (a name from ``profiles.list_profiles``).
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

    sources = {key: store.checkpoint_path(key, cache_dir) for key in used}
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
        if not (dest.is_file() and store.sha256_file(dest) == digest):
            io.atomic_write_bytes(dest, data)
        try:
            store.load_checkpoint(dest)
        except Exception as exc:  # noqa: BLE001 - any failure to load means the bundle is unusable
            raise BundleError(f"checkpoint {src} (key {key}) does not load with weights_only=True: {exc}") from exc
        entries[key] = {"sha256": digest, "bytes": len(data), "notebooks": used[key]}

    manifest = io.atomic_write_json(out_dir / MANIFEST, {
        "format": BUNDLE_FORMAT, "profile": profile, "torch": torch.__version__, "created_by": CREATED_BY,
        "checkpoints": entries,
    })
    total = sum(e["bytes"] for e in entries.values())
    print(f"exported {len(entries)} checkpoint(s) of profile {profile}, {total / 2**20:.1f} MiB, to {out_dir}")
    return manifest


__all__ = ["BundleError", "export_bundle"]
