"""The exercises and their student copies (``python -m robust_utils assign``).

The student copies are built from the committed instructor notebooks, then: (a) every exercise
raises NotImplementedError, (b) pasting the instructor's solutions back makes every autograder
cell pass, hidden tests included, and (c) no solution or hidden-test line leaks into a copy. The
exercise cells are executed here in one namespace per notebook, in notebook order (they import
what they use), without starting a kernel or training anything.
"""

import json
import re

import nbformat
import pytest
import torch

from robust_utils.app import assign
from robust_utils.core import paths
from robust_utils.app.cli import main

PAPER_NOTEBOOKS = ["01_probabilistic_loss", "02_hr_loss", "03_stochastic_lwta", "04_adversary_critic",
                   "05_sdr_learnable"]
SOLUTION_MARKERS = assign.MARKERS["solution"]
HIDDEN_MARKERS = assign.MARKERS["hidden"]


def instructor(stem):
    return nbformat.read(paths.notebooks_dir() / f"{stem}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    written = assign.release(out=out)
    return {p.stem: p for p in written}


def between(source, begin, end):
    """The stripped, non-blank lines strictly between the two marker lines."""
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    return [line.strip() for s, e in zip(starts, ends) for line in lines[s + 1:e] if line.strip()]


def paste_solution(stub, solution):
    """The student's cell with its ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` lines replaced
    by the instructor's lines between the solution markers (indentation kept), as a student would."""
    lines = solution.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == SOLUTION_MARKERS[0])
    end = next(i for i, line in enumerate(lines) if line.strip() == SOLUTION_MARKERS[1])
    stub_lines = stub.splitlines()
    at = next(i for i, line in enumerate(stub_lines) if line.strip() == "# YOUR CODE HERE")
    assert stub_lines[at + 1].strip() == "raise NotImplementedError()"
    return "\n".join(stub_lines[:at] + lines[begin + 1:end] + stub_lines[at + 2:])


def run_cell(source, namespace):
    exec(compile(source, "<exercise cell>", "exec"), namespace)


def test_every_paper_notebook_is_released_and_nothing_else(released):
    assert sorted(released) == PAPER_NOTEBOOKS  # notebook 06 has no exercises
    for stem, path in released.items():
        assert path.name == f"{stem}.ipynb"
        nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("stem", PAPER_NOTEBOOKS)
def test_exercises_follow_nbgrader_conventions(stem):
    nb = instructor(stem)
    found = assign.exercises(nb, stem)
    assert 2 <= len(found) <= 4, [e.grade_id for e in found]
    for ex in found:
        sol = nb.cells[ex.solution]
        meta = sol.metadata["nbgrader"]
        assert meta == {"grade": False, "grade_id": ex.grade_id, "locked": False, "schema_version": 3,
                        "solution": True, "task": False}
        assert sol.cell_type == "code" and "def " in sol.source
        for i in ex.tests:
            tmeta = nb.cells[i].metadata["nbgrader"]
            assert tmeta["grade"] and tmeta["locked"] and not tmeta["solution"] and tmeta["points"] > 0
            assert tmeta["schema_version"] == 3 and tmeta["grade_id"] == f"{ex.grade_id}_tests"
        # every autograder cell has hidden tests, and the visible part still tests something
        for i in ex.tests:
            src = nb.cells[i].source
            assert between(src, *HIDDEN_MARKERS), f"{ex.grade_id}: no hidden tests"
            visible = src.split(HIDDEN_MARKERS[0])[0]
            assert "check_close" in visible or "assert" in visible
        # an instructions cell precedes the solution and names the function to write
        text = nb.cells[ex.solution - 1]
        assert text.cell_type == "markdown" and f"`{ex.grade_id}(" in text.source


@pytest.mark.parametrize("stem", PAPER_NOTEBOOKS)
def test_student_copy_stubs_every_exercise_and_solutions_make_it_pass(stem, released):
    nb, student = instructor(stem), nbformat.read(released[stem], as_version=4)
    assert len(student.cells) == len(nb.cells)
    found = assign.exercises(nb, stem)
    solution_cells = {ex.solution for ex in found}
    for i, (a, b) in enumerate(zip(nb.cells, student.cells)):  # only the exercises' cells differ
        if i not in solution_cells and not any(i in ex.tests for ex in found):
            assert a.source == b.source, f"cell {i} changed"
    namespace = {}
    for ex in found:
        stub = student.cells[ex.solution].source
        assert "raise NotImplementedError()" in stub and "# YOUR CODE HERE" in stub
        run_cell(stub, namespace)
        for i in ex.tests:  # (a) the student's copy raises NotImplementedError in its autograder cell
            with pytest.raises(NotImplementedError):
                run_cell(student.cells[i].source, namespace)
        # (b) the instructor's solution pasted into the student's cell: every autograder cell passes,
        # the student's (visible) and the instructor's (with the hidden tests)
        pasted = paste_solution(stub, nb.cells[ex.solution].source)
        assert "NotImplementedError" not in pasted
        run_cell(pasted, namespace)
        for i in ex.tests:
            run_cell(student.cells[i].source, namespace)
            run_cell(nb.cells[i].source, namespace)


@pytest.mark.parametrize("stem", PAPER_NOTEBOOKS)
def test_nothing_leaks_into_the_student_copy(stem, released):
    nb = instructor(stem)
    text = released[stem].read_text(encoding="utf-8")
    student = nbformat.reads(text, as_version=4)
    sources = "\n".join(c.source for c in student.cells)
    for marker in (*SOLUTION_MARKERS, *HIDDEN_MARKERS):
        assert marker not in text
    # every line of a solution or of a hidden test that is not also written elsewhere in the
    # instructor notebook (outside those regions) must be absent from the student copy
    secret, public = [], []
    for cell in nb.cells:
        kept = cell.source
        for begin, end in (SOLUTION_MARKERS, HIDDEN_MARKERS):
            lines = between(cell.source, begin, end)
            secret += lines
            kept = re.sub(re.escape(begin) + r".*?" + re.escape(end), "", kept, flags=re.S)
        public.append(kept)
    public_text = "\n".join(public)
    checked = [line for line in secret if line not in public_text]
    assert len(checked) >= 10
    leaked = [line for line in checked if line in sources or json.dumps(line)[1:-1] in text]
    assert not leaked, leaked
    for cell in student.cells:  # outputs, execution counts and run metadata are cleared
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert not set(cell.metadata) & assign.RUN_METADATA


@pytest.mark.parametrize("stem", PAPER_NOTEBOOKS)
def test_student_copy_locks_every_autograder_and_read_only_cell_with_a_checksum(stem, released):
    """nbgrader's LockCells and ComputeChecksums ran: what the grader must trust cannot be edited or
    deleted in JupyterLab, and carries nbgrader's checksum of the released text."""
    from nbgrader.utils import compute_checksum, is_grade, is_locked, is_solution

    student = nbformat.read(released[stem], as_version=4)
    locked = assign.locked_cells(student)
    autograder = {c.metadata.nbgrader["grade_id"] for c in student.cells if is_grade(c)}
    assert autograder and autograder <= set(locked)
    assert {lc.kind for lc in locked.values()} == {"autograder", "read-only"}  # the instructions are locked too
    for cell in student.cells:
        if is_locked(cell):
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False
            assert cell.metadata.nbgrader["checksum"] == compute_checksum(cell) == locked[cell.metadata.nbgrader["grade_id"]].checksum
        elif is_solution(cell):  # editable, but not deletable
            assert cell.metadata["deletable"] is False and "editable" not in cell.metadata
            assert cell.metadata.nbgrader["checksum"] == compute_checksum(cell)
        else:
            assert "editable" not in cell.metadata and "deletable" not in cell.metadata
    assert assign.cell_checksum(nbformat.v4.new_code_cell("x = 1")) is None


def test_exercises_leave_the_global_random_state_alone():
    """The instructor notebooks run the exercises before training and attacking: they must not
    move the global RNG, or the notebooks' numbers would depend on them."""
    state = torch.get_rng_state()
    for stem in PAPER_NOTEBOOKS:
        nb, namespace = instructor(stem), {}
        for ex in assign.exercises(nb, stem):
            for i in (ex.solution, *ex.tests):
                run_cell(nb.cells[i].source, namespace)
    assert torch.equal(state, torch.get_rng_state())


def test_student_copy_is_what_nbgrader_makes_of_the_markers():
    """A small notebook through the release path: nbgrader's own stub text, the hidden tests gone,
    outputs cleared, other cells untouched."""
    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_code_cell("def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    return x + 1\n"
                                    "    ### END SOLUTION\n",
                                    metadata={"nbgrader": {"grade": False, "grade_id": "f", "locked": False,
                                                           "schema_version": 3, "solution": True, "task": False}})
    test = nbformat.v4.new_code_cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n"
                                     "### END HIDDEN TESTS\n",
                                     metadata={"nbgrader": {"grade": True, "grade_id": "f_tests", "locked": True,
                                                            "points": 1, "schema_version": 3, "solution": False,
                                                            "task": False}})
    other = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")],
                                      execution_count=3)
    nb.cells = [sol, test, other]
    out = assign.student_copy(nb)
    assert out.cells[0].source == 'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert out.cells[1].source == "assert f(1) == 2\n"
    assert out.cells[2].source == "print(1)" and out.cells[2].outputs == [] and out.cells[2].execution_count is None
    assert out.cells[1].metadata["editable"] is False and out.cells[1].metadata["deletable"] is False
    assert out.cells[1].metadata["nbgrader"]["checksum"] == assign.locked_cells(out)["f_tests"].checksum
    kept = assign.student_copy(nb, keep_outputs=True)  # the report's student pages: results kept, exercises cleared
    assert kept.cells[2].outputs == nb.cells[2].outputs and kept.cells[0].source == out.cells[0].source
    assert kept.cells[1].source == "assert f(1) == 2\n" and kept.cells[1].metadata["editable"] is False
    assert nb.cells[0].source.count("BEGIN SOLUTION") == 1  # the instructor notebook is not modified


def test_malformed_exercises_are_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n",
                                          metadata={"nbgrader": {"grade_id": "f", "solution": True}})]
    nbformat.write(nb, folder / "bad.ipynb")
    with pytest.raises(assign.AssignError, match="END SOLUTION"):
        assign.release(out=tmp_path / "out", notebooks_dir=folder)
    nb.cells[0].source += "    ### END SOLUTION\n"
    nbformat.write(nb, folder / "bad.ipynb")
    with pytest.raises(assign.AssignError, match="no autograder cell"):
        assign.release(out=tmp_path / "out", notebooks_dir=folder)
    assert not (tmp_path / "out").exists()


def test_cli_assign(tmp_path, capsys):
    assert main(["assign", "--notebooks", "06_adaptive_evaluation", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no exercises in notebook(s) '06_adaptive_evaluation'" in err and "02_hr_loss" in err
    assert not (tmp_path / "a").exists()
    assert main(["assign", "--notebooks", "02_hr_loss.ipynb", "--out", str(tmp_path / "a")]) == 0
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["02_hr_loss.ipynb"]


@pytest.mark.slow
def test_student_copy_equals_nbgrader_generate_assignment(tmp_path, released):
    """nbgrader itself (``nbgrader generate_assignment``, in a throwaway course folder) makes the same
    student copy: the same sources, lock flags and checksums; only the run metadata that ``assign``
    also drops differ."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    stem = "02_hr_loss"
    source = tmp_path / "course" / "source" / "ps1"
    source.mkdir(parents=True)
    (source / f"{stem}.ipynb").write_bytes((paths.notebooks_dir() / f"{stem}.ipynb").read_bytes())
    bin_dir = Path(sys.executable).parent  # nbgrader runs alembic from the PATH to create its gradebook
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(bin_dir / "nbgrader"), "generate_assignment", "ps1",
                             f"--CourseDirectory.root={tmp_path / 'course'}", "--CourseDirectory.course_id=c"],
                            cwd=tmp_path / "course", env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    theirs = nbformat.read(tmp_path / "course" / "release" / "ps1" / f"{stem}.ipynb", as_version=4)
    ours = nbformat.read(released[stem], as_version=4)
    assert len(theirs.cells) == len(ours.cells)
    for a, b in zip(theirs.cells, ours.cells):
        assert a.source == b.source and a.get("outputs") == b.get("outputs")
        assert {k: v for k, v in a.metadata.items() if k not in assign.RUN_METADATA} == dict(b.metadata)
