"""What a run says while it runs, and the state it leaves: section lines, timings, status.json.

Infrastructure, not from a paper.

- ``figures/<profile>/<stem>/status.json`` = {"state": "running" | "ok" | "failed" | "interrupted",
  "started": ISO time, "finished": ISO time or null, "elapsed_s": float or null, "error": str or null},
  written atomically at the start and at the end of each notebook's run (SUMMARY.md and the HTML
  report read it). A "running" state that no run is updating means the run was killed.
- ``figures/<profile>/timings.json`` = {stem: {"elapsed_s", "finished", "parameters"}}: the last
  successful run of each notebook at the profile, for the estimate shown while it runs.
- :class:`SectionEngine`, a papermill engine (papermill's own nbclient engine plus a hook at each
  cell's start) through which the runner prints one line per Markdown heading with the elapsed time.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping


STATES = ("running", "ok", "failed", "interrupted")
STATUS_FILE = "status.json"
TIMINGS_FILE = "timings.json"
ENGINE_NAME = "robust_utils"


def _write_json(path: Path, obj: Any) -> Path:
    from ..core.io import atomic_write_json  # imports torch: only when writing, so checks stay fast

    return atomic_write_json(path, obj)


def now_iso() -> str:
    """The current local time, ISO 8601 with the UTC offset, to the second."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_status(out_dir: str | os.PathLike, state: str, started: str, finished: str | None = None,
                 elapsed_s: float | None = None, error: str | None = None) -> Path:
    """Write ``<out_dir>/status.json`` atomically.

    Raises:
        ValueError: a state not in STATES.   OSError: the folder cannot be written.
    """
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; valid: {', '.join(STATES)}")
    return _write_json(Path(out_dir) / STATUS_FILE, {
        "state": state, "started": started, "finished": finished,
        "elapsed_s": None if elapsed_s is None else round(float(elapsed_s), 1), "error": error})


def read_status(out_dir: str | os.PathLike) -> dict | None:
    """``<out_dir>/status.json`` as a dict, or None when it is absent or unreadable (a notebook run
    some other way, e.g. by nbval or by hand)."""
    try:
        data = json.loads((Path(out_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("state") in STATES else None


def read_timings(profile_dir: str | os.PathLike) -> dict:
    """``<profile_dir>/timings.json``: {stem: {"elapsed_s", "finished", "parameters"}}; {} when absent or unreadable."""
    try:
        data = json.loads((Path(profile_dir) / TIMINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_timing(profile_dir: str | os.PathLike, stem: str, elapsed_s: float, parameters: Mapping[str, Any]) -> None:
    """Record a successful run's wall time (and parameters) in ``<profile_dir>/timings.json``, atomically."""
    timings = read_timings(profile_dir)
    timings[stem] = {"elapsed_s": round(float(elapsed_s), 1), "finished": now_iso(),
                     "parameters": json.loads(json.dumps(dict(parameters), default=str))}
    _write_json(Path(profile_dir) / TIMINGS_FILE, timings)


def estimate(timings: Mapping[str, Any], stem: str, parameters: Mapping[str, Any]) -> tuple[float | None, str]:
    """(seconds, words) from the last successful run: words say whether it ran with other parameters."""
    entry = timings.get(stem)
    if not isinstance(entry, dict) or not isinstance(entry.get("elapsed_s"), (int, float)):
        return None, "no earlier run to estimate from"
    same = entry.get("parameters") == json.loads(json.dumps(dict(parameters), default=str))
    words = f"last run {clock(entry['elapsed_s'])}" + ("" if same else " with other parameters")
    return float(entry["elapsed_s"]), words


def clock(seconds: float) -> str:
    """83.2 -> '1:23'; 3725 -> '1:02:05'."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def heading(cell: Mapping[str, Any]) -> tuple[int, str] | None:
    """(level, text) of a Markdown cell's first heading line ('## 3. Table 1' -> (2, '3. Table 1')), else None."""
    if cell.get("cell_type") != "markdown":
        return None
    for line in str(cell.get("source", "")).splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            level = len(stripped) - len(stripped.lstrip("#"))
            text = stripped[level:].strip()
            if 1 <= level <= 6 and text:
                return level, text
    return None


class SectionReporter:
    """Called at each cell's start: prints one line per Markdown heading (levels 2-3; level 1 is the
    title) with the time since the notebook started and the estimate.

    Args:
        log: called with each line.   expected_s: the estimate in seconds, or None.
    """

    def __init__(self, log: Callable[[str], Any], expected_s: float | None = None):
        self.log, self.expected_s, self.start = log, expected_s, time.perf_counter()

    def __call__(self, cell: Mapping[str, Any], index: int | None = None) -> None:
        found = heading(cell)
        if found is None or found[0] == 1 or found[0] > 3:
            return
        level, text = found
        elapsed = clock(time.perf_counter() - self.start)
        budget = f" / ~{clock(self.expected_s)}" if self.expected_s else ""
        self.log(f"      {elapsed}{budget}  {'  ' * (level - 2)}{text}")


def register_engine() -> str:
    """Register :class:`SectionEngine` with papermill (again: registering replaces); returns its engine name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class SectionEngine(NBClientEngine):
        """papermill's nbclient engine, calling ``on_cell_start(cell, index)`` before each cell."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, on_cell_start=None, **kwargs):
            if on_cell_start is not None:
                original = nb_man.cell_start

                def cell_start(cell, cell_index=None, **kw):
                    on_cell_start(cell, cell_index)
                    return original(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE_NAME, SectionEngine)
    return ENGINE_NAME


__all__ = ["ENGINE_NAME", "STATES", "STATUS_FILE", "SectionReporter", "TIMINGS_FILE", "clock", "estimate", "heading",
           "now_iso", "read_status", "read_timings", "record_timing", "register_engine", "write_status"]
