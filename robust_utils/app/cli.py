"""Command line of the companion: ``python -m robust_utils <command> ...``.

Commands:
    run                 execute a profile's notebooks with papermill and write figures/<profile>/SUMMARY.md
                        (app.run_command; also the ``robust-companion`` console script)
    assign              write the student copies of the notebooks (nbgrader's LockCells, ClearSolutions etc.)
    grade               grade submitted student notebooks (locked cells checked, per-cell timeout)
    export-checkpoints  bundle a profile's trained checkpoints (weights only, sha256) for a class
    report              render a profile's executed notebooks and SUMMARY as a static HTML site
    download            fetch the datasets that are not embedded in data/ (pooch, md5-checked)

Each command is a subparser with a ``func(args) -> int`` handler, so more commands can be added
by writing one ``_add_<command>`` function and calling it in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable


def _add_run(sub: Any) -> None:
    from .run_command import add_run  # the run command lives in app.run_command

    add_run(sub)


def _report_written(action: Callable[[], Any], error: type[Exception]) -> int:
    """Run a command's action and print what it wrote (a path or a list of paths).

    Returns:
        0, or 2 with "error: ..." on stderr when the action raises ``error`` (bad arguments or input).
    """
    try:
        written = action()
    except error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written if isinstance(written, list) else [written]:
        print(path)
    return 0


def _profile_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--profile", default="classroom", help=f"the profile {what} (default: classroom)")
    p.add_argument("--figures-dir", metavar="DIR",
                   help="the figures root holding <profile>/<notebook>/ (default: $ROBUST_UTILS_FIGURES, else figures/)")


def _cmd_assign(args: argparse.Namespace) -> int:
    from .assign import AssignError, release

    return _report_written(lambda: release(notebooks=args.notebooks, out=args.out, notebooks_dir=args.notebooks_dir),
                           AssignError)


def _add_assign(sub: Any) -> None:
    p = sub.add_parser(
        "assign", help="write the student copies of the notebooks (solutions and hidden tests removed)",
        description="Write student copies of the paper notebooks: the code between ### BEGIN SOLUTION and "
                    "### END SOLUTION becomes `raise NotImplementedError()`, hidden tests are removed and "
                    "outputs cleared, and the autograder and read-only cells locked (not editable, not "
                    "deletable) with checksums, by nbgrader's LockCells, ClearSolutions, ClearOutput, "
                    "ClearHiddenTests and ComputeChecksums preprocessors (what `grade` checks). The committed "
                    "(instructor) notebooks are not changed.",
        epilog="exit status: 0 written, 2 invalid arguments (unknown notebook, no exercises).",
    )
    p.add_argument("--notebooks", nargs="+", metavar="STEM",
                   help="only these notebooks, e.g. 02_hr_loss (default: every notebook with exercises)")
    p.add_argument("--out", default="assignments", metavar="DIR",
                   help="the folder the student copies are written to (default: assignments/)")
    p.add_argument("--notebooks-dir", metavar="DIR",
                   help="the folder of the instructor notebooks (default: the repository's notebooks/)")
    p.set_defaults(func=_cmd_assign)


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grade import GradeError, grade_submissions

    return _report_written(lambda: grade_submissions(args.submissions, out=args.out, timeout=args.timeout,
                                                     notebooks_dir=args.notebooks_dir, log=print), GradeError)


def _add_grade(sub: Any) -> None:
    p = sub.add_parser(
        "grade", help="grade submitted student notebooks: points per exercise, feedback pages, a class CSV",
        description="Grade student notebooks handed back: a submission whose locked cells (autograder, "
                    "read-only) were changed or deleted is refused, naming the cell (nbgrader checksums); "
                    "otherwise each exercise's solution cell and its autograder cell, hidden tests restored "
                    "from notebooks/<notebook>.ipynb, run in a fresh kernel with a per-cell timeout (never "
                    "the notebook's training). Writes <out>/<student>/<notebook>.json and .html, and "
                    "<out>/grades.csv.",
        epilog="exit status: 0 graded (refused submissions included, with their reason), 2 invalid arguments.",
    )
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="a notebook <student>/<notebook>.ipynb, or a folder per student (searched recursively)")
    p.add_argument("--out", default="grades", metavar="DIR", help="the output folder (default: grades/)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds each cell may run before it is cut (default: 30)")
    p.add_argument("--notebooks-dir", metavar="DIR",
                   help="the folder of the instructor notebooks (default: the repository's notebooks/)")
    p.set_defaults(func=_cmd_grade)


def _cmd_export_checkpoints(args: argparse.Namespace) -> int:
    from .bundle import BundleError, export_bundle

    return _report_written(lambda: export_bundle(profile=args.profile, figures_dir=args.figures_dir, out=args.out),
                           BundleError)


def _add_export_checkpoints(sub: Any) -> None:
    p = sub.add_parser(
        "export-checkpoints", help="bundle a profile's trained checkpoints for a class",
        description="Copy the checkpoints that a profile's notebooks trained or loaded (listed in each "
                    "figures/<profile>/<notebook>/results.json) from the cache into a bundle folder with "
                    "a manifest of sha256 checksums. The notebooks load a model from the bundle "
                    "(weights_only=True, checksum verified) instead of training it.",
        epilog="exit status: 0 written, 2 invalid arguments or a missing checkpoint.",
    )
    _profile_arguments(p, "whose checkpoints to export")
    p.add_argument("--out", metavar="DIR",
                   help="the bundle folder (default: $ROBUST_UTILS_CHECKPOINTS, else data/checkpoints/)")
    p.set_defaults(func=_cmd_export_checkpoints)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import ReportError, build_report

    return _report_written(lambda: build_report(profile=args.profile, figures_dir=args.figures_dir,
                                                audience=args.audience), ReportError)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="render a profile's executed notebooks and SUMMARY as a static HTML site",
        description="Render every executed notebook of a profile to HTML (nbconvert) next to its figures, "
                    "and write figures/<profile>/index.html: the SUMMARY tables (paper vs ours per cell, "
                    "claims reproduced or not) and thumbnails of the figures. Links are relative and "
                    "nothing is fetched from the network, so the folder can be zipped and browsed anywhere.",
        epilog="exit status: 0 written, 2 invalid arguments (unknown profile, nothing executed yet).",
    )
    _profile_arguments(p, "to render")
    p.add_argument("--audience", choices=("instructor", "student"), default="instructor",
                   help="instructor (default): pages with the solutions and hidden tests, in figures/<profile>/; "
                        "student: pages from the student copies (no solutions, no hidden tests), a "
                        "self-contained site in figures/<profile>/student/ to hand out")
    p.set_defaults(func=_cmd_report)


def _cmd_download(args: argparse.Namespace) -> int:
    from ..core.datafiles import DataError
    from ..core.download import download

    try:
        download(args.names, root=args.root, mirror=args.mirror)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_download(sub: Any) -> None:
    p = sub.add_parser(
        "download", help="fetch the datasets that are not embedded (full CIFAR-10, SVHN; MNIST again)",
        description="Fetch datasets from their official locations into the data root (--root, else\n"
                    "$ROBUST_UTILS_DATA, else data/): MNIST/raw/*.gz, cifar-10-batches-py/ (unpacked from\n"
                    "cifar-10-python.tar.gz) and SVHN/{train,test}_32x32.mat. Every file is md5-checked\n"
                    "against data/checksums.json and renamed into place only when it matches; a file\n"
                    "already present and intact is not fetched again.",
        epilog="examples:\n  python -m robust_utils download cifar10 svhn\n\n"
               "exit status: 0 every file in place, 1 a download or checksum failed, 2 invalid arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="+", choices=("mnist", "cifar10", "svhn"), metavar="NAME",
                   help="mnist, cifar10 or svhn (repeatable)")
    p.add_argument("--root", metavar="DIR", help="the data root (default: $ROBUST_UTILS_DATA, else data/)")
    p.add_argument("--mirror", metavar="URL",
                   help="fetch every file from URL/<file name> (default: $ROBUST_UTILS_DATA_MIRROR, else the "
                        "official locations)")
    p.set_defaults(func=_cmd_download)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m robust_utils`` with one subparser per command.

    Returns:
        The parser; parsed arguments carry ``func``, the command's handler returning an exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m robust_utils",
        description="Tools of the adversarial-robustness paper companion.",
        epilog="Run 'python -m robust_utils <command> --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _add_run(sub)
    _add_assign(sub)
    _add_grade(sub)
    _add_export_checkpoints(sub)
    _add_report(sub)
    _add_download(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command.

    Args:
        argv: the arguments (default: sys.argv[1:]).
    Returns:
        The exit code (argparse itself exits 2 on a usage error).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
