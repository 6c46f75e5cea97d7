"""``python -m robust_utils run``: check everything, then execute a profile's notebooks with papermill.

Infrastructure, not from a paper. Before any kernel starts: the profile, notebooks, parameter
names, types and rules (``app.profiles``, ``app.rules``), the data files the selected notebooks
read and the figures and cache folders (``app.preflight``). Then each notebook, in numbered order,
executes into ``figures/<profile>/<stem>/<stem>.ipynb``, where it also writes its figures and
results.json, and its ``status.json`` records the run's state (``app.progress``). A notebook's
previous outputs are moved to ``figures/<profile>/.previous/<stem>/`` when its run starts, and
removed only once the new run has succeeded, so a partial or failed run never sits beside older
results and nothing finished is lost. Ctrl-C (or SIGTERM) stops the running notebook's kernel,
marks it interrupted, rewrites SUMMARY.md and prints the command that resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..core import paths
from .inputs import RunnerError, loads
from .preflight import data_message, data_problems, folder_problems
from .profiles import DEFAULT_PROFILE, notebooks_folder, parse_overrides, resolve_parameters, with_defaults
from .progress import (SectionReporter, clock, estimate, now_iso, read_status, read_timings, record_timing,
                       register_engine, write_status)
from .rules import load_schema
from .summary import PREVIOUS_DIR, error_line, write_summary

INTERRUPTED_EXIT = 130  # the shell's convention for a process stopped by SIGINT


def _display(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def _yaml_text(value: Any) -> str:
    """A value as ``-p NAME=VALUE`` text that reads back as the same value."""
    if isinstance(value, str):
        try:
            if loads(value, "-p") == value:
                return value
        except RunnerError:
            pass
    return json.dumps(value)


def resume_command(profile: str, stems: Iterable[str], overrides: Mapping[str, Any] | None = None,
                   parameter_files: Iterable[str | os.PathLike] = (), notebooks_dir: Any = None,
                   figures_dir: Any = None) -> str:
    """The shell command that runs ``stems`` again with the same profile, ``-f`` files and ``-p`` values."""
    argv = ["python", "-m", "robust_utils", "run", "--profile", profile, "--notebooks", *stems]
    for path in parameter_files:
        argv += ["-f", str(path)]
    for name, value in (overrides or {}).items():
        argv += ["-p", f"{name}={_yaml_text(value)}"]
    argv += ["--notebooks-dir", str(notebooks_dir)] if notebooks_dir is not None else []
    argv += ["--figures-dir", str(figures_dir)] if figures_dir is not None else []
    return shlex.join(argv)


def _preflight(resolved: Mapping[str, dict], nb_dir: Path, root: Path, dry_run: bool, check_data: bool,
               log: Callable[[str], Any]) -> None:
    """Data and folders, before any kernel starts. Raises RunnerError with every problem at once."""
    errors = folder_problems(root, paths.cache_root(), create=not dry_run)
    if check_data:
        full = {stem: with_defaults(stem, values, nb_dir) for stem, values in resolved.items()}
        problems, notes, missing = data_problems(full, load_schema(nb_dir))
        if problems:
            errors.append(data_message(problems, missing))
        elif notes and not errors:
            log("note: optional data missing (those parts of the notebooks say 'not tested at this profile'):")
            for line in notes:
                log(f"  {line}")
    if errors:
        raise RunnerError("\n".join(errors))


def _cancel_pending() -> None:
    """Cancel what an interrupt left running on the event loop papermill used (the cell's execution),
    so no "Task exception was never retrieved" traceback is printed when the kernel goes."""
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    with contextlib.suppress(Exception):
        loop = ensure_event_loop()
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks and not loop.is_running():
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _stop_kernel(km: Any) -> None:
    """Shut the kernel down now (it runs in its own session, so Ctrl-C never reached it)."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    with contextlib.suppress(Exception):  # shutdown failed: kill the process itself
        if km.has_kernel:
            km.provisioner.process.kill()


@contextlib.contextmanager
def _quiet_papermill() -> Any:
    """Keep papermill's and nbformat's warnings about the input (already checked) off the terminal:
    nbformat's MissingIDFieldWarning, papermill's "Unable to parse line" (its parameter parser)."""
    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Cell is missing an id field")
            yield
    finally:
        log.setLevel(level)


def _execute_one(source: Path, target: Path, values: dict, nb_dir: Path, on_cell: Callable, show_output: bool) -> None:
    """Execute one notebook with papermill: IPC kernel transport on POSIX (no unencrypted TCP, no warning),
    the kernel's stderr (progress bars, warnings) streamed to ours, one line per heading via ``on_cell``."""
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    base = None if len(tempfile.gettempdir()) < 60 else "/tmp"  # a unix socket path has at most ~107 bytes
    with tempfile.TemporaryDirectory(prefix="robust-kernel-", dir=base) as tmp, _quiet_papermill():
        transport = "ipc" if os.name == "posix" else "tcp"
        km = AsyncKernelManager(kernel_name="python3", transport=transport, connection_file=os.path.join(tmp, "kernel.json"))
        try:
            papermill.execute_notebook(
                str(source), str(target), parameters=values, cwd=str(nb_dir), kernel_name="python3",
                engine_name=register_engine(), progress_bar=False, log_output=False, km=km, on_cell_start=on_cell,
                stdout_file=sys.stdout if show_output else None, stderr_file=sys.stderr)
        except BaseException:
            _cancel_pending()
            raise
        finally:
            _stop_kernel(km)


def _move_aside(out_dir: Path, profile_dir: Path) -> None:
    """Before a notebook runs: its finished outputs go to .previous/<stem>/; a partial run's are dropped."""
    if not out_dir.exists():
        return
    state = (read_status(out_dir) or {}).get("state", "ok")
    previous = profile_dir / PREVIOUS_DIR / out_dir.name
    if state == "ok":
        shutil.rmtree(previous, ignore_errors=True)
        previous.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out_dir, previous)
    else:  # failed / interrupted / running: the finished run, if any, is already in .previous/
        shutil.rmtree(out_dir)


@contextlib.contextmanager
def _signals() -> Any:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C while the run lasts (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _no_interrupts() -> Any:
    """Ignore a second Ctrl-C while the run records how it stopped (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _dry_run(profile: str, resolved: Mapping[str, dict], profile_dir: Path, log: Callable[[str], Any]) -> int:
    total = len(resolved)
    log(f"profile {profile}: {total} notebook(s), dry run (nothing is executed)")
    for i, (stem, values) in enumerate(resolved.items(), 1):
        log(f"[{i}/{total}] {stem} -> {_display(profile_dir / stem)}/")
        for name, value in values.items():
            log(f"      {name} = {value!r}")
        if not values:
            log("      (no parameters: the notebook's defaults)")
    return 0


class _Run:
    """One run's bookkeeping: the notebooks left, failures, SUMMARY.md and the resume command."""

    def __init__(self, profile: str, resolved: Mapping[str, dict], profile_dir: Path, resume: Callable):
        self.profile, self.resolved, self.profile_dir, self.resume = profile, resolved, profile_dir, resume
        self.failures: dict[str, str] = {}
        self.info: dict[str, Any] = {"state": "running", "started": now_iso(), "pending": list(resolved)}
        self.timings = read_timings(profile_dir)

    def summary(self) -> Path:
        return write_summary(self.profile_dir, self.failures, self.info)

    def announce(self, log: Callable[[str], Any]) -> None:
        known = [estimate(self.timings, s, v)[0] for s, v in self.resolved.items()]
        total = sum(t for t in known if t is not None)
        guess = (f"; about {clock(total)} from the last runs" + ("" if None not in known else " of those known")
                 if total else "")
        log(f"profile {self.profile}: running {len(self.resolved)} notebook(s) -> {_display(self.profile_dir)}/"
            f"{guess}. Ctrl-C stops safely.")

    def interrupted(self, stem: str, out_dir: Path, started: str, elapsed: float, log: Callable[[str], Any]) -> int:
        with _no_interrupts():
            print(file=sys.stderr, flush=True)  # end a progress bar the interrupt left mid-line
            write_status(out_dir, "interrupted", started, now_iso(), elapsed, "interrupted by the user")
            left = [stem, *self.info["pending"]]
            self.info.update(state="interrupted", resume=self.resume(left))
            summary = self.summary()
            log(f"interrupted: {stem} stopped after {clock(elapsed)}; its partial outputs are marked interrupted "
                f"in {_display(out_dir)}/" + (f" (the previous run's are in {_display(self.profile_dir / PREVIOUS_DIR / stem)}/)"
                                                if (self.profile_dir / PREVIOUS_DIR / stem).is_dir() else ""))
            log(f"summary -> {_display(summary)} (marked interrupted)")
            log(f"to resume (models already trained load from the cache): {self.info['resume']}")
        return INTERRUPTED_EXIT


def _run_notebook(job: _Run, i: int, stem: str, nb_dir: Path, show_output: bool, log: Callable[[str], Any]) -> int | None:
    """Run one notebook; returns the exit code when the run must stop (interrupted), else None."""
    values, total = job.resolved[stem], len(job.resolved)
    out_dir = job.profile_dir / stem
    job.info["pending"].remove(stem)
    started, start = now_iso(), time.perf_counter()
    expected, words = estimate(job.timings, stem, values)
    try:
        _move_aside(out_dir, job.profile_dir)
        out_dir.mkdir(parents=True)
        write_status(out_dir, "running", started)
        log(f"[{i}/{total}] {stem}: started {started[11:19]} ({words})")
        _execute_one(nb_dir / f"{stem}.ipynb", out_dir / f"{stem}.ipynb", values, nb_dir,
                     SectionReporter(log, expected), show_output)
    except KeyboardInterrupt:
        return job.interrupted(stem, out_dir, started, time.perf_counter() - start, log)
    except Exception as exc:  # noqa: BLE001 - report it and run the next notebook
        elapsed = time.perf_counter() - start
        job.failures[stem] = error_line(exc)
        write_status(out_dir, "failed", started, now_iso(), elapsed, job.failures[stem])
        log(f"[{i}/{total}] {stem} ... FAILED ({elapsed:.1f} s): {job.failures[stem]}"
            f" (see {_display(out_dir / f'{stem}.ipynb')})")
    else:
        elapsed = time.perf_counter() - start
        write_status(out_dir, "ok", started, now_iso(), elapsed)
        record_timing(job.profile_dir, stem, elapsed, values)
        shutil.rmtree(job.profile_dir / PREVIOUS_DIR / stem, ignore_errors=True)
        log(f"[{i}/{total}] {stem} ... ok ({elapsed:.1f} s) -> {_display(out_dir)}/")
    return None


def run(
    profile: str = DEFAULT_PROFILE,
    notebooks: Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    dry_run: bool = False,
    notebooks_dir: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    parameter_files: Iterable[str | os.PathLike] = (),
    check_data: bool = True,
    show_output: bool = False,
) -> int:
    """Check everything, then execute a profile's notebooks with papermill and write SUMMARY.md.

    Each notebook runs (cwd: the notebooks folder, kernel python3 over IPC) into
    ``<figures>/<profile>/<stem>/<stem>.ipynb``; the kernel sees ROBUST_UTILS_FIGURES set to the
    figures root, so the notebook's figures and results.json land in the same folder. The
    terminal shows one line per section heading with the elapsed time and the estimate from the
    last run, and the kernel's stderr (training and attack progress bars). A failing notebook is
    reported and the others still run; Ctrl-C or SIGTERM stops the run (see the module docstring).

    Args:
        profile, notebooks, overrides, notebooks_dir, parameter_files: as for :func:`resolve_parameters`.
        dry_run: check everything (folders without creating them) and print each notebook's
            parameters and output folder; execute nothing.
        figures_dir: the figures root (default: paths.figures_root(), i.e. $ROBUST_UTILS_FIGURES
            or <repo>/figures).
        log: called with each progress line.
        check_data: check the data files the notebooks read (off only for tests of other machines' profiles).
        show_output: also stream the notebooks' stdout (printed tables) to ours.
    Returns:
        The exit code: 0 when every notebook ran (or a dry run), 1 when any failed, 130 when interrupted.
    Raises:
        RunnerError: from the checks, before any kernel starts (the command line exits 2).
    """
    resolved = resolve_parameters(profile, notebooks, overrides, notebooks_dir, parameter_files)
    nb_dir = notebooks_folder(notebooks_dir).absolute()
    root = Path(figures_dir if figures_dir is not None else paths.figures_root()).absolute()
    profile_dir = root / profile
    _preflight(resolved, nb_dir, root, dry_run, check_data, log)
    if dry_run:
        return _dry_run(profile, resolved, profile_dir, log)

    parsed = parse_overrides(overrides)
    job = _Run(profile, resolved, profile_dir, lambda left: resume_command(
        profile, left, parsed, parameter_files, notebooks_dir, figures_dir))
    job.announce(log)
    saved_env = {k: os.environ.get(k) for k in paths.PATH_VARIABLES}
    os.environ["ROBUST_UTILS_FIGURES"] = str(root)  # the kernels inherit it
    paths.absolute_path_variables()  # kernels run in the notebooks folder: relative paths would move
    try:
        job.summary()  # marks the run in progress (a killed run leaves it so)
        with _signals():
            for i, stem in enumerate(resolved, 1):
                code = _run_notebook(job, i, stem, nb_dir, show_output, log)
                if code is not None:
                    return code
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    job.info["state"] = "finished"
    summary = job.summary()
    total = len(resolved)
    log(f"summary -> {_display(summary)}" + (f"; {len(job.failures)} of {total} failed" if job.failures else ""))
    return 1 if job.failures else 0


__all__ = ["INTERRUPTED_EXIT", "resume_command", "run"]
