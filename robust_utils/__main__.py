"""Command line of the companion: ``python -m robust_utils <command> ...``.

Commands:
    run     execute a profile's notebooks with papermill and write figures/<profile>/SUMMARY.md

Each command is a subparser with a ``func(args) -> int`` handler, so more commands can be added
by writing one ``_add_<command>`` function and calling it in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys

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
    from .runner import RunnerError, run

    try:
        return run(profile=args.profile, notebooks=args.notebooks, overrides=args.params,
                   dry_run=args.dry_run, notebooks_dir=args.notebooks_dir, figures_dir=args.figures_dir)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _add_run(sub: argparse._SubParsersAction) -> None:
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
