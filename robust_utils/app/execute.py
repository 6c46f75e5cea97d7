"""``python -m robust_utils run``: execute a profile's notebooks with papermill and write SUMMARY.md.

Everything is validated first (``app.profiles``); each notebook then executes into
``figures/<profile>/<stem>/<stem>.ipynb``, where it also writes its figures and results.json;
``figures/<profile>/SUMMARY.md`` gathers them (``app.summary``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..core import paths
from .profiles import DEFAULT_PROFILE, notebooks_folder, resolve_parameters
from .summary import error_line, write_summary


def _display(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def run(
    profile: str = DEFAULT_PROFILE,
    notebooks: Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    dry_run: bool = False,
    notebooks_dir: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
) -> int:
    """Validate, then execute a profile's notebooks with papermill and write SUMMARY.md.

    Each notebook runs (cwd: the notebooks folder, kernel python3) into
    ``<figures>/<profile>/<stem>/<stem>.ipynb``; the kernel sees ROBUST_UTILS_FIGURES set to the
    figures root, so the notebook's figures and results.json land in the same folder. A failing
    notebook is reported and the others still run.

    Args:
        profile, notebooks, overrides, notebooks_dir: as for :func:`resolve_parameters`.
        dry_run: only print each notebook's parameters and output folder; execute nothing.
        figures_dir: the figures root (default: paths.figures_root(), i.e. $ROBUST_UTILS_FIGURES
            or <repo>/figures).
        log: called with each progress line.
    Returns:
        The exit code: 0 when every notebook ran (or a dry run), 1 when any failed.
    Raises:
        RunnerError: from the validation, before anything runs.
    """
    resolved = resolve_parameters(profile, notebooks, overrides, notebooks_dir)
    nb_dir = notebooks_folder(notebooks_dir).absolute()
    root = Path(figures_dir if figures_dir is not None else paths.figures_root()).absolute()
    profile_dir = root / profile
    total = len(resolved)

    if dry_run:
        log(f"profile {profile}: {total} notebook(s), dry run (nothing is executed)")
        for i, (stem, values) in enumerate(resolved.items(), 1):
            log(f"[{i}/{total}] {stem} -> {_display(profile_dir / stem)}/")
            for name, value in values.items():
                log(f"      {name} = {value!r}")
            if not values:
                log("      (no parameters: the notebook's defaults)")
        return 0

    import papermill

    log(f"profile {profile}: running {total} notebook(s) -> {_display(profile_dir)}/")
    failures: dict[str, str] = {}
    saved_env = {k: os.environ.get(k) for k in paths.PATH_VARIABLES}
    os.environ["ROBUST_UTILS_FIGURES"] = str(root)  # the kernels inherit it
    paths.absolute_path_variables()  # kernels run in the notebooks folder: relative paths would move
    try:
        for i, (stem, values) in enumerate(resolved.items(), 1):
            out_dir = profile_dir / stem
            out_dir.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(nb_dir / f"{stem}.ipynb"), str(out_dir / f"{stem}.ipynb"),
                    parameters=values, cwd=str(nb_dir), kernel_name="python3",
                    progress_bar=False, log_output=False,
                )
            except Exception as exc:  # noqa: BLE001 - report it and run the next notebook
                failures[stem] = error_line(exc)
                log(f"[{i}/{total}] {stem} ... FAILED ({time.perf_counter() - start:.1f} s): {failures[stem]}"
                    f" (see {_display(out_dir / f'{stem}.ipynb')})")
            else:
                log(f"[{i}/{total}] {stem} ... ok ({time.perf_counter() - start:.1f} s) -> {_display(out_dir)}/")
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    summary = write_summary(profile_dir, failures)
    log(f"summary -> {_display(summary)}" + (f"; {len(failures)} of {total} failed" if failures else ""))
    return 1 if failures else 0


__all__ = ["run"]
