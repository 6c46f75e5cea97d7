"""Grading what students hand back (``python -m robust_utils grade SUBMISSIONS... --out FOLDER``).

Per submitted notebook (a student copy written by ``python -m robust_utils assign``, named
``<notebook>.ipynb``; the student is the folder it lies in, or the folder given on the command line):

1. **Locked cells.** Every autograder and read-only cell of the student copy (nbgrader's
   ``is_locked``) must be in the submission, found by its nbgrader grade id, with nbgrader's
   checksum of the released copy (recomputed from the instructor notebook, never read from the
   submission). A deleted or changed locked cell refuses the submission, naming the cell: it gets
   0 points and the reason.
2. **Solution cells, checked before they run** (:func:`check_solution`): a solution may import only
   ``ALLOWED_IMPORTS``, may not call ``FORBIDDEN_NAMES`` nor reach ``FORBIDDEN_ATTRIBUTES``, and may
   use only names it defines or imports, builtins and the functions of earlier solution cells (so
   not the reference implementation the autograder cell imports). A solution that breaks a rule
   scores 0 on its exercise with the rule named, and is not run. This is a policy, not a sandbox:
   submissions run with the grader's rights, so grade untrusted code in a container.
3. **Only what grading needs runs**, in a fresh kernel per notebook (:class:`GradingKernel`): per
   exercise in notebook order, the student's solution cell, then the instructor's autograder
   cell(s) with the hidden tests restored, on the fixed inputs of ``robust_utils.app.exercises``
   (milliseconds each; never the notebook's training). Each cell has a timeout; a cell that runs
   past it, or kills the kernel, scores 0 and the kernel is replaced (the student's earlier,
   working definitions are replayed) so the next exercise is still graded.
4. **Outputs**, written atomically as soon as each notebook is graded: ``<out>/<student>/<notebook>.json``
   (points per exercise, status, message), ``<out>/<student>/<notebook>.html`` (the feedback page)
   and ``<out>/grades.csv`` for the class (student, notebook, exercise, points, max_points, status,
   message). Whatever one submission does, the batch goes on.

Teaching infrastructure, not a paper's method.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import nbformat

from ..core.io import atomic_write_bytes, atomic_write_json
from ..core.paths import notebooks_dir as default_notebooks_dir
from . import assign
from .grade_feedback import class_csv, feedback_html
from .grade_kernel import GradingKernel, KernelFailure, warmup_source
from .grade_policy import check_solution, defined_names

DEFAULT_TIMEOUT = 30.0  # seconds per cell: the exercises take milliseconds


class GradeError(ValueError):
    """Invalid arguments (a missing path, a notebook without exercises, a student graded twice),
    or a grading kernel that cannot start; raised before any submission is graded."""


@dataclass(frozen=True)
class Submission:
    """One student's notebook: ``student`` (the folder name), ``notebook`` (the stem), ``path``."""

    student: str
    notebook: str
    path: Path


@dataclass
class ExerciseGrade:
    """The grade of one exercise.

    Attributes:
        exercise: the solution cell's grade id.   points, max_points: scored and possible.
        status: "passed", "failed" (a test raised), "error" (the solution cell raised),
            "timeout", "not allowed" (a rule of :func:`check_solution`), "missing" (no solution cell)
            or "refused" (the submission was refused).
        message: what went wrong ("" when passed).   solution: the submitted solution cell's source.
    """

    exercise: str
    points: float
    max_points: float
    status: str
    message: str = ""
    solution: str = ""


@dataclass
class NotebookGrade:
    """One submission's grades; ``refused`` holds the reason a submission was refused (else None)."""

    student: str
    notebook: str
    path: str
    refused: str | None = None
    exercises: list[ExerciseGrade] = field(default_factory=list)

    @property
    def points(self) -> float:
        """The points scored, over every exercise."""
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        """The points possible, over every exercise."""
        return sum(e.max_points for e in self.exercises)


def find_submissions(items: Iterable[str | os.PathLike],
                     notebooks_dir: str | os.PathLike | None = None) -> list[Submission]:
    """The submissions named on the command line.

    Args:
        items: notebook files ``<student>/<notebook>.ipynb`` (the student is the parent folder's
            name) or one folder per student (every ``<notebook>.ipynb`` under it, at any depth, as in
            nbgrader's ``submitted/<student>/<assignment>/``; ``.ipynb_checkpoints`` skipped).
        notebooks_dir: the instructor notebooks (default: notebooks/).
    Returns:
        The submissions, in the order given.
    Raises:
        GradeError: a path that does not exist, a file not named after a notebook with exercises, a
            folder with no such notebook, or one student's notebook given twice (all listed at once).
    """
    available = assign.exercise_notebooks(notebooks_dir)
    names = ", ".join(f"{s}.ipynb" for s in available)
    found, problems = [], []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = [f for f in sorted(path.rglob("*.ipynb"))
                     if f.stem in available and ".ipynb_checkpoints" not in f.parts]
            if not files:
                problems.append(f"{path}: no submitted notebook in this folder (expected one of {names})")
            found += [Submission(path.resolve().name, f.stem, f) for f in files]
        elif path.is_file():
            if path.suffix != ".ipynb" or path.stem not in available:
                problems.append(f"{path}: not a notebook with exercises (expected one of {names})")
            else:
                found.append(Submission(path.resolve().parent.name, path.stem, path))
        else:
            problems.append(f"{path}: no such file or folder")
    seen: dict[tuple[str, str], Path] = {}
    for sub in found:
        key = (sub.student, sub.notebook)
        if key in seen:
            problems.append(f"student {sub.student!r} has two submissions of {sub.notebook}: {seen[key]} and {sub.path}")
        seen.setdefault(key, sub.path)
    if problems:
        raise GradeError("\n".join(problems))
    if not found:
        raise GradeError("no submissions given")
    return found


def _by_grade_id(nb: nbformat.NotebookNode) -> dict[str, tuple[int, nbformat.NotebookNode]]:
    """{grade id: (index, cell)} of a notebook's nbgrader cells; the first of a duplicated id wins."""
    cells: dict[str, tuple[int, nbformat.NotebookNode]] = {}
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(gid, str):
            cells.setdefault(gid, (i, cell))
    return cells


def check_locked(submitted: nbformat.NotebookNode, released: nbformat.NotebookNode) -> str | None:
    """Why a submission must be refused: a locked cell of the released copy deleted or changed.

    Args:
        submitted: the student's notebook.   released: the student copy as ``assign`` writes it.
    Returns:
        None when every locked cell is there with nbgrader's checksum of the released copy; else
        one sentence per deleted or changed cell, naming it (grade id, kind, position).
    """
    cells, problems = _by_grade_id(submitted), []
    for gid, locked in assign.locked_cells(released).items():
        if gid not in cells:
            problems.append(f"the {locked.kind} cell {gid!r} (cell {locked.index + 1} of the student copy) was deleted")
        elif assign.cell_checksum(cells[gid][1]) != locked.checksum:
            problems.append(f"the {locked.kind} cell {gid!r} (cell {cells[gid][0] + 1}) was changed")
    if not problems:
        return None
    return ("; ".join(problems) + ". Locked cells must stay as released (their nbgrader checksum differs): "
            "restore them from a fresh copy (python -m robust_utils assign) and hand the notebook in again.")


def _refused(sub: Submission, exercises: list[assign.Exercise], reason: str) -> NotebookGrade:
    return NotebookGrade(sub.student, sub.notebook, str(sub.path), reason,
                         [ExerciseGrade(ex.grade_id, 0.0, ex.points, "refused", reason) for ex in exercises])


def _test_message(result, source: str, name: str) -> str:
    """'<exception>: <message>' of a failed autograder cell, saying whether a hidden test failed."""
    text = f"{result.ename}: {result.evalue}" if result.evalue else result.ename
    if result.ename == "NotImplementedError" and not result.evalue:
        text += " (not solved yet: the function still raises it)"
    if result.line is not None and not result.timed_out:
        lines = source.splitlines()[: result.line]
        hidden = assign.MARKERS["hidden"][0] in "\n".join(lines) and assign.MARKERS["hidden"][1] not in "\n".join(lines)
        text += " (in a hidden test)" if hidden else f" (line {result.line} of {name})"
    return text


def _grade_exercise(kernel: GradingKernel, ex: assign.Exercise, instructor: nbformat.NotebookNode,
                    cells: dict, earlier: set[str]) -> ExerciseGrade:
    if ex.grade_id not in cells:
        return ExerciseGrade(ex.grade_id, 0.0, ex.points, "missing",
                             f"the solution cell {ex.grade_id!r} is not in the submission")
    source = cells[ex.grade_id][1].source
    grade = ExerciseGrade(ex.grade_id, 0.0, ex.points, "passed", "", source)
    problem = check_solution(source, earlier)
    if problem:
        grade.status, grade.message = "not allowed", problem
        return grade
    result = kernel.run(source)
    if not result.ok:
        grade.status = "timeout" if result.timed_out else "error"
        grade.message = f"the solution cell raised {result.ename}: {result.evalue}"
        return grade
    kernel.keep(source)
    messages = []
    for i in ex.tests:
        test = instructor.cells[i]
        result = kernel.run(test.source)
        if result.ok:
            grade.points += float(test.metadata["nbgrader"]["points"])
        else:
            grade.status = "timeout" if result.timed_out else "failed"
            messages.append(_test_message(result, test.source, test.metadata["nbgrader"]["grade_id"]))
    grade.message = "; ".join(messages)
    return grade


def grade_notebook(sub: Submission, instructor: nbformat.NotebookNode, released: nbformat.NotebookNode,
                   timeout: float = DEFAULT_TIMEOUT) -> NotebookGrade:
    """Grade one submission (see the module's docstring for the steps).

    Args:
        sub: the submission.   instructor: the instructor notebook (solutions, hidden tests).
        released: its student copy (:func:`assign.student_copy`).   timeout: seconds per cell.
    Returns:
        Its :class:`NotebookGrade` (a refused or unreadable submission scores 0 with the reason).
    Raises:
        KernelFailure: no kernel can be started (an installation problem).
    """
    exercises = assign.exercises(instructor, f"{sub.notebook}.ipynb")
    try:
        submitted = nbformat.read(sub.path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises JSON, validation and OS errors
        return _refused(sub, exercises, f"cannot read the notebook: {type(exc).__name__}: {exc}")
    reason = check_locked(submitted, released)
    if reason:
        return _refused(sub, exercises, reason)
    cells, earlier = _by_grade_id(submitted), set()
    result = NotebookGrade(sub.student, sub.notebook, str(sub.path))
    warmup = warmup_source(instructor.cells[i].source for ex in exercises for i in ex.tests)
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch, GradingKernel(scratch, timeout, warmup) as kernel:
        for ex in exercises:
            result.exercises.append(_grade_exercise(kernel, ex, instructor, cells, earlier))
            if ex.grade_id in cells:
                earlier |= defined_names(cells[ex.grade_id][1].source)
    return result


def summary_line(grade: NotebookGrade) -> str:
    """One line per submission: 'alice/02_hr_loss: 4/4 points' or '... REFUSED: <reason>'."""
    head = f"{grade.student}/{grade.notebook}: {grade.points:g}/{grade.max_points:g} points"
    if grade.refused:
        return f"{head}: REFUSED: {grade.refused}"
    failed = [f"{e.exercise} ({e.status})" for e in grade.exercises if e.status != "passed"]
    return head + (f"; not passed: {', '.join(failed)}" if failed else "")


def grade_submissions(items: Iterable[str | os.PathLike], out: str | os.PathLike = "grades",
                      timeout: float = DEFAULT_TIMEOUT, notebooks_dir: str | os.PathLike | None = None,
                      log: Callable[[str], None] | None = None) -> list[Path]:
    """Grade every submission and write the per-student files and the class CSV (``grade``).

    Args:
        items: submission files or folders (see :func:`find_submissions`).   out: the output folder.
        timeout: seconds each cell may run (> 0).   notebooks_dir: the instructor notebooks.
        log: called with :func:`summary_line` after each submission (the CLI prints it).
    Returns:
        The class CSV, then every feedback HTML, as written.
    Raises:
        GradeError: invalid arguments (before anything runs), or no kernel can be started.
    """
    if not timeout > 0:
        raise GradeError(f"timeout must be > 0 seconds, got {timeout}")
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    subs = find_submissions(items, nb_dir)
    instructors = {stem: nbformat.read(nb_dir / f"{stem}.ipynb", as_version=4) for stem in {s.notebook for s in subs}}
    released = {stem: assign.student_copy(nb) for stem, nb in instructors.items()}
    out, grades, written = Path(out), [], []
    for sub in subs:
        try:
            grade = grade_notebook(sub, instructors[sub.notebook], released[sub.notebook], timeout)
        except KernelFailure as exc:
            raise GradeError(f"grading {sub.path}: {exc}") from exc
        grades.append(grade)
        folder = out / sub.student
        atomic_write_json(folder / f"{sub.notebook}.json", {**asdict(grade), "points": grade.points,
                                                            "max_points": grade.max_points})
        written.append(atomic_write_bytes(folder / f"{sub.notebook}.html", feedback_html(grade).encode("utf-8")))
        csv_path = atomic_write_bytes(out / "grades.csv", class_csv(grades).encode("utf-8"))
        if log:
            log(summary_line(grade))
    return [csv_path, *written]


def reference_submission(stem: str, notebooks_dir: str | os.PathLike | None = None) -> nbformat.NotebookNode:
    """The student copy of a notebook with the instructor's solutions pasted back, as a student who
    solved everything would hand it in (checks the grader: it must score full points).

    Args:
        stem: e.g. "02_hr_loss".   notebooks_dir: the instructor notebooks (default: notebooks/).
    Raises:
        FileNotFoundError: no such notebook.
    """
    path = Path(notebooks_dir or default_notebooks_dir()) / f"{stem}.ipynb"
    instructor = nbformat.read(path, as_version=4)
    student = assign.student_copy(instructor)
    begin, end = assign.MARKERS["solution"]
    for ex in assign.exercises(instructor, path.name):
        lines = instructor.cells[ex.solution].source.splitlines()
        solution = lines[lines.index(next(x for x in lines if x.strip() == begin)) + 1:
                         lines.index(next(x for x in lines if x.strip() == end))]
        stub = student.cells[ex.solution].source.splitlines()
        at = next(i for i, x in enumerate(stub) if x.strip() == "# YOUR CODE HERE")
        student.cells[ex.solution].source = "\n".join(stub[:at] + solution + stub[at + 2:]) + "\n"
    return student


__all__ = ["DEFAULT_TIMEOUT", "ExerciseGrade", "GradeError", "NotebookGrade", "Submission", "check_locked",
           "check_solution", "find_submissions", "grade_notebook", "grade_submissions", "reference_submission",
           "summary_line"]
