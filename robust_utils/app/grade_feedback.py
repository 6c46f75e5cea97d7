"""What ``python -m robust_utils grade`` writes: a feedback page per submission and the class CSV.

The feedback page is one self-contained HTML file (no script, nothing loaded): the total, then per
exercise its points, status, the failing message (the exception's type and message; a failing
hidden test is named as one, never shown) and the student's solution cell. Everything shown is
escaped. Teaching infrastructure, not a paper's method.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any, Iterable

CSV_COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "status", "message")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem 2rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1rem; } th, td { border: 1px solid #ccc; padding: .25rem .5rem;
vertical-align: top; text-align: left; } th { background: #f3f3f3; } td.num { text-align: right; }
.s-passed { color: #14531a; font-weight: 600; } .s-failed, .s-error, .s-timeout, .s-refused, .s-not-allowed,
.s-missing { color: #7a1610; font-weight: 600; }
.note { background: #fbd3d0; border-left: 4px solid #c0392b; padding: .4rem .8rem; }
pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def feedback_html(grade: Any) -> str:
    """The feedback page of one graded submission.

    Args:
        grade: a ``robust_utils.app.grade.NotebookGrade`` (student, notebook, refused, exercises,
            points, max_points).
    Returns:
        The HTML text.
    """
    rows, details = [], []
    for ex in grade.exercises:
        status = "-".join(ex.status.split())
        rows.append(f'<tr><td><a href="#{_e(ex.exercise)}">{_e(ex.exercise)}</a></td>'
                    f'<td class="num">{ex.points:g} / {ex.max_points:g}</td>'
                    f'<td class="s-{_e(status)}">{_e(ex.status)}</td><td>{_e(ex.message)}</td></tr>')
        code = f"<pre>{_e(ex.solution)}</pre>" if ex.solution else "<p>(no solution cell)</p>"
        details.append(f'<h3 id="{_e(ex.exercise)}">{_e(ex.exercise)}</h3>\n{code}')
    refused = f'<p class="note">Refused: {_e(grade.refused)}</p>' if grade.refused else ""
    title = f"Feedback: {grade.student}, {grade.notebook}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_e(title)}</h1>",
        f"<p>Total: <strong>{grade.points:g} / {grade.max_points:g}</strong> points. Each exercise's solution cell "
        "was run with its autograder cell (hidden tests included) in a fresh kernel "
        "(<code>python -m robust_utils grade</code>).</p>", refused,
        "<table>", "<thead><tr><th>exercise</th><th>points</th><th>status</th><th>message</th></tr></thead>",
        "<tbody>", *rows, "</tbody>", "</table>", "<h2>Your solution cells</h2>", *details, "</body>", "</html>", "",
    ])


def class_csv(grades: Iterable[Any]) -> str:
    """The class's grades as CSV text: one row per student, notebook and exercise (``CSV_COLUMNS``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for grade in grades:
        for ex in grade.exercises:
            writer.writerow([grade.student, grade.notebook, ex.exercise, f"{ex.points:g}", f"{ex.max_points:g}",
                             ex.status, " ".join(ex.message.split())])
    return buf.getvalue()


__all__ = ["CSV_COLUMNS", "class_csv", "feedback_html"]
