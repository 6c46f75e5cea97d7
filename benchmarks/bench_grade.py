"""Time of ``python -m robust_utils grade`` for one student who solved every exercise (a benchmark, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_grade.py [--repeat 3] [--timeout 30]

Writes the student copies of the five paper notebooks with the instructor's solutions pasted back
(``grade.reference_submission``) into a temporary folder, then grades them as one student, as the
command does: a fresh kernel per notebook, each exercise's solution cell and autograder cell (hidden
tests included). Prints the wall time of each repeat, its median, and the points (which must be
full). The target: under 30 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from robust_utils.app import assign
from robust_utils.app.grade import grade_submissions, reference_submission


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        student = Path(tmp) / "submissions" / "student"
        student.mkdir(parents=True)
        for stem in assign.exercise_notebooks():
            nbformat.write(reference_submission(stem), str(student / f"{stem}.ipynb"))
        times = []
        for r in range(args.repeat):
            lines: list[str] = []
            start = time.perf_counter()
            grade_submissions([student], out=Path(tmp) / f"grades{r}", timeout=args.timeout, log=lines.append)
            times.append(time.perf_counter() - start)
            rows = list(csv.DictReader((Path(tmp) / f"grades{r}" / "grades.csv").open()))
            points = sum(float(row["points"]) for row in rows)
            total = sum(float(row["max_points"]) for row in rows)
            print(f"repeat {r + 1}: {times[-1]:.1f} s for {len(lines)} notebooks, {len(rows)} exercises, "
                  f"{points:g}/{total:g} points")
            if points != total:
                print("\n".join(lines))
        print(f"median: {statistics.median(times):.1f} s (target: under 30 s on 2 CPU cores)")


if __name__ == "__main__":
    main()
