"""Command line of the companion: ``python -m robust_utils <command> ...``.

Commands:
    run                 execute a profile's notebooks with papermill and write figures/<profile>/SUMMARY.md
    assign              write the student copies of the notebooks (nbgrader's ClearSolutions etc.)
    export-checkpoints  bundle a profile's trained checkpoints (weights only, sha256) for a class
    report              render a profile's executed notebooks and SUMMARY as a static HTML site

Each command is a subparser with a ``func(args) -> int`` handler, so more commands can be added
by writing one ``_add_<command>`` function and calling it in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

RUN_EPILOG = """\
examples:
  python -m robust_utils run --profile smoke
  python -m robust_utils run --notebooks 02_hr_loss -p epochs=3 -p eps_grid=[0.1,0.2]
  python -m robust_utils run --profile paper -p device=cuda --dry-run

Profiles are the files notebooks/params/<profile>.yaml:
  defaults:           # given to every notebook whose parameters cell has the name
    threads: 2
  notebooks:          # the notebooks of the profile and their parameters
    02_hr_loss:
      n_train: 1000

Everything is checked before anything runs: the profile, the notebook names, that every
parameter exists in the notebook's `parameters`-tagged cell, and that each value has the type of
the notebook's default (an int is fine for a float). Outputs go to
$ROBUST_UTILS_FIGURES/<profile>/<notebook>/ (default: figures/), together with the executed
notebook; figures/<profile>/SUMMARY.md collects every results.json of the profile.

exit status: 0 all notebooks ran (or dry run), 1 a notebook failed, 2 invalid arguments.
"""


def _cmd_run(args: argparse.Namespace) -> int:
    from .execute import run
    from .profiles import RunnerError

    try:
        return run(profile=args.profile, notebooks=args.notebooks, overrides=args.params,
                   dry_run=args.dry_run, notebooks_dir=args.notebooks_dir, figures_dir=args.figures_dir)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="execute a profile's notebooks with papermill and write SUMMARY.md",
        description="Execute the notebooks of a profile with papermill into "
                    "figures/<profile>/<notebook>/ and write figures/<profile>/SUMMARY.md.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", default="classroom",
                   help="smoke, classroom or paper: the file notebooks/params/<profile>.yaml (default: classroom)")
    p.add_argument("--notebooks", nargs="+", metavar="STEM",
                   help="run only these notebooks of the profile, e.g. 02_hr_loss (default: all of them)")
    p.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter in every selected notebook that has it; the value is read "
                        "as YAML (3, 0.5, [0.1,0.2], cpu, true, null); repeatable")
    p.add_argument("--dry-run", action="store_true",
                   help="print each notebook's parameters and output folder; execute nothing")
    p.add_argument("--notebooks-dir", metavar="DIR",
                   help="the folder of the notebooks and their params/ (default: the repository's notebooks/)")
    p.add_argument("--figures-dir", metavar="DIR",
                   help="the figures root (default: $ROBUST_UTILS_FIGURES, else the repository's figures/)")
    p.set_defaults(func=_cmd_run)


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
                    "outputs cleared, by nbgrader's ClearSolutions, ClearHiddenTests and ClearOutput "
                    "preprocessors. The committed (instructor) notebooks are not changed.",
        epilog="exit status: 0 written, 2 invalid arguments (unknown notebook, no exercises).",
    )
    p.add_argument("--notebooks", nargs="+", metavar="STEM",
                   help="only these notebooks, e.g. 02_hr_loss (default: every notebook with exercises)")
    p.add_argument("--out", default="assignments", metavar="DIR",
                   help="the folder the student copies are written to (default: assignments/)")
    p.add_argument("--notebooks-dir", metavar="DIR",
                   help="the folder of the instructor notebooks (default: the repository's notebooks/)")
    p.set_defaults(func=_cmd_assign)


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

    return _report_written(lambda: build_report(profile=args.profile, figures_dir=args.figures_dir), ReportError)


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
    p.set_defaults(func=_cmd_report)


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
    _add_export_checkpoints(sub)
    _add_report(sub)
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
