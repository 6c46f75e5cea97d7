"""Student copies of the notebooks, made by nbgrader's own preprocessors (``python -m robust_utils assign``).

The committed notebooks are the instructor versions: complete, executed, checked by nbval. Their
exercises follow nbgrader's conventions, so a teacher can also use nbgrader directly:

- a *solution cell* (metadata ``nbgrader.solution: true``) holds the student's part between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- the *autograder cell* after it (``nbgrader.grade: true, locked: true, points``) checks the
  student's function against robust_utils on fixed tensors; its hidden part lies between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.

:func:`release` runs nbgrader's ``ClearSolutions`` (solution code becomes
``raise NotImplementedError()``), ``ClearHiddenTests`` and ``ClearOutput`` through nbconvert's
``NotebookExporter`` and writes one student copy per notebook. This is teaching infrastructure,
not a paper's method.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..core.io import atomic_write_bytes
from ..core.paths import notebooks_dir as default_notebooks_dir

MARKERS = {"solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
           "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")}
# cell metadata that records a run, not content: dropped from the student copies with the outputs
RUN_METADATA = {"collapsed", "scrolled", "execution", "papermill", "ExecuteTime"}


class AssignError(ValueError):
    """Invalid arguments or malformed exercises; raised before any student copy is written."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its solution cell and the autograder cells that follow it.

    Attributes:
        grade_id: the solution cell's nbgrader id.   solution: the solution cell's index.
        tests: indices of the autograder cells (``grade: true``) before the next solution cell.
        points: their total points.
    """

    grade_id: str
    solution: int
    tests: tuple[int, ...]
    points: float


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _check_markers(source: str, kind: str, where: str) -> None:
    """Exactly one BEGIN before exactly one END, each on a line of its own."""
    begin, end = MARKERS[kind]
    lines = [line.strip() for line in source.splitlines()]
    if lines.count(begin) != 1 or lines.count(end) != 1 or lines.index(begin) > lines.index(end):
        raise AssignError(f"{where}: needs one '{begin}' line followed by one '{end}' line")


def exercises(nb: nbformat.NotebookNode, name: str = "notebook") -> list[Exercise]:
    """The exercises of an instructor notebook, with their markers and metadata checked.

    Args:
        nb: the notebook (nbformat 4).   name: its name, for error messages.
    Returns:
        The exercises in notebook order (empty if the notebook has none).
    Raises:
        AssignError: a solution cell without exactly one BEGIN/END SOLUTION pair, or that is not a
            code cell; hidden-test markers anywhere but in an autograder cell, or unbalanced there;
            a repeated grade_id; an autograder cell without points > 0; a solution cell with no
            autograder cell after it.
    """
    found: list[Exercise] = []
    seen: set[str] = set()
    current: tuple[str, int] | None = None
    tests: list[int] = []
    points = 0.0

    def close() -> None:
        if current is not None:
            if not tests:
                raise AssignError(f"{name}: exercise {current[0]!r} has no autograder cell after it")
            found.append(Exercise(current[0], current[1], tuple(tests), points))

    for i, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        where = f"{name}, cell {i}"
        has_hidden = MARKERS["hidden"][0] in cell.source or MARKERS["hidden"][1] in cell.source
        if meta:
            gid = meta.get("grade_id")
            if not gid or gid in seen:
                raise AssignError(f"{where}: nbgrader grade_id {gid!r} is missing or repeated")
            seen.add(gid)
        if meta.get("solution"):
            if cell.cell_type != "code":
                raise AssignError(f"{where}: solution cells must be code cells")
            _check_markers(cell.source, "solution", where)
            close()
            current, tests, points = (meta["grade_id"], i), [], 0.0
        elif meta.get("grade"):
            if not float(meta.get("points") or 0) > 0:
                raise AssignError(f"{where}: autograder cell {meta.get('grade_id')!r} needs points > 0")
            if has_hidden:
                _check_markers(cell.source, "hidden", where)
            if current is not None:
                tests.append(i)
                points += float(meta["points"])
        elif has_hidden:
            raise AssignError(f"{where}: hidden tests outside an autograder cell")
    close()
    return found


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of an instructor notebook, by nbgrader's preprocessors through nbconvert.

    ClearSolutions replaces the code between the solution markers with
    ``# YOUR CODE HERE`` / ``raise NotImplementedError()``; ClearHiddenTests deletes the hidden
    tests; ClearOutput clears every output and execution count (and the run metadata in
    ``RUN_METADATA``). Everything else is unchanged.

    Args:
        nb: the instructor notebook (not modified).
    Returns:
        A new notebook.
    """
    from nbconvert.exporters import NotebookExporter
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    exporter = NotebookExporter()
    exporter.register_preprocessor(ClearSolutions(), enabled=True)
    exporter.register_preprocessor(ClearHiddenTests(), enabled=True)
    exporter.register_preprocessor(ClearOutput(remove_metadata_fields=RUN_METADATA), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.from_dict(nb))
    return nbformat.reads(body, as_version=4)


def exercise_notebooks(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """{stem: path} of the notebooks in ``notebooks_dir`` that have at least one exercise."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    return {p.stem: p for p in sorted(folder.glob("*.ipynb"))
            if any(_nbgrader(c).get("solution") for c in nbformat.read(p, as_version=4).cells)}


def release(notebooks: list[str] | None = None, out: str | os.PathLike = "assignments",
            notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the student copies of the notebooks that have exercises (``python -m robust_utils assign``).

    Every requested notebook is read and its exercises checked before anything is written; each
    copy is then written atomically to ``<out>/<stem>.ipynb`` (the instructor notebooks are not
    changed).

    Args:
        notebooks: stems such as "02_hr_loss" (a trailing ".ipynb" is accepted); None: every
            notebook with exercises.
        out: the output folder (created).   notebooks_dir: the instructor notebooks (default: notebooks/).
    Returns:
        The paths written, in the order of ``notebooks``.
    Raises:
        AssignError: an unknown notebook or one without exercises (the message lists the valid
            names), or malformed exercises (see :func:`exercises`).
    """
    available = exercise_notebooks(notebooks_dir)
    if not available:
        raise AssignError(f"no notebook with exercises in {Path(notebooks_dir or default_notebooks_dir())}")
    stems = [re.sub(r"\.ipynb$", "", Path(s).name) for s in notebooks] if notebooks else list(available)
    unknown = [s for s in stems if s not in available]
    if unknown:
        raise AssignError(f"no exercises in notebook(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(available)}")
    copies = {}
    for stem in stems:
        nb = nbformat.read(available[stem], as_version=4)
        exercises(nb, f"{stem}.ipynb")
        copies[stem] = student_copy(nb)
    out = Path(out)
    return [atomic_write_bytes(out / f"{stem}.ipynb", (nbformat.writes(nb) + "\n").encode("utf-8"))
            for stem, nb in copies.items()]


__all__ = ["AssignError", "Exercise", "MARKERS", "exercises", "exercise_notebooks", "release", "student_copy"]
