"""Checks made before any kernel starts: the data files the selected notebooks read, and that the
figures and cache folders can be written.

Infrastructure, not from a paper. Which datasets a notebook reads is declared in
``notebooks/params/schema.yaml`` (``datasets`` / ``optional_datasets``, see :mod:`.rules`); the
files of each dataset, their md5 and the command that fetches them come from
``core.data.required_files`` and ``core.data.check_files`` (defined in ``core.datafiles``). A missing required file stops the run
with one message listing every such file; a missing optional one (a column the notebook reports as
"not tested at this profile") is a note, and the run goes on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..core import datafiles as data  # core.data's file helpers, without importing torch
from .rules import Schema, datasets_needed


def _fetch_command(names: list[str]) -> str:
    fetchable = [n for n in ("mnist", "cifar10", "svhn") if n in names or n == "cifar10" and "cifar10_subset" in names]
    return f"python -m robust_utils download {' '.join(fetchable)}" if fetchable else ""


def data_problems(values: Mapping[str, Mapping[str, Any]], schema: Schema,
                  root: str | os.PathLike | None = None) -> tuple[list[str], list[str], list[str]]:
    """The data check of a run.

    Args:
        values: {stem: every parameter it runs with (defaults included)}.   schema: the declarations.
        root: the data root (default: core.data.data_root()).
    Returns:
        (problems, notes, missing): lines about the datasets a notebook needs and those it uses when
        present (each dataset a header line naming the notebooks that read it, then one line per
        missing or corrupt file: its path, expected md5 and the command that fetches it), and the
        names of the needed datasets with a problem.
    """
    needs: dict[str, list[str]] = {}
    wants: dict[str, list[str]] = {}
    for stem, vals in values.items():
        required, optional = datasets_needed(stem, vals, schema)
        for name in required:
            needs.setdefault(name, []).append(stem)
        for name in optional:
            wants.setdefault(name, []).append(stem)
    out: list[list[str]] = [[], [], []]
    for kind, table in ((0, needs), (1, wants)):
        for name, stems in table.items():
            try:
                lines = data.check_files(data.required_files(name, root))
            except ValueError:  # not a dataset: the parameter rules report the value
                continue
            if lines:
                verb = "needed by" if kind == 0 else "used when present by"
                out[kind] += [f"{name} ({verb} {', '.join(stems)}):"] + [f"  {line}" for line in lines]
                out[2] += [name] if kind == 0 else []
    return out[0], out[1], out[2]


def data_message(problems: list[str], missing: list[str], root: str | os.PathLike | None = None) -> str:
    """The one message that stops a run for missing or corrupt data.

    Args:
        problems: from :func:`data_problems`.   missing: the dataset names with a problem.
    """
    where = data.data_root(root).absolute()
    fetch = _fetch_command(missing)
    return ("missing or corrupt data files; no notebook was started:\n  " + "\n  ".join(problems)
            + f"\nThe data root is {where} (the root argument, else ${data.DATA_VARIABLE}, else the repository's data/)."
            + (f"\nFetch them with: {fetch}" if fetch else ""))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def writable_problem(path: str | os.PathLike, what: str, variable: str, create: bool = True) -> str | None:
    """Whether a folder can be written, without leaving anything behind but the folder itself.

    Args:
        path: the folder.   what: its role ("checkpoint cache").   variable: what moves it ("ROBUST_UTILS_CACHE").
        create: make the folder and write (then remove) a probe file in it; False only checks the
            nearest existing ancestor's permissions and creates nothing (dry runs).
    Returns:
        None when writable, else a line naming the folder, the reason and the variable that moves it.
    """
    path = Path(path).absolute()
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
        else:
            base = _nearest_existing(path)
            if not base.is_dir():
                raise NotADirectoryError(f"{base} is not a folder")
            if not os.access(base, os.W_OK | os.X_OK):
                raise PermissionError(f"no write permission on {base}")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) not in reason:
            reason = f"{reason}: {exc.filename}"
        return f"the {what} {path} cannot be written ({reason}); set {variable} to a writable folder"
    return None


def folder_problems(figures_root: str | os.PathLike, cache_root: str | os.PathLike, create: bool = True) -> list[str]:
    """:func:`writable_problem` for the figures root and the checkpoint cache."""
    checks = ((figures_root, "figures folder", "ROBUST_UTILS_FIGURES (or --figures-dir)"),
              (cache_root, "checkpoint cache", "ROBUST_UTILS_CACHE"))
    return [p for path, what, var in checks if (p := writable_problem(path, what, var, create)) is not None]


__all__ = ["data_message", "data_problems", "folder_problems", "writable_problem"]
