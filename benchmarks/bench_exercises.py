"""Time of each exercise's autograder cell with the instructor's solution (a benchmark, not a test).

    python benchmarks/bench_exercises.py [--repeat 5] [--threads 2]

Runs, per paper notebook and in notebook order, the solution cell and then the autograder cell
(hidden tests included) of every exercise, in one namespace, as the kernel would. The first run of
each cell pays for imports and is reported apart; the median of the next ``--repeat`` runs is the
steady-state time. The autograder cells are meant to take well under a second on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import nbformat
import torch

from robust_utils.app import assign
from robust_utils.core import paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'notebook':24s} {'exercise':20s} {'first (ms)':>11s} {'median (ms)':>12s}")
    for stem, path in assign.exercise_notebooks(paths.notebooks_dir()).items():
        nb, namespace = nbformat.read(path, as_version=4), {}
        for ex in assign.exercises(nb, stem):
            cells = [compile(nb.cells[i].source, f"{stem}:{i}", "exec") for i in (ex.solution, *ex.tests)]
            times = []
            for _ in range(args.repeat + 1):
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # the cells print "all tests passed"
                    for code in cells:
                        exec(code, namespace)
                times.append(1000 * (time.perf_counter() - start))
            print(f"{stem:24s} {ex.grade_id:20s} {times[0]:11.1f} {statistics.median(times[1:]):12.1f}")


if __name__ == "__main__":
    main()
