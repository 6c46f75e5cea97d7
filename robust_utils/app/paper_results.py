"""The tracked paper-profile outputs (``results/paper/<notebook>/``), shown beside a run's numbers.

The paper profile runs on a GPU in chunks (results/paper/CHUNKS.md) and cannot be regenerated
cheaply, so its outputs are tracked in git: per notebook a ``results.json`` and a
``provenance.json`` (benchmarks/gpu_paper_run.sh writes "device", "started_utc", "wall_seconds",
"commit"). SUMMARY.md and the HTML report of
another profile show them beside that profile's numbers: a column in every table whose cells match ("ours (paper profile)"), and a table of where each paper-profile run came from. A notebook without a
finished paper run is listed as such; nothing is made up. Infrastructure, not a paper's method.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core import paths

PAPER_RESULTS_VARIABLE = "ROBUST_UTILS_PAPER_RESULTS"
PAPER_COLUMN = "ours (paper profile)"


def paper_results_dir() -> Path:
    """$ROBUST_UTILS_PAPER_RESULTS, else <repo>/results/paper."""
    env = os.environ.get(PAPER_RESULTS_VARIABLE)
    return Path(env) if env else paths.project_root() / "results" / "paper"


@dataclass
class PaperRun:
    """One notebook's tracked paper-profile run.

    Attributes:
        stem: the notebook's name, e.g. "05_sdr_learnable".
        results: its results.json (None when it cannot be read; ``error`` says why).
        provenance: its provenance.json ({} when absent).
        error: why results.json could not be read, else None.
    """

    stem: str
    results: dict | None
    provenance: dict = field(default_factory=dict)
    error: str | None = None

    def origin(self) -> str:
        """"NVIDIA H200, 2026-12-01 14:03 UTC, 7 min 12 s, commit 1a2b3c4" (what provenance.json holds)."""
        p = self.provenance
        parts = [str(p["device"])] if p.get("device") else []
        if p.get("started_utc"):
            parts.append(str(p["started_utc"])[:16].replace("T", " ") + " UTC")
        if isinstance(p.get("wall_seconds"), (int, float)):
            parts.append(f"{int(p['wall_seconds']) // 60} min {int(p['wall_seconds']) % 60} s")
        if p.get("commit"):
            parts.append(f"commit {str(p['commit'])[:7]}")
        return ", ".join(parts) or "no provenance.json"


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def paper_runs(root: str | os.PathLike | None = None) -> dict[str, PaperRun]:
    """{stem: PaperRun} for every folder of ``root`` (default :func:`paper_results_dir`) holding a results.json.

    A results.json or provenance.json that cannot be read gives a PaperRun with ``results=None`` and
    the reason in ``error``, so a damaged file is reported, never silently dropped.
    """
    root = Path(root) if root is not None else paper_results_dir()
    runs: dict[str, PaperRun] = {}
    for path in sorted(root.glob("*/results.json")) if root.is_dir() else []:
        stem = path.parent.name
        try:
            prov_path = path.parent / "provenance.json"
            provenance = _read_json(prov_path) if prov_path.is_file() else {}
            runs[stem] = PaperRun(stem, _read_json(path), provenance)
        except (OSError, ValueError) as exc:
            runs[stem] = PaperRun(stem, None, error=f"{type(exc).__name__}: {exc}")
    return runs


def with_paper_column(rows: Iterable[Mapping[str, Any]], paper_rows: Iterable[Mapping[str, Any]] | None) -> list[dict]:
    """The rows of a results table, each with an "ours (paper profile)" value: the paper run's "ours" for
    the same "cell" (None where the paper run has no such cell). Without paper rows, the rows unchanged."""
    rows = [dict(r) for r in rows]
    if paper_rows is None:
        return rows
    by_cell = {r.get("cell"): r.get("ours") for r in paper_rows if isinstance(r, Mapping)}
    for r in rows:
        r[PAPER_COLUMN] = by_cell.get(r.get("cell"))
    return rows


def paper_table(run: PaperRun | None, name: str) -> list | None:
    """The rows of table ``name`` in a paper run's results.json, or None."""
    if run is None or run.results is None:
        return None
    rows = (run.results.get("tables") or {}).get(name)
    return rows if isinstance(rows, list) else None


def status_text(run: PaperRun | None) -> str:
    """One line on a notebook's paper-profile run: where it came from, unreadable, or not run yet."""
    if run is None:
        return "no paper-profile run yet (results/paper/CHUNKS.md plans it)"
    if run.results is None:
        return f"results/paper/{run.stem}/ cannot be read: {run.error}"
    return run.origin()


__all__ = ["PAPER_COLUMN", "PAPER_RESULTS_VARIABLE", "PaperRun", "paper_results_dir", "paper_runs", "paper_table",
           "status_text", "with_paper_column"]
