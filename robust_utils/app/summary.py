"""SUMMARY.md: every results.json of a profile in one Markdown file; reading results.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.io import atomic_write_bytes


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


def _cell(value: Any, signed: bool = False) -> str:
    """A Markdown table cell: :func:`format_value`, whitespace collapsed, pipes escaped."""
    return " ".join(format_value(value, signed).replace("|", "\\|").split()) or " "


def _table(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c), signed=c == "diff") for c in columns) + " |"
              for row in rows if isinstance(row, Mapping)]
    return lines


def read_results(path: str | os.PathLike) -> dict:
    """Read one notebook's results.json.

    Args:
        path: the file, figures/<profile>/<stem>/results.json.
    Returns:
        Its JSON object (keys as written by :class:`robust_utils.results.Results`; any may be absent).
    Raises:
        OSError: the file cannot be read.   ValueError: not JSON, or not a JSON object.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _notebook_section(stem: str, path: Path, profile_dir: Path, failure: str | None) -> list[str]:
    try:
        data = read_results(path)
    except (OSError, ValueError) as exc:
        return [f"## {stem}", "", f"Could not read `{stem}/results.json`: {error_line(exc)}", ""]
    title = data.get("title")
    lines = [f"## {stem}: {title}" if title else f"## {stem}", ""]
    if failure:
        lines += [f"> **Failed in this run** ({failure}): the results below are from an earlier run.", ""]
    if data.get("parameters"):
        lines += ["Parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in data["parameters"].items()), ""]
    for name, rows in (data.get("tables") or {}).items():
        lines += [f"### {name}", "", *_table(["cell", "paper", "ours", "diff"], rows or []), ""]
    for name, board in (data.get("leaderboards") or {}).items():
        if isinstance(board, Mapping):
            lines += [f"### {name}", "", *_table(list(board.get("columns") or []), board.get("rows") or []), ""]
    if data.get("values"):
        values = [{"name": k, "value": v} for k, v in data["values"].items()]
        lines += ["### Other values", "", *_table(["name", "value"], values), ""]
    if data.get("claims"):
        lines += ["### Claims", "", *_table(["claim", "verdict", "evidence"], data["claims"]), ""]
    if data.get("figures"):
        lines += ["### Figures", ""]
        for fig in data["figures"]:
            fig_path = Path(fig) if Path(fig).is_absolute() else path.parent / fig
            try:
                link = fig_path.relative_to(profile_dir).as_posix()
            except ValueError:
                link = fig_path.as_posix()
            lines += [f"![{Path(fig).name}]({link.replace(' ', '%20')})", ""]
    return lines


def write_summary(profile_dir: str | os.PathLike, failures: Mapping[str, str] | None = None) -> Path:
    """Write ``<profile_dir>/SUMMARY.md`` (atomically) from every ``<profile_dir>/*/results.json``.

    Args:
        profile_dir: figures/<profile>/; its name is taken as the profile's.
        failures: {stem: error line} of the notebooks that failed in this run (listed first).
    Returns:
        The path of SUMMARY.md.
    """
    profile_dir = Path(profile_dir)
    profile_dir.mkdir(parents=True, exist_ok=True)
    failures = dict(failures or {})
    results = sorted(profile_dir.glob("*/results.json"), key=lambda p: p.parent.name)
    lines = [f"# Reproduction summary: profile `{profile_dir.name}`", "",
             "Written by `python -m robust_utils run` from every `*/results.json` in this folder. "
             "Numbers: paper = published value (— when none), ours = this run, diff = ours − paper.", ""]
    if failures:
        lines += ["## Failed in this run", ""]
        lines += [f"- `{stem}`: {_cell(error)}" for stem, error in sorted(failures.items())] + [""]
    if not results:
        lines += ["No results.json found yet.", ""]
    for path in results:
        stem = path.parent.name
        lines += _notebook_section(stem, path, profile_dir, failures.get(stem))

    return atomic_write_bytes(profile_dir / "SUMMARY.md", ("\n".join(lines).rstrip() + "\n").encode("utf-8"))


__all__ = ["error_line", "format_value", "read_results", "write_summary"]
