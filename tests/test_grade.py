"""Grading submitted student notebooks (robust_utils.app.grade, ``python -m robust_utils grade``).

The submissions are built from the committed instructor notebooks: the student copy that ``assign``
writes, with the instructor's solutions pasted back (full points), left as released (a stub), or
changed the ways students change them: an endless loop, a solution cell that raises, a solution
that only passes the visible test, a solution importing the reference, a tampered or deleted
locked cell (with and without a forged checksum), a file that is not a notebook. The rules
(locked cells, what a solution may use) are tested without a kernel; one batch then grades six
students in real kernels (a few seconds each, one of them waiting out a 5 s timeout).
"""

from __future__ import annotations

import csv
import json

import nbformat
import pytest

from robust_utils.app import assign
from robust_utils.app.cli import main
from robust_utils.app.grade import (GradeError, NotebookGrade, ExerciseGrade, check_locked, find_submissions,
                                    grade_submissions, reference_submission, summary_line)
from robust_utils.app.grade_feedback import class_csv, feedback_html
from robust_utils.app.grade_kernel import warmup_source
from robust_utils.app.grade_policy import check_solution, defined_names
from robust_utils.core import paths

TIMEOUT = 5.0


def released(stem):
    return assign.student_copy(nbformat.read(paths.notebooks_dir() / f"{stem}.ipynb", as_version=4))


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def with_solution(nb, grade_id, body):
    """The notebook with the solution cell's stub lines replaced by ``body`` (indented as a function body)."""
    target = cell(nb, grade_id)
    lines = target.source.splitlines()
    at = next(i for i, x in enumerate(lines) if x.strip() == "# YOUR CODE HERE")
    target.source = "\n".join(lines[:at] + ["    " + x for x in body.splitlines()] + lines[at + 2:]) + "\n"
    return nb


def write(folder, student, stem, nb):
    path = folder / student / f"{stem}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# ----------------------------------------------------------------------------- what a solution may use


def test_check_solution_accepts_every_instructor_solution():
    for stem in assign.exercise_notebooks():
        ref, earlier = reference_submission(stem), set()
        for ex in assign.exercises(nbformat.read(paths.notebooks_dir() / f"{stem}.ipynb", as_version=4), stem):
            source = ref.cells[ex.solution].source
            assert check_solution(source, earlier) is None, (stem, ex.grade_id)
            earlier |= defined_names(source)


@pytest.mark.parametrize("source, expected", [
    ("def f(x):\n    return x +\n", "not valid Python (line 2"),
    ("!ls\n", "not valid Python"),
    ("import os\ndef f(x):\n    return x\n", "imports 'os'"),
    ("from robust_utils.core import losses\ndef f(x):\n    return losses.hr_loss(x)\n", "imports 'robust_utils.core'"),
    ("def f(x):\n    import subprocess\n    return x\n", "imports 'subprocess'"),
    ("from . import x\n", "relative import"),
    ("def f(x):\n    return f.__globals__['losses'].hr_loss(x)\n", "attribute '__globals__'"),
    ("def f(x):\n    return eval('x')\n", "uses 'eval'"),
    ("def f(x):\n    return open('/etc/passwd').read()\n", "uses 'open'"),
    ("def f(x):\n    return losses.hr_loss(x)\n", "uses 'losses' without defining or importing it"),
    ("def f(x):\n    return torch.relu(x)\n", "uses 'torch' without defining"),
])
def test_check_solution_names_the_rule_broken(source, expected):
    problem = check_solution(source)
    assert problem is not None and expected in problem, problem


def test_check_solution_allows_own_names_builtins_and_earlier_solutions():
    source = ("import math\nimport torch.nn.functional as F\n\nSCALE = 2.0\n\n"
              "def g(x):\n    return [abs(v) for v in x]\n\n"
              "def f(x, y):\n    helper = lambda t: F.relu(t) * SCALE\n    return renyi(x, y) + helper(x).sum() + math.pi + len(g(x))\n")
    assert check_solution(source, earlier={"renyi"}) is None
    assert "uses 'renyi'" in check_solution(source)
    assert defined_names(source) == {"math", "F", "SCALE", "g", "f"}


def test_warmup_imports_inside_a_function_and_leaves_no_name():
    code = warmup_source(["import torch\nfrom robust_utils.app import exercises\nx = 1\n", "not python ("])
    namespace = {}
    exec(compile(code, "<warmup>", "exec"), namespace)
    assert set(namespace) == {"__builtins__"}
    assert "from robust_utils.app import exercises" in code and "x = 1" not in code


# ----------------------------------------------------------------------------- locked cells


def test_tampering_or_deleting_a_locked_cell_is_named():
    nb = released("02_hr_loss")
    changed = released("02_hr_loss")
    cell(changed, "hr_loss_tests").source = "print('all tests passed')\n"
    problem = check_locked(changed, nb)
    assert "the autograder cell 'hr_loss_tests' (cell 10) was changed" in problem and "renyi" not in problem
    forged = released("02_hr_loss")
    tampered = cell(forged, "hr_loss_tests")
    tampered.source = "pass\n"
    tampered.metadata.nbgrader["checksum"] = assign.cell_checksum(tampered)  # a checksum of the edit: ignored
    assert "'hr_loss_tests' (cell 10) was changed" in check_locked(forged, nb)
    points = released("02_hr_loss")
    cell(points, "hr_loss_tests").metadata.nbgrader["points"] = 100
    assert "'hr_loss_tests' (cell 10) was changed" in check_locked(points, nb)
    deleted = released("02_hr_loss")
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "renyi_divergence_text"]
    assert "the read-only cell 'renyi_divergence_text' (cell 5 of the student copy) was deleted" in check_locked(deleted, nb)
    stripped = released("02_hr_loss")
    del cell(stripped, "renyi_divergence_tests").metadata["nbgrader"]  # the cell kept, its identity removed
    assert "'renyi_divergence_tests' (cell 7 of the student copy) was deleted" in check_locked(stripped, nb)


# ----------------------------------------------------------------------------- arguments


def test_find_submissions_reads_files_and_student_folders(tmp_path):
    a = write(tmp_path, "alice", "02_hr_loss", released("02_hr_loss"))
    write(tmp_path / "bob" / "ps1", ".ipynb_checkpoints", "02_hr_loss", released("02_hr_loss"))
    b = write(tmp_path / "bob", "ps1", "02_hr_loss", released("02_hr_loss"))  # nbgrader's submitted/<student>/<assignment>/
    (tmp_path / "bob" / "scratch.ipynb").write_text("{}")
    subs = find_submissions([a, tmp_path / "bob"])
    assert [(s.student, s.notebook, s.path) for s in subs] == [("alice", "02_hr_loss", a), ("bob", "02_hr_loss", b)]


def test_bad_arguments_are_refused_before_anything_runs(tmp_path):
    write(tmp_path, "alice", "02_hr_loss", released("02_hr_loss"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "alice" / "06_adaptive_evaluation.ipynb").write_text("{}")
    with pytest.raises(GradeError) as err:
        find_submissions([tmp_path / "missing", tmp_path / "empty", tmp_path / "alice" / "06_adaptive_evaluation.ipynb",
                          tmp_path / "alice", tmp_path / "alice" / "02_hr_loss.ipynb"])
    text = str(err.value)
    assert "missing: no such file or folder" in text and "empty: no submitted notebook" in text
    assert "06_adaptive_evaluation.ipynb: not a notebook with exercises (expected one of 01_" in text
    assert "student 'alice' has two submissions of 02_hr_loss" in text
    with pytest.raises(GradeError, match="timeout must be > 0"):
        grade_submissions([tmp_path / "alice"], out=tmp_path / "out", timeout=0)
    assert not (tmp_path / "out").exists()


def test_cli_grade_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "out")]) == 2
    assert "nope.ipynb: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_grade_refuses_a_tampered_submission_naming_the_cell(tmp_path, capsys):
    nb = released("02_hr_loss")
    cell(nb, "renyi_divergence_tests").source += "\nassert True\n"
    write(tmp_path / "in", "dave", "02_hr_loss", nb)
    assert main(["grade", str(tmp_path / "in" / "dave"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "dave/02_hr_loss: 0/4 points: REFUSED: the autograder cell 'renyi_divergence_tests' (cell 7) was changed" in out
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [(r["student"], r["exercise"], r["points"], r["max_points"], r["status"]) for r in rows] == [
        ("dave", "renyi_divergence", "0", "2", "refused"), ("dave", "hr_loss", "0", "2", "refused")]


# ----------------------------------------------------------------------------- feedback


def test_feedback_and_csv_escape_what_students_write():
    grade = NotebookGrade("eve", "02_hr_loss", "x.ipynb", None, [
        ExerciseGrade("hr_loss", 0.0, 2.0, "failed", "AssertionError: <script>alert(1)</script>", "def f():\n  '<b>'"),
        ExerciseGrade("renyi_divergence", 2.0, 2.0, "passed", "", "")])
    page = feedback_html(grade)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&#x27;&lt;b&gt;&#x27;" in page
    assert "Total: <strong>2 / 4</strong>" in page and 'class="s-failed"' in page
    rows = list(csv.reader(class_csv([grade]).splitlines()))
    assert rows[0] == ["student", "notebook", "exercise", "points", "max_points", "status", "message"]
    assert rows[1][:6] == ["eve", "02_hr_loss", "hr_loss", "0", "2", "failed"]
    assert summary_line(grade) == "eve/02_hr_loss: 2/4 points; not passed: hr_loss (failed)"


# ----------------------------------------------------------------------------- a class graded in real kernels

ENDLESS = "while True:\n    pass"
ALPHA_FIXED = ('ce = F.cross_entropy(logits, y, reduction="none")\n'
               "return (torch.logsumexp(0.6 * ce, dim=0) - math.log(ce.numel())) / 0.6")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Six students; returns (written paths, {(student, notebook): result json}, csv rows, printed lines)."""
    root = tmp_path_factory.mktemp("submissions")
    write(root, "alice", "02_hr_loss", reference_submission("02_hr_loss"))
    bob = released("03_stochastic_lwta")  # lwta_deterministic left as released: the stub
    cell(bob, "pgd_step").source = cell(reference_submission("03_stochastic_lwta"), "pgd_step").source
    write(root, "bob", "03_stochastic_lwta", with_solution(bob, "stochastic_lwta", ENDLESS))
    carol = with_solution(released("02_hr_loss"), "renyi_divergence", ALPHA_FIXED)
    write(root, "carol", "02_hr_loss", with_solution(
        carol, "hr_loss", "from robust_utils.core.losses import hr_loss as ref\nreturn ref(logits, y, alpha)"))
    dan = reference_submission("05_sdr_learnable")
    cell(dan, "sdr_linear").source += "\n1 / 0\n"
    write(root, "dan", "05_sdr_learnable", dan)
    erin = released("02_hr_loss")
    erin.cells = [c for c in erin.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "hr_loss_text"]
    write(root, "erin", "02_hr_loss", erin)
    (root / "frank").mkdir()
    (root / "frank" / "02_hr_loss.ipynb").write_bytes(b"\x00\xff not a notebook")
    lines = []
    out = root / "grades"
    written = grade_submissions(sorted(root.iterdir()), out=out, timeout=TIMEOUT, log=lines.append)
    results = {(p.parent.name, p.stem): json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))}
    rows = list(csv.DictReader((out / "grades.csv").open()))
    return written, results, rows, lines


def _exercises(results, student, stem):
    return {e["exercise"]: e for e in results[(student, stem)]["exercises"]}


@pytest.mark.slow
def test_the_instructors_solutions_score_full_points(graded):
    _, results, _, lines = graded
    assert results[("alice", "02_hr_loss")]["points"] == results[("alice", "02_hr_loss")]["max_points"] == 4
    assert all(e["status"] == "passed" and e["message"] == "" for e in _exercises(results, "alice", "02_hr_loss").values())
    assert "alice/02_hr_loss: 4/4 points" in lines


@pytest.mark.slow
def test_a_stub_scores_zero_and_an_endless_loop_is_cut_by_the_timeout(graded):
    _, results, _, lines = graded
    ex = _exercises(results, "bob", "03_stochastic_lwta")
    assert ex["lwta_deterministic"]["points"] == 0 and ex["lwta_deterministic"]["status"] == "failed"
    assert ex["lwta_deterministic"]["message"].startswith("NotImplementedError (not solved yet")
    assert "(line " in ex["lwta_deterministic"]["message"] and "lwta_deterministic_tests" in ex["lwta_deterministic"]["message"]
    assert ex["stochastic_lwta"]["points"] == 0 and ex["stochastic_lwta"]["status"] == "timeout"
    assert f"within {TIMEOUT:g} s" in ex["stochastic_lwta"]["message"]
    assert ex["pgd_step"]["points"] == 2 and ex["pgd_step"]["status"] == "passed"  # graded after the kernel was replaced
    assert results[("bob", "03_stochastic_lwta")]["points"] == 2


@pytest.mark.slow
def test_a_hidden_test_failure_is_named_and_a_forbidden_import_is_not_run(graded):
    _, results, _, _ = graded
    ex = _exercises(results, "carol", "02_hr_loss")
    assert ex["renyi_divergence"]["status"] == "failed" and ex["renyi_divergence"]["points"] == 0
    assert ex["renyi_divergence"]["message"].startswith("AssertionError: alpha = 1.01: differs from the reference")
    assert ex["renyi_divergence"]["message"].endswith("(in a hidden test)")
    assert ex["hr_loss"]["status"] == "not allowed" and "imports 'robust_utils.core.losses'" in ex["hr_loss"]["message"]


@pytest.mark.slow
def test_a_solution_cell_that_raises_scores_zero_and_the_next_exercise_is_graded(graded):
    _, results, _, _ = graded
    ex = _exercises(results, "dan", "05_sdr_learnable")
    assert ex["sdr_linear"]["status"] == "error" and "ZeroDivisionError" in ex["sdr_linear"]["message"]
    assert ex["sdr_decay_update"]["status"] == "passed" and ex["sdr_decay_update"]["points"] == 2


@pytest.mark.slow
def test_refused_and_unreadable_submissions_still_get_rows(graded):
    written, results, rows, lines = graded
    assert results[("erin", "02_hr_loss")]["refused"].startswith(
        "the read-only cell 'hr_loss_text' (cell 8 of the student copy) was deleted")
    assert results[("frank", "02_hr_loss")]["refused"].startswith("cannot read the notebook")
    by_student = {}
    for r in rows:
        by_student.setdefault(r["student"], []).append(r)
    assert sorted(by_student) == ["alice", "bob", "carol", "dan", "erin", "frank"]
    assert [r["status"] for r in by_student["erin"]] == ["refused", "refused"]
    assert sum(float(r["max_points"]) for r in by_student["bob"]) == 5
    assert len(lines) == 6 and written[0].name == "grades.csv" and len(written) == 7
    page = (written[0].parent / "carol" / "02_hr_loss.html").read_text()
    assert "in a hidden test" in page and "### BEGIN HIDDEN TESTS" not in page and "exercises.check_close" not in page
