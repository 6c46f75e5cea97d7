"""Student copies of the notebooks, made by nbgrader's own preprocessors (``python -m robust_utils assign``).

The committed notebooks are the instructor versions: complete, executed, checked by nbval. Their
exercises follow nbgrader's conventions, so a teacher can also use nbgrader directly:

- a *solution cell* (metadata ``nbgrader.solution: true``) holds the student's part between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- the *autograder cell* after it (``nbgrader.grade: true, locked: true, points``) checks the
  student's function against robust_utils on fixed tensors; its hidden part lies between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``;
- *read-only cells* (``nbgrader.locked: true``), e.g. each exercise's instructions.

:func:`student_copy` runs nbgrader's preprocessors in the order of ``nbgrader generate_assignment``
(without its database step, SaveCells): ``LockCells`` (autograder and read-only cells get
``editable: false, deletable: false``, solution cells ``deletable: false``), ``ClearSolutions``
(solution code becomes ``raise NotImplementedError()``), ``ClearOutput``, ``CheckCellMetadata``,
``ClearHiddenTests``, then ``ComputeChecksums`` (nbgrader's md5 of each locked, autograder and
solution cell as the student receives it, in ``nbgrader.checksum``) and ``CheckCellMetadata`` again.
:func:`release` writes one student copy per notebook; ``python -m robust_utils grade`` compares a
submission's locked cells with these checksums. This is teaching infrastructure, not a paper's method.
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


def student_copy(nb: nbformat.NotebookNode, keep_outputs: bool = False) -> nbformat.NotebookNode:
    """The student version of an instructor notebook, by nbgrader's preprocessors through nbconvert.

    In ``nbgrader generate_assignment``'s order: LockCells (autograder and read-only cells become
    ``editable: false, deletable: false``; solution cells ``deletable: false``), ClearSolutions
    (the code between the solution markers becomes ``# YOUR CODE HERE`` /
    ``raise NotImplementedError()``), ClearOutput (every output and execution count, and the run
    metadata in ``RUN_METADATA``), CheckCellMetadata (nbgrader's schema), ClearHiddenTests (the
    hidden tests are deleted), ComputeChecksums (``nbgrader.checksum`` and ``nbgrader.cell_type`` of
    every solution, autograder and read-only cell, as the student receives it), CheckCellMetadata.
    Everything else is unchanged.

    Args:
        nb: the instructor notebook (not modified).
        keep_outputs: keep the outputs of the cells that carry no nbgrader metadata (for the report's
            student pages: the results stay, the exercise cells' outputs go); default: clear all.
    Returns:
        A new notebook.
    Raises:
        nbgrader.nbgraderformat.ValidationError: the nbgrader metadata does not follow nbgrader's schema.
    """
    from nbconvert.exporters import NotebookExporter
    from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, ClearSolutions,
                                        ComputeChecksums, LockCells)

    nb = nbformat.from_dict(nb)
    if keep_outputs:
        for cell in nb.cells:
            if cell.cell_type == "code" and _nbgrader(cell):
                cell.outputs, cell.execution_count = [], None
    exporter = NotebookExporter()
    steps = [LockCells(), ClearSolutions(), None if keep_outputs else ClearOutput(remove_metadata_fields=RUN_METADATA),
             CheckCellMetadata(), ClearHiddenTests(), ComputeChecksums(), CheckCellMetadata()]
    for step in steps:
        if step is not None:
            exporter.register_preprocessor(step, enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    return nbformat.reads(body, as_version=4)


@dataclass(frozen=True)
class LockedCell:
    """A cell a student may not change: an autograder or read-only cell of a student copy.

    Attributes:
        grade_id: its nbgrader id.   index: its position in the student copy.
        kind: "autograder" or "read-only".   checksum: nbgrader's checksum of the cell as released.
    """

    grade_id: str
    index: int
    kind: str
    checksum: str


def locked_cells(student: nbformat.NotebookNode) -> dict[str, LockedCell]:
    """{grade_id: LockedCell} of a student copy's locked cells (nbgrader's ``is_locked``), in order.

    The checksum is recomputed with nbgrader's ``compute_checksum`` (md5 of source, cell type,
    the grade/solution/locked flags, grade id and points), so a checksum edited into a file counts
    for nothing; compare it with :func:`cell_checksum` of a submitted cell.
    """
    from nbgrader import utils

    return {cell.metadata.nbgrader["grade_id"]: LockedCell(
                cell.metadata.nbgrader["grade_id"], i, "autograder" if utils.is_grade(cell) else "read-only",
                utils.compute_checksum(cell))
            for i, cell in enumerate(student.cells) if utils.is_locked(cell)}


def cell_checksum(cell: nbformat.NotebookNode) -> str | None:
    """nbgrader's checksum of a cell; None for a cell without an nbgrader grade id, "" for metadata
    nbgrader cannot read (e.g. points that are not a number): neither matches a released checksum."""
    from nbgrader import utils

    if not isinstance(_nbgrader(cell).get("grade_id"), str):
        return None
    try:
        return utils.compute_checksum(nbformat.from_dict(cell))
    except (KeyError, TypeError, ValueError):
        return ""


def secret_lines(nb: nbformat.NotebookNode, min_length: int = 6) -> list[str]:
    """The lines a student copy must not show: every stripped line between the solution or hidden-test
    markers of an instructor notebook that is not also written elsewhere in its cell sources.

    Args:
        nb: the instructor notebook.   min_length: shorter lines are left out (too common to mean a leak).
    Returns:
        The lines, in notebook order, without repeats.
    """
    secret, public = [], []
    for cell in nb.cells:
        kept = cell.source
        for begin, end in MARKERS.values():
            lines = cell.source.splitlines()
            starts = [i for i, line in enumerate(lines) if line.strip() == begin]
            ends = [i for i, line in enumerate(lines) if line.strip() == end]
            secret += [line.strip() for s, e in zip(starts, ends) for line in lines[s + 1:e] if line.strip()]
            kept = re.sub(re.escape(begin) + r".*?" + re.escape(end), "", kept, flags=re.S)
        public.append(kept)
    public_text = "\n".join(public)
    return list(dict.fromkeys(line for line in secret if len(line) >= min_length and line not in public_text))


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


__all__ = ["AssignError", "Exercise", "LockedCell", "MARKERS", "cell_checksum", "exercises", "exercise_notebooks",
           "locked_cells", "release", "secret_lines", "student_copy"]
