"""Where things live: the project root, the figures folder, the checkpoint cache and bundle."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (the folder holding robust_utils/, notebooks/, data/, figures/)."""
    return Path(__file__).resolve().parents[2]


def figures_root() -> Path:
    """Root of regenerated outputs: $ROBUST_UTILS_FIGURES, else <repo>/figures."""
    env = os.environ.get("ROBUST_UTILS_FIGURES")
    return Path(env) if env else project_root() / "figures"


def cache_root() -> Path:
    """Checkpoint cache: $ROBUST_UTILS_CACHE, else ~/.cache/robust_utils."""
    env = os.environ.get("ROBUST_UTILS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "robust_utils"


def notebooks_dir() -> Path:
    """The folder of the companion's notebooks (and their params/)."""
    return project_root() / "notebooks"


def bundle_dir() -> Path:
    """The checkpoint bundle (``python -m robust_utils export-checkpoints``): $ROBUST_UTILS_CHECKPOINTS,
    else <repo>/data/checkpoints."""
    env = os.environ.get("ROBUST_UTILS_CHECKPOINTS")
    return Path(env) if env else project_root() / "data" / "checkpoints"


PATH_VARIABLES = ("ROBUST_UTILS_FIGURES", "ROBUST_UTILS_DATA", "ROBUST_UTILS_CACHE", "ROBUST_UTILS_CHECKPOINTS")


def absolute_path_variables() -> None:
    """Make the companion's path variables absolute (relative to the current directory).

    Kernels started by papermill or nbval run in the notebooks folder, where a relative
    ROBUST_UTILS_DATA such as ``../my_data`` would point somewhere else.
    """
    for k in PATH_VARIABLES:
        if os.environ.get(k):
            os.environ[k] = str(Path(os.environ[k]).absolute())
