"""SUMMARY.md: every notebook of a profile in one Markdown file, with the state of its last run and
its claims counted by verdict; reading results.json.

Infrastructure, not from a paper. Every piece of text that comes from a notebook, a parameter or
an error message is escaped (HTML and Markdown), so nothing in a results.json or a failure message
can inject markup into a rendered SUMMARY.md. A notebook whose last run failed, was interrupted or
is still running is marked so at the top and in its section, and what its folder holds is never
presented as a finished run's numbers. The tracked paper-profile outputs (results/paper/) are
shown beside another profile's numbers (app.paper_results).
"""

from __future__ import annotations

import html
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from .paper_results import PAPER_COLUMN, PaperRun, paper_runs, paper_table, status_text, with_paper_column
from .progress import clock, read_status

VERDICT_COLUMNS = ("reproduced", "not reproduced", "inconclusive", "not tested at this profile")
PREVIOUS_DIR = ".previous"
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def error_line(exc: BaseException) -> str:
    """'<exception type>: <first line of its message>' (the notebook's own error for papermill's)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is None:
        ename, evalue = type(exc).__name__, str(exc)
    first = next((line.strip() for line in str(evalue).splitlines() if line.strip()), "")
    return f"{ename}: {first}" if first else ename


def format_value(value: Any, signed: bool = False) -> str:
    """A results.json value as shown in SUMMARY.md and the HTML report.

    Args:
        value: a number, string, None, ...   signed: write floats with a sign (for differences).
    Returns:
        Floats to 3 decimals (``+0.005`` if ``signed``), None as an em dash, anything else as str().
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def md_text(value: Any) -> str:
    """Any text made inert for Markdown: whitespace collapsed to one line, HTML escaped (&, <, >),
    Markdown's active characters (\\ ` * [ ] | ~, and _ unless inside a word) backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(value).split()), quote=False))


def code_span(value: Any) -> str:
    """``value`` as one Markdown code span, whatever backticks it holds (CommonMark's longer fence)."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code(value: Any) -> str:
    """A code span for names and commands; escaped text instead when it holds <, > or &, so no raw
    HTML character ever reaches SUMMARY.md, even inside a span."""
    return md_text(value) if re.search(r"[<>&]", str(value)) else code_span(value)


def _cell(value: Any, signed: bool = False) -> str:
    """A Markdown table cell: :func:`format_value`, escaped by :func:`md_text`."""
    return md_text(format_value(value, signed)) or " "


def _table(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(md_text(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c), signed=c == "diff") for c in columns) + " |"
              for row in rows if isinstance(row, Mapping)]
    return lines


def read_results(path: str | os.PathLike) -> dict:
    """Read one notebook's results.json.

    Args:
        path: the file, figures/<profile>/<stem>/results.json.
    Returns:
        Its JSON object (keys as written by :class:`robust_utils.app.results.Results`; any may be absent).
    Raises:
        OSError: the file cannot be read.   ValueError: not JSON, or not a JSON object.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def verdict_counts(claims: Any) -> dict[str, int]:
    """Claims counted by verdict: the four VERDICT_COLUMNS, "other" (any other verdict) and "total".

    A verdict starting with "not tested" counts as "not tested at this profile".
    """
    counts = dict.fromkeys((*VERDICT_COLUMNS, "other", "total"), 0)
    for claim in claims if isinstance(claims, list) else []:
        verdict = str(claim.get("verdict", "")).strip().lower() if isinstance(claim, Mapping) else ""
        key = "not tested at this profile" if verdict.startswith("not tested") else verdict
        counts[key if key in VERDICT_COLUMNS else "other"] += 1
        counts["total"] += 1
    return counts


# --------------------------------------------------------------------------- the notebooks' states


def _state(stem: str, folder: Path, failures: Mapping[str, str], run: Mapping[str, Any]) -> dict:
    """{"state", "started", "elapsed_s", "error"} of one notebook: pending in the current run, else its status.json."""
    if stem in (run.get("pending") or ()):
        return {"state": "pending", "started": None, "elapsed_s": None, "error": None}
    status = dict(read_status(folder) or {"state": "unknown", "started": None, "elapsed_s": None, "error": None})
    if stem in failures:
        status.update(state="failed", error=failures[stem])
    return status


def _state_note(stem: str, st: Mapping[str, Any], previous: Path) -> list[str]:
    """The warning at the top of a notebook's section, when its folder does not hold a finished run."""
    kept = f" The previous run's outputs are kept in {_code(PREVIOUS_DIR + '/' + stem + '/')}." if previous.is_dir() else ""
    error = f" ({md_text(st['error'])})" if st.get("error") else ""
    notes = {
        "failed": f"> **Failed** in the run started {md_text(st.get('started'))}{error}.{kept}",
        "interrupted": f"> **Interrupted** in the run started {md_text(st.get('started'))}.{kept}",
        "running": f"> **Running** since {md_text(st.get('started'))}, or killed (no finish was recorded).{kept}",
        "pending": "> **Not yet run** by the current run: the results below are from an earlier run.",
        "unknown": "> No status.json: these outputs were not written by `python -m robust_utils run`.",
    }
    return [notes[st["state"]], ""] if st["state"] in notes else []


def _overview(states: Mapping[str, dict], counts: Mapping[str, dict]) -> list[str]:
    cols = ["notebook", "state", "run started", "time", *VERDICT_COLUMNS, "claims"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for stem, st in states.items():
        c = counts.get(stem)
        took = clock(st["elapsed_s"]) if isinstance(st.get("elapsed_s"), (int, float)) else "—"
        numbers = [str(c[k]) for k in (*VERDICT_COLUMNS, "total")] if c else ["—"] * 5
        if c and c["other"]:
            numbers[-1] += f" ({c['other']} other)"
        started = md_text(str(st["started"])[:16].replace("T", " ")) if st.get("started") else "—"
        lines.append("| " + " | ".join([_code(stem), md_text(st["state"]), started, took, *numbers]) + " |")
    return lines + [""]


def _run_note(run: Mapping[str, Any]) -> list[str]:
    state = run.get("state")
    started = md_text(run.get("started") or "")
    resume = f" Resume with {_code(run['resume'])}." if run.get("resume") else ""
    if state == "running":
        return [f"> **A run is in progress** (started {started}); if none is, it was killed before it finished. "
                "Notebooks marked pending or running below do not show that run's results.", ""]
    if state == "interrupted":
        return [f"> **The run started {started} was interrupted.** Notebooks marked interrupted or pending "
                f"below do not show that run's results.{resume}", ""]
    return []


# --------------------------------------------------------------------------- one notebook's section


def _results_lines(data: Mapping[str, Any], folder: Path, profile_dir: Path, paper: PaperRun | None = None) -> list[str]:
    lines = []
    if data.get("parameters") and isinstance(data["parameters"], Mapping):
        lines += ["Parameters: " + ", ".join(_code(f"{k}={v!r}") for k, v in data["parameters"].items()), ""]
    for name, rows in (data.get("tables") or {}).items():
        paper_rows = paper_table(paper, name)
        cols = ["cell", "paper", "ours", "diff"] + ([PAPER_COLUMN] if paper_rows is not None else [])
        lines += [f"### {md_text(name)}", "", *_table(cols, with_paper_column(rows or [], paper_rows)), ""]
    for name, board in (data.get("leaderboards") or {}).items():
        if isinstance(board, Mapping):
            lines += [f"### {md_text(name)}", "", *_table(list(board.get("columns") or []), board.get("rows") or []), ""]
    if data.get("values") and isinstance(data["values"], Mapping):
        values = [{"name": k, "value": v} for k, v in data["values"].items()]
        lines += ["### Other values", "", *_table(["name", "value"], values), ""]
    if data.get("claims"):
        lines += ["### Claims", "", *_table(["claim", "verdict", "evidence"], data["claims"]), ""]
    if data.get("figures"):
        lines += ["### Figures", ""]
        for fig in data["figures"]:
            fig_path = Path(str(fig)) if Path(str(fig)).is_absolute() else folder / str(fig)
            try:
                link = fig_path.relative_to(profile_dir).as_posix()
            except ValueError:
                link = fig_path.as_posix()
            lines += [f"![{md_text(Path(str(fig)).name)}]({quote(link, safe='/')})", ""]
    return lines


def _epoch(value: Any) -> float | None:
    """A status.json time (ISO 8601 text, or seconds since the epoch) as seconds, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _hidden_reason(st: Mapping[str, Any], path: Path) -> str | None:
    """Why a results.json is not shown: its run did not finish, or it is older than the last run."""
    if st["state"] in ("failed", "interrupted", "running"):
        return f"Results not shown: this run is {st['state']}, so they would be partial (its executed notebook shows where it stopped)."
    started = _epoch(st.get("started")) if st["state"] == "ok" else None
    if started is not None and path.is_file() and path.stat().st_mtime < started - 1:
        return "Results not shown: results.json is older than the last run, which did not write it."
    return None


def _notebook_section(stem: str, folder: Path, profile_dir: Path, st: Mapping[str, Any],
                      paper: PaperRun | None = None) -> tuple[list[str], dict | None]:
    """The section of one notebook, and its claims counted by verdict (None when not shown)."""
    path = folder / "results.json"
    note = _state_note(stem, st, profile_dir / PREVIOUS_DIR / stem)
    hidden = _hidden_reason(st, path)
    if hidden or not path.is_file():
        return [f"## {md_text(stem)}", "", *note, hidden or "No results.json.", ""], None
    try:
        data = read_results(path)
    except (OSError, ValueError) as exc:
        return [f"## {md_text(stem)}", "", *note, f"Could not read {_code(stem + '/results.json')}: "
                f"{md_text(error_line(exc))}", ""], None
    title = data.get("title")
    head = f"## {md_text(stem)}: {md_text(title)}" if title else f"## {md_text(stem)}"
    return [head, "", *note, *_results_lines(data, folder, profile_dir, paper)], verdict_counts(data.get("claims"))


def _paper_overview(stems: Iterable[str], runs: Mapping[str, PaperRun]) -> list[str]:
    """The tracked paper-profile runs beside this profile's: per notebook its verdict counts and origin."""
    cols = ["notebook", *VERDICT_COLUMNS, "claims", "ran on"]
    lines = ["## Paper profile (tracked in `results/paper/`)", "",
             "The paper profile's own runs (GPU, in chunks); their numbers appear beside this run's as "
             f"{_code(PAPER_COLUMN)} in the tables below where the cells match.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for stem in sorted(set(stems) | set(runs)):
        run = runs.get(stem)
        c = verdict_counts(run.results.get("claims")) if run and run.results else None
        numbers = [str(c[k]) for k in (*VERDICT_COLUMNS, "total")] if c else ["—"] * 5
        lines.append("| " + " | ".join([_code(stem), *numbers, md_text(status_text(run))]) + " |")
    return lines + [""]


def write_summary(profile_dir: str | os.PathLike, failures: Mapping[str, str] | None = None,
                  run: Mapping[str, Any] | None = None, paper_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<profile_dir>/SUMMARY.md`` (atomically) from every notebook folder of the profile.

    Args:
        profile_dir: figures/<profile>/; its name is taken as the profile's.
        failures: {stem: error line} of notebooks that failed in this run (their state is "failed"
            whatever their status.json says).
        run: the current run, when one is writing: {"state": "running" | "finished" | "interrupted",
            "started": ISO time, "pending": [stems this run has not started], "resume": command}.
        paper_dir: the tracked paper-profile outputs shown beside this profile's (default
            paper_results.paper_results_dir(), i.e. results/paper/); not shown for the paper profile itself.
    Returns:
        The path of SUMMARY.md.
    """
    profile_dir = Path(profile_dir)
    profile_dir.mkdir(parents=True, exist_ok=True)
    failures, run = dict(failures or {}), dict(run or {})
    folders = sorted({p.parent for pat in ("*/results.json", "*/status.json") for p in profile_dir.glob(pat)
                      if not p.parent.name.startswith(".")} | {profile_dir / s for s in run.get("pending") or ()},
                     key=lambda p: p.name)
    states = {f.name: _state(f.name, f, failures, run) for f in folders}
    paper = paper_runs(paper_dir) if profile_dir.name != "paper" else None
    sections, counts = [], {}
    for folder in folders:
        lines, count = _notebook_section(folder.name, folder, profile_dir, states[folder.name],
                                         (paper or {}).get(folder.name))
        sections += lines
        if count is not None:
            counts[folder.name] = count
    lines = [f"# Reproduction summary: profile {_code(profile_dir.name)}", "",
             "Written by `python -m robust_utils run` from every notebook folder here (`status.json`, "
             "`results.json`). Numbers: paper = published value (— when none), ours = this run, "
             "diff = ours − paper. Claims are counted by verdict.", "", *_run_note(run)]
    lines += _overview(states, counts) if states else ["No notebook has run yet.", ""]
    lines += _paper_overview(states, paper) if paper is not None else []
    from ..core.io import atomic_write_bytes  # imports torch: only when writing, so checks stay fast

    return atomic_write_bytes(profile_dir / "SUMMARY.md", ("\n".join(lines + sections).rstrip() + "\n").encode("utf-8"))


__all__ = ["PREVIOUS_DIR", "VERDICT_COLUMNS", "code_span", "error_line", "format_value", "md_text", "read_results",
           "verdict_counts", "write_summary"]
