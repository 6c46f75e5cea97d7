"""A profile's outputs as a static HTML site (``python -m robust_utils report --profile classroom``).

Reads ``<figures>/<profile>/<stem>/`` as the runner leaves it (results.json, status.json, the PNG
figures, the executed ``<stem>.ipynb``) and writes a site:

- ``<stem>/<stem>.html``: the notebook rendered by nbconvert's lab template, offline, with a bundled
  MathJax (:mod:`robust_utils.app.report_pages`). For the classroom profile, a finished notebook
  that was not executed into the folder is rendered from the committed ``notebooks/<stem>.ipynb``,
  which carries the classroom outputs; the index says so. On a fresh clone (no run of the
  classroom profile at all) every page comes from the committed notebooks, and the index says so.
- ``index.html``: per notebook its run state, verdict counts, tables, claims, leaderboards, values
  and figure thumbnails (:mod:`robust_utils.app.report_index`). A notebook whose last run did not
  finish (``status.json``) shows its state, never an older results.json.

Two audiences. ``instructor`` (the default) writes the site into ``<figures>/<profile>/``, the
notebook pages showing the solutions and hidden tests. ``student`` writes a self-contained site
into ``<figures>/<profile>/student/`` (pages, copies of the figures, results.json and SUMMARY.md,
its own MathJax; zip that folder for a class): every page is rendered from the student copy
(``assign.student_copy``: nbgrader's ClearSolutions and ClearHiddenTests, the exercise cells'
outputs cleared), and any other output that shows a line of a solution or hidden test
(``assign.secret_lines``, e.g. in a traceback) is replaced by a note. Infrastructure.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import nbformat

from ..core import paths
from ..core.io import atomic_write_bytes
from . import assign
from .paper_results import paper_runs
from .profiles import RunnerError, list_profiles, load_profile
from .report_index import Entry, index_page
from .report_pages import MATHJAX_DIR, ReportError, copy_mathjax, mathjax_sources, notebook_exporter
from .summary import error_line, read_results

__all__ = ["AUDIENCES", "MATHJAX_DIR", "ReportError", "STUDENT_DIR", "build_report"]

AUDIENCES = ("instructor", "student")
STUDENT_DIR = "student"  # the student site, below the profile folder
REMOVED_OUTPUT = "[output removed from the student pages: it showed a line of a solution or hidden test]\n"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _read_status(path: Path | None) -> dict:
    """status.json of a notebook folder ({} when there is none)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {error_line(exc)}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        raise ReportError(f"cannot read {path}: expected a JSON object with a string 'state'")
    return data


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch of a status.json time (a number, or ISO 8601 text); None if neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _entry(stem: str, profile_dir: Path, results: Path | None, status_path: Path | None) -> Entry:
    """The notebook's record: results.json shown only when its last run finished and wrote it."""
    status = _read_status(status_path)
    entry = Entry(stem, state=status.get("state"), status=status)
    if results is None:
        return entry
    try:
        data = read_results(results)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {results}: {error_line(exc)}") from exc
    started = _timestamp(status.get("started"))
    if not entry.finished:
        entry.hidden = "The results.json in this folder is from an earlier run: not shown."
    elif started is not None and results.stat().st_mtime < started - 1:
        entry.hidden = "The results.json in this folder is older than the last run, which did not write one: not shown."
    else:
        entry.data = data
    return entry


def _committed_stems(profile: str, nb_dir: Path) -> list[str]:
    """The classroom profile's notebooks that are committed in ``nb_dir``."""
    try:
        listed = load_profile(profile, nb_dir)["notebooks"]
    except RunnerError as exc:
        raise ReportError(str(exc)) from exc
    return [stem for stem in listed if (nb_dir / f"{stem}.ipynb").is_file()]


def _entries(profile: str, profile_dir: Path, nb_dir: Path) -> tuple[list[Entry], bool]:
    """(one Entry per notebook of the folder, whether they come from the committed notebooks only)."""
    results = {p.parent.name: p for p in profile_dir.glob("*/results.json")}
    status = {p.parent.name: p for p in profile_dir.glob("*/status.json")}
    executed = {p.parent.name for p in profile_dir.glob("*/*.ipynb") if p.stem == p.parent.name}
    stems = sorted(set(results) | set(status) | executed)
    if stems:
        return [_entry(s, profile_dir, results.get(s), status.get(s)) for s in stems], False
    if profile == "classroom":
        stems = _committed_stems(profile, nb_dir)
    if not stems:
        raise ReportError(f"no results in {profile_dir} (no */results.json): run "
                          f"`python -m robust_utils run --profile {profile}` first")
    return [Entry(s) for s in stems], True


def _source(entry: Entry, profile: str, profile_dir: Path, nb_dir: Path) -> tuple[Path | None, str]:
    """(the notebook to render, its page kind): this run's, the committed one, or a partial run's."""
    executed = profile_dir / entry.stem / f"{entry.stem}.ipynb"
    if entry.state == "running":
        return None, ""  # still being written
    if not entry.finished:
        return (executed, "partial") if executed.is_file() else (None, "")
    if executed.is_file():
        return executed, "run"
    committed = nb_dir / f"{entry.stem}.ipynb"
    if profile == "classroom" and committed.is_file():
        return committed, "committed"
    return None, ""


def _output_text(output: Mapping) -> str:
    parts = [output.get("text", ""), output.get("ename", ""), output.get("evalue", ""), *output.get("traceback", [])]
    parts += [v if isinstance(v, str) else "".join(v) for k, v in (output.get("data") or {}).items()
              if k.startswith("text/") and isinstance(v, (str, list))]
    return _ANSI.sub("", "\n".join(p if isinstance(p, str) else "".join(p) for p in parts))


def student_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a student may see of an executed instructor notebook (see the module's docstring).

    Returns:
        A new notebook: the student copy with the other cells' outputs kept, except any output that
        shows one of ``assign.secret_lines(nb)``, replaced by a short note.
    """
    secrets = assign.secret_lines(nb)
    student = assign.student_copy(nb, keep_outputs=True)
    for cell in student.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=REMOVED_OUTPUT)
                            if any(s in _output_text(out) for s in secrets) else out for out in cell.outputs]
    return student


def _copy_results(entries: list[Entry], profile_dir: Path, site_dir: Path) -> None:
    """The student site's own copies of SUMMARY.md, each shown results.json and its figures."""
    if (profile_dir / "SUMMARY.md").is_file():
        atomic_write_bytes(site_dir / "SUMMARY.md", (profile_dir / "SUMMARY.md").read_bytes())
    for entry in entries:
        if entry.data is None:
            continue
        figures = []
        for fig in entry.data.get("figures") or []:
            src = Path(fig) if Path(fig).is_absolute() else profile_dir / entry.stem / fig
            if src.is_file():
                atomic_write_bytes(site_dir / entry.stem / src.name, src.read_bytes())
            figures.append(Path(fig).name)
        entry.data = {**entry.data, "figures": figures}
        atomic_write_bytes(site_dir / entry.stem / "results.json", (profile_dir / entry.stem / "results.json").read_bytes())


def _read_notebooks(entries: list[Entry], profile: str, profile_dir: Path, nb_dir: Path,
                    audience: str) -> dict[str, tuple]:
    """{stem: (notebook as the audience sees it, its path, page kind)} of the notebooks that get a page."""
    notebooks = {}
    for entry in entries:
        source, kind = _source(entry, profile, profile_dir, nb_dir)
        if source is None:
            continue
        try:
            nb = nbformat.read(source, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds (JSON, validation, OS)
            raise ReportError(f"cannot read notebook {source}: {error_line(exc)}") from exc
        if audience == "student":
            try:
                nb = student_page(nb)
            except Exception as exc:  # noqa: BLE001 - nbgrader's preprocessors raise several kinds
                raise ReportError(f"cannot make the student copy of {source}: {error_line(exc)}") from exc
        notebooks[entry.stem] = (nb, source, kind)
    return notebooks


def build_report(profile: str = "classroom", figures_dir: str | os.PathLike | None = None,
                 notebooks_dir: str | os.PathLike | None = None, audience: str = "instructor") -> Path:
    """Render a profile's notebooks to HTML and write the site's ``index.html``.

    Everything is read and checked before anything is written. Pages load nothing from the network.

    Args:
        profile: the profile (a file notebooks/params/<profile>.yaml) whose outputs to render.
        figures_dir: the figures root holding <profile>/<stem>/ (default: paths.figures_root(), i.e.
            $ROBUST_UTILS_FIGURES or <repo>/figures).
        notebooks_dir: the committed notebooks and params/ (default: the repository's notebooks/).
        audience: "instructor" (the site in <profile>/) or "student" (the site in <profile>/student/,
            pages from the student copies).
    The tracked paper-profile outputs (paper_results.paper_results_dir(): results/paper/, or
    $ROBUST_UTILS_PAPER_RESULTS) are shown beside another profile's numbers.
    Returns:
        The path of index.html.
    Raises:
        ReportError: an unknown profile or audience (the message lists the valid ones); no
            results.json, status.json or executed notebook in the profile folder (for the classroom
            profile: and no committed notebook); a results.json, status.json or notebook that cannot
            be read (the message names it); jupyter-server-mathjax missing when there are pages to write.
    """
    if audience not in AUDIENCES:
        raise ReportError(f"unknown audience {audience!r}; valid: {', '.join(AUDIENCES)}")
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    valid = list_profiles(nb_dir)
    if profile not in valid:
        raise ReportError(f"unknown profile {profile!r}; valid profiles: {', '.join(valid) or '(none)'} "
                          f"(files in {nb_dir / 'params'})")
    profile_dir = Path(figures_dir if figures_dir is not None else paths.figures_root()) / profile
    entries, committed_only = _entries(profile, profile_dir, nb_dir)
    if profile != "paper":  # the tracked paper-profile runs, beside this profile's numbers
        tracked = paper_runs()
        for entry in entries:
            entry.paper, entry.show_paper = tracked.get(entry.stem), True
    notebooks = _read_notebooks(entries, profile, profile_dir, nb_dir, audience)
    mathjax = mathjax_sources() if notebooks else {}
    site_dir = profile_dir / STUDENT_DIR if audience == "student" else profile_dir
    if audience == "student":
        _copy_results(entries, profile_dir, site_dir)
    if mathjax:
        copy_mathjax(mathjax, site_dir / MATHJAX_DIR)
    exporter = notebook_exporter()
    for entry in entries:
        if entry.stem in notebooks:
            nb, source, entry.page_kind = notebooks[entry.stem]
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": entry.stem,
                                                                              "path": str(source.parent)}})
            atomic_write_bytes(site_dir / entry.stem / f"{entry.stem}.html", body.encode("utf-8"))
            entry.page = f"{entry.stem}/{entry.stem}.html"
    text = index_page(profile, audience, entries, site_dir, committed_only)
    return atomic_write_bytes(site_dir / "index.html", text.encode("utf-8"))
