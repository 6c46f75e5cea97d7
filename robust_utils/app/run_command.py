"""The ``run`` command of ``python -m robust_utils`` (and the ``robust-companion`` console script).

Infrastructure, not from a paper. Parameters are given the ways papermill users know:
``-p NAME VALUE`` or ``-p NAME=VALUE`` (the value read as YAML), ``-f params.yaml`` (a YAML
mapping of name to value), and ``--list-params NOTEBOOK`` prints each parameter with its default,
its comment and its rule, as papermill's ``--help-notebook`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

RUN_EPILOG = """\
examples:
  python -m robust_utils run --profile smoke
  python -m robust_utils run --notebooks 02_hr_loss -p epochs 3 -p eps_grid [0.1,0.2]
  python -m robust_utils run --notebooks 02_hr_loss -p epochs=3 -f my_params.yaml
  python -m robust_utils run --profile paper -p device=cuda --dry-run
  python -m robust_utils run --list-params 02_hr_loss

Profiles are the files notebooks/params/<profile>.yaml (a name, never a path):
  defaults:           # given to every notebook whose parameters cell has the name
    threads: 2
  notebooks:          # the notebooks of the profile and their parameters
    02_hr_loss:
      n_train: 1000

Everything is checked before any kernel starts: the profile, the notebook names, that every
parameter exists in the notebook's `parameters`-tagged cell, that each value has the type of the
notebook's default (an int is fine for a float) and keeps its rule (notebooks/params/schema.yaml:
epochs >= 1, 0 <= eps <= 1 for Linf budgets, known devices, finite numbers, ...), that the data
files the notebooks read are present and intact (else: the files and `python -m robust_utils
download NAME`), and that the figures and cache folders can be written. Notebooks run in numbered
order; each section's heading is shown with the elapsed time and the last run's time. Outputs go
to $ROBUST_UTILS_FIGURES/<profile>/<notebook>/ (default: figures/) with a status.json; a
notebook's previous outputs move to <profile>/.previous/ while it runs. SUMMARY.md there collects
every notebook's state, claims per verdict and results. Ctrl-C stops safely and prints the
command that resumes.

exit status: 0 all notebooks ran (or dry run), 1 a notebook failed, 2 invalid input (nothing ran),
130 interrupted.
"""


class ParamAction(argparse.Action):
    """``-p NAME VALUE`` or ``-p NAME=VALUE``: appends (NAME, VALUE) or "NAME=VALUE" to the list."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest) or [])
        if len(values) == 1 and "=" in values[0]:
            items.append(values[0])
        elif len(values) == 2:
            items.append((values[0], values[1]))
        else:
            parser.error(f"{option_string} {' '.join(values)}: expected NAME VALUE or NAME=VALUE")
        setattr(namespace, self.dest, items)


def list_params(notebook: str, notebooks_dir: str | None = None) -> str:
    """The text ``--list-params`` prints: each parameter, its default, comment and rule.

    Raises:
        RunnerError: no such notebook, or no parameters cell.
    """
    from .inputs import RunnerError
    from .paramtypes import notebook_parameters
    from .profiles import notebook_stem, notebooks_folder
    from .rules import describe, load_schema

    stem = notebook_stem(notebook)
    path = notebooks_folder(notebooks_dir) / f"{stem}.ipynb"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.ipynb"))
        raise RunnerError(f"no notebook {path}; notebooks: {', '.join(found) or '(none)'}")
    try:
        params = notebook_parameters(path)
    except (ValueError, SyntaxError) as exc:
        raise RunnerError(f"{path}: {exc}") from None
    schema = load_schema(path.parent)
    width = max((len(n) for n in params), default=0)
    lines = [f"Parameters of {stem} (defaults: the classroom profile; set with -p NAME VALUE or -f FILE):"]
    for name, info in params.items():
        rule = describe(schema.rule(stem, name))
        extra = "  # " + info["help"] if info.get("help") else ""
        lines.append(f"  {name:<{width}} = {info['default']}{extra}" + (f"  [rule: {rule}]" if rule else ""))
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """The handler of ``run``: 0 ok, 1 a notebook failed, 2 invalid input, 130 interrupted."""
    from .execute import INTERRUPTED_EXIT, run
    from .inputs import RunnerError

    try:
        if args.list_params:
            print(list_params(args.list_params, args.notebooks_dir))
            return 0
        if args.checkpoints_from_any_device:  # the kernels inherit it; core.store.any_device_allowed reads it
            os.environ["ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE"] = "1"
        return run(profile=args.profile, notebooks=args.notebooks, overrides=args.params, dry_run=args.dry_run,
                   notebooks_dir=args.notebooks_dir, figures_dir=args.figures_dir,
                   parameter_files=args.parameter_files, show_output=args.log_output)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # between notebooks' bookkeeping: nothing is half-written (atomic writes)
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


def add_run(sub: Any) -> None:
    """Add the ``run`` subparser to argparse's subparsers ``sub``."""
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
    p.add_argument("-p", "--parameters", "--param", dest="params", nargs="+", action=ParamAction, default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a parameter in every selected notebook that has it: -p NAME VALUE or -p NAME=VALUE; "
                        "the value is read as YAML (3, 0.5, [0.1,0.2], cpu, true, null); repeatable")
    p.add_argument("-f", "--parameters-file", dest="parameter_files", action="append", default=[], metavar="FILE",
                   help="a YAML file of NAME: VALUE lines (papermill's -f), applied before -p; repeatable")
    p.add_argument("--list-params", metavar="NOTEBOOK",
                   help="print the notebook's parameters with their defaults, comments and rules, and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print each notebook's parameters and output folder; execute nothing")
    p.add_argument("--log-output", action="store_true",
                   help="also show what the notebooks print (tables); progress bars and warnings are always shown")
    p.add_argument("--checkpoints-from-any-device", action="store_true",
                   help="load a checkpoint trained on another device type (e.g. the paper profile's CUDA checkpoints "
                        "on a CPU) instead of training; results.json records it (sets "
                        "ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE=1)")
    p.add_argument("--notebooks-dir", metavar="DIR",
                   help="the folder of the notebooks and their params/ (default: the repository's notebooks/)")
    p.add_argument("--figures-dir", metavar="DIR",
                   help="the figures root (default: $ROBUST_UTILS_FIGURES, else the repository's figures/)")
    p.set_defaults(func=cmd_run)


__all__ = ["ParamAction", "RUN_EPILOG", "add_run", "cmd_run", "list_params"]
