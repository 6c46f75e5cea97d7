"""Batch regeneration of the notebooks with papermill (``python -m robust_utils run``).

A *profile* (smoke, classroom, paper) is the file ``notebooks/params/<profile>.yaml``::

    defaults:            # optional: given to every notebook whose parameters cell has the name
      threads: 2
    notebooks:           # the notebooks that belong to the profile, with their parameters
      02_hr_loss:
        n_train: 1000

Everything is validated before anything runs: the profile, the notebook names, every
parameter name (it must be in the notebook's ``parameters``-tagged cell) and every value's type
(compared with the annotation or the literal default in that cell). Each notebook then executes
into ``figures/<profile>/<stem>/<stem>.ipynb``, where it also writes its figures and
``results.json``; ``figures/<profile>/SUMMARY.md`` gathers all the results.json files.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from . import paths
from .cache import atomic_write_bytes

__all__ = [
    "RunnerError", "list_profiles", "load_profile", "parse_overrides", "notebook_parameters",
    "resolve_parameters", "run", "write_summary", "read_results", "format_value",
]

DEFAULT_PROFILE = "classroom"


class RunnerError(ValueError):
    """A profile, notebook name, parameter or value the runner refuses (raised before any run)."""


# --------------------------------------------------------------------------- YAML values


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads ``1e-3`` as a float (plain PyYAML reads it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# --------------------------------------------------------------------------- profiles


def _nb_dir(notebooks_dir: str | os.PathLike | None) -> Path:
    return Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()


def _stem(name: str) -> str:
    """'02_hr_loss', '02_hr_loss.ipynb' or 'notebooks/02_hr_loss.ipynb' -> '02_hr_loss'."""
    name = Path(str(name).strip()).name
    return name[: -len(".ipynb")] if name.endswith(".ipynb") else name


def list_profiles(notebooks_dir: str | os.PathLike | None = None) -> list[str]:
    """The available profiles: the stems of ``<notebooks_dir>/params/*.yaml``, sorted.

    Args:
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        Profile names, e.g. ["classroom", "paper", "smoke"].
    """
    return sorted(p.stem for p in (_nb_dir(notebooks_dir) / "params").glob("*.yaml"))


def load_profile(profile: str, notebooks_dir: str | os.PathLike | None = None) -> dict:
    """Read and check ``<notebooks_dir>/params/<profile>.yaml``.

    Args:
        profile: the profile name (smoke, classroom, paper).
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        {"defaults": {name: value}, "notebooks": {stem: {name: value}}}, in file order.
    Raises:
        RunnerError: unknown profile (the message lists the valid ones) or a malformed file.
    """
    path = _nb_dir(notebooks_dir) / "params" / f"{profile}.yaml"
    if not path.is_file():
        valid = ", ".join(list_profiles(notebooks_dir)) or "(none)"
        raise RunnerError(f"unknown profile {profile!r}; valid profiles: {valid} (files in {path.parent})")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RunnerError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RunnerError(f"{path}: expected a mapping with keys 'defaults' and 'notebooks'")
    extra = set(data) - {"defaults", "notebooks"}
    if extra:
        raise RunnerError(f"{path}: unknown top-level key(s) {sorted(extra)}; allowed: defaults, notebooks")
    defaults = data.get("defaults") or {}
    listed = data.get("notebooks") or {}
    if not isinstance(defaults, dict) or not isinstance(listed, dict):
        raise RunnerError(f"{path}: 'defaults' and 'notebooks' must be mappings")
    notebooks = {}
    for name, params in listed.items():
        params = params or {}
        if not isinstance(params, dict):
            raise RunnerError(f"{path}: the entry of notebook {name!r} must be a mapping of parameters")
        notebooks[_stem(name)] = dict(params)
    if not notebooks:
        raise RunnerError(f"{path}: lists no notebooks under 'notebooks:'")
    return {"defaults": dict(defaults), "notebooks": notebooks}


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["epochs=3", "eps_grid=[0.1,0.2]"]`` into {name: value}; values are read as YAML.

    Args:
        items: "name=value" strings (as given to ``-p``), or an already parsed mapping.
    Returns:
        {name: value}; a later item overrides an earlier one with the same name.
    Raises:
        RunnerError: an item without "=" or with an invalid name or value.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        name, sep, text = str(item).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise RunnerError(f"-p {item!r}: expected NAME=VALUE, e.g. -p epochs=3")
        try:
            out[name] = _yaml_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise RunnerError(f"-p {item!r}: the value is not valid YAML: {exc}") from exc
    return out


# --------------------------------------------------------------------------- parameters and types


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """The parameters of a notebook's ``parameters``-tagged cell, via papermill.inspect_notebook.

    Args:
        path: the .ipynb file.
    Returns:
        {name: {"name", "inferred_type_name", "default", "help"}} (default is the source text).
    """
    import papermill

    return dict(papermill.inspect_notebook(str(path)))


_ANNOTATIONS = {
    "int": {"int"}, "float": {"float"}, "str": {"str"}, "bool": {"bool"},
    "list": {"list"}, "sequence": {"list", "tuple"}, "tuple": {"tuple"},
    "dict": {"dict"}, "mapping": {"dict"}, "none": {"None"}, "nonetype": {"None"},
}


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _types_from_annotation(text: str) -> set[str] | None:
    """'Optional[int]' -> {'int', 'None'}; None means "accept anything"."""
    text = text.strip()
    if "|" in text:
        alternatives = _split_top(text, "|")
    else:
        head, _, inner = text.partition("[")
        head = head.split(".")[-1].lower()
        if head == "optional":
            alternatives = [inner[:-1], "None"]
        elif head == "union":
            alternatives = _split_top(inner[:-1], ",")
        else:
            return set(_ANNOTATIONS[head]) if head in _ANNOTATIONS else None
        if len(alternatives) < 2:
            return _types_from_annotation(alternatives[0])
    out: set[str] = set()
    for alt in alternatives:
        types = _types_from_annotation(alt)
        if types is None:
            return None
        out |= types
    return out


def _expected_types(info: Mapping[str, Any]) -> set[str] | None:
    """The accepted type names of a parameter, from its annotation or else its literal default.

    None means anything goes (no annotation and a None or non-literal default).
    """
    annotation = info.get("inferred_type_name")
    if annotation and annotation != "None":  # papermill writes "None" when there is no annotation
        return _types_from_annotation(annotation)
    try:
        default = ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if default is None:
        return None
    name = type(default).__name__
    return {name} if name in {"int", "float", "str", "bool", "list", "tuple", "dict"} else None


def _type_ok(value: Any, expected: set[str] | None) -> bool:
    if expected is None:
        return True
    if value is None:
        return "None" in expected
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool" in expected
    if isinstance(value, int):
        return bool(expected & {"int", "float"})
    if isinstance(value, float):
        return "float" in expected
    if isinstance(value, str):
        return "str" in expected
    if isinstance(value, list):
        return bool(expected & {"list", "tuple"})  # YAML has no tuples
    if isinstance(value, tuple):
        return "tuple" in expected
    if isinstance(value, dict):
        return "dict" in expected
    return False


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def resolve_parameters(
    profile: str = DEFAULT_PROFILE,
    notebooks: Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, Any]]:
    """Validate a run and compute the parameters given to each notebook.

    Precedence, lowest first: the profile's ``defaults`` (for notebooks that have the name),
    the notebook's entry in the profile, the overrides. A notebook with a ``profile`` parameter
    always gets the profile's name there, so its outputs land in figures/<profile>/.

    Args:
        profile: the profile name.
        notebooks: stems (or file names) to run, a subset of the profile's; None runs them all.
        overrides: "name=value" strings or a {name: value} mapping, applied to every selected
            notebook that has the parameter.
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        {stem: {name: value}} in the profile's order.
    Raises:
        RunnerError: unknown profile, notebook or parameter, a value of the wrong type, or a
            missing notebook file; the message lists every problem found and the valid choices.
    """
    nb_dir = _nb_dir(notebooks_dir)
    spec = load_profile(profile, nb_dir)
    listed = list(spec["notebooks"])
    overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in parse_overrides(overrides).items()}

    selected = listed
    if notebooks is not None:
        wanted = [_stem(n) for n in notebooks]
        unknown = [n for n in wanted if n not in listed]
        if unknown:
            raise RunnerError(f"unknown notebook(s) {', '.join(unknown)} for profile {profile!r}; "
                              f"the profile's notebooks: {', '.join(listed)}")
        selected = [n for n in listed if n in wanted]

    missing = [n for n in selected if not (nb_dir / f"{n}.ipynb").is_file()]
    if missing:
        raise RunnerError(f"profile {profile!r} lists notebook(s) without a file in {nb_dir}: "
                          f"{', '.join(f'{n}.ipynb' for n in missing)}")

    # Parameters of every profile notebook that exists (defaults are checked against all of them).
    params = {n: notebook_parameters(nb_dir / f"{n}.ipynb") for n in listed if (nb_dir / f"{n}.ipynb").is_file()}
    source = f"params/{profile}.yaml"
    errors: list[str] = []

    all_names = set().union(*(params[n] for n in params)) if params else set()
    for name in spec["defaults"]:
        if name not in all_names:
            errors.append(f"{source}: default {name!r} is not a parameter of any of the profile's notebooks; "
                          f"valid parameters: {', '.join(sorted(all_names)) or '(none)'}")
    selected_names = set().union(*(params[n] for n in selected)) if selected else set()
    for name in overrides:
        if name not in selected_names:
            errors.append(f"-p {name}: no selected notebook has a parameter {name!r}; "
                          f"valid parameters: {', '.join(sorted(selected_names)) or '(none)'}")

    resolved: dict[str, dict[str, Any]] = {}
    for stem in selected:
        info = params[stem]
        valid = ", ".join(info) or "(none)"
        for name in spec["notebooks"][stem]:
            if name not in info:
                errors.append(f"{source}: {stem} has no parameter {name!r}; valid parameters: {valid}")
        values = {k: v for k, v in spec["defaults"].items() if k in info}
        values.update({k: v for k, v in spec["notebooks"][stem].items() if k in info})
        values.update({k: v for k, v in overrides.items() if k in info})
        if "profile" in info:
            if values.get("profile", profile) != profile:
                errors.append(f"{stem}: parameter 'profile' is {values['profile']!r} but the profile being run "
                              f"is {profile!r} (the outputs would land in the wrong folder)")
            values = {"profile": profile, **values}
        for name, value in values.items():
            expected = _expected_types(info[name])
            if not _type_ok(value, expected):
                errors.append(f"{stem}: parameter {name!r} expects {' or '.join(sorted(expected))} "
                              f"(notebook default: {info[name]['default']}), got {_type_name(value)} {value!r}")
        resolved[stem] = values
    if errors:
        raise RunnerError("invalid run:\n  " + "\n  ".join(errors))
    return resolved


# --------------------------------------------------------------------------- running

def _display(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def _error_line(exc: BaseException) -> str:
    """'<exception type>: <first line of its message>' (the notebook's own error for papermill's)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is None:
        ename, evalue = type(exc).__name__, str(exc)
    first = next((line.strip() for line in str(evalue).splitlines() if line.strip()), "")
    return f"{ename}: {first}" if first else ename


def run(
    profile: str = DEFAULT_PROFILE,
    notebooks: Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    dry_run: bool = False,
    notebooks_dir: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
) -> int:
    """Validate, then execute a profile's notebooks with papermill and write SUMMARY.md.

    Each notebook runs (cwd: the notebooks folder, kernel python3) into
    ``<figures>/<profile>/<stem>/<stem>.ipynb``; the kernel sees ROBUST_UTILS_FIGURES set to the
    figures root, so the notebook's figures and results.json land in the same folder. A failing
    notebook is reported and the others still run.

    Args:
        profile, notebooks, overrides, notebooks_dir: as for :func:`resolve_parameters`.
        dry_run: only print each notebook's parameters and output folder; execute nothing.
        figures_dir: the figures root (default: paths.figures_root(), i.e. $ROBUST_UTILS_FIGURES
            or <repo>/figures).
        log: called with each progress line.
    Returns:
        The exit code: 0 when every notebook ran (or a dry run), 1 when any failed.
    Raises:
        RunnerError: from the validation, before anything runs.
    """
    resolved = resolve_parameters(profile, notebooks, overrides, notebooks_dir)
    nb_dir = _nb_dir(notebooks_dir).absolute()
    root = Path(figures_dir if figures_dir is not None else paths.figures_root()).absolute()
    profile_dir = root / profile
    total = len(resolved)

    if dry_run:
        log(f"profile {profile}: {total} notebook(s), dry run (nothing is executed)")
        for i, (stem, values) in enumerate(resolved.items(), 1):
            log(f"[{i}/{total}] {stem} -> {_display(profile_dir / stem)}/")
            for name, value in values.items():
                log(f"      {name} = {value!r}")
            if not values:
                log("      (no parameters: the notebook's defaults)")
        return 0

    import papermill

    log(f"profile {profile}: running {total} notebook(s) -> {_display(profile_dir)}/")
    failures: dict[str, str] = {}
    saved_env = {k: os.environ.get(k) for k in paths.PATH_VARIABLES}
    os.environ["ROBUST_UTILS_FIGURES"] = str(root)  # the kernels inherit it
    paths.absolute_path_variables()  # kernels run in the notebooks folder: relative paths would move
    try:
        for i, (stem, values) in enumerate(resolved.items(), 1):
            out_dir = profile_dir / stem
            out_dir.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(nb_dir / f"{stem}.ipynb"), str(out_dir / f"{stem}.ipynb"),
                    parameters=values, cwd=str(nb_dir), kernel_name="python3",
                    progress_bar=False, log_output=False,
                )
            except Exception as exc:  # noqa: BLE001 - report it and run the next notebook
                failures[stem] = _error_line(exc)
                log(f"[{i}/{total}] {stem} ... FAILED ({time.perf_counter() - start:.1f} s): {failures[stem]}"
                    f" (see {_display(out_dir / f'{stem}.ipynb')})")
            else:
                log(f"[{i}/{total}] {stem} ... ok ({time.perf_counter() - start:.1f} s) -> {_display(out_dir)}/")
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    summary = write_summary(profile_dir, failures)
    log(f"summary -> {_display(summary)}" + (f"; {len(failures)} of {total} failed" if failures else ""))
    return 1 if failures else 0


# --------------------------------------------------------------------------- SUMMARY.md


def format_value(value: Any, signed: bool = False) -> str:
    """A results.json value as shown in SUMMARY.md and the HTML report.

    Args:
        value: a number, string, None, ...   signed: write floats with a sign (for differences).
    Returns:
        Floats to 3 decimals (``+0.005`` if ``signed``), None as an em dash, anything else as str().
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def _cell(value: Any, signed: bool = False) -> str:
    """A Markdown table cell: :func:`format_value`, whitespace collapsed, pipes escaped."""
    return " ".join(format_value(value, signed).replace("|", "\\|").split()) or " "


def _table(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c), signed=c == "diff") for c in columns) + " |"
              for row in rows if isinstance(row, Mapping)]
    return lines


def read_results(path: str | os.PathLike) -> dict:
    """Read one notebook's results.json.

    Args:
        path: the file, figures/<profile>/<stem>/results.json.
    Returns:
        Its JSON object (keys as written by :class:`robust_utils.results.Results`; any may be absent).
    Raises:
        OSError: the file cannot be read.   ValueError: not JSON, or not a JSON object.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _notebook_section(stem: str, path: Path, profile_dir: Path, failure: str | None) -> list[str]:
    try:
        data = read_results(path)
    except (OSError, ValueError) as exc:
        return [f"## {stem}", "", f"Could not read `{stem}/results.json`: {_error_line(exc)}", ""]
    title = data.get("title")
    lines = [f"## {stem}: {title}" if title else f"## {stem}", ""]
    if failure:
        lines += [f"> **Failed in this run** ({failure}): the results below are from an earlier run.", ""]
    if data.get("parameters"):
        lines += ["Parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in data["parameters"].items()), ""]
    for name, rows in (data.get("tables") or {}).items():
        lines += [f"### {name}", "", *_table(["cell", "paper", "ours", "diff"], rows or []), ""]
    for name, board in (data.get("leaderboards") or {}).items():
        if isinstance(board, Mapping):
            lines += [f"### {name}", "", *_table(list(board.get("columns") or []), board.get("rows") or []), ""]
    if data.get("values"):
        values = [{"name": k, "value": v} for k, v in data["values"].items()]
        lines += ["### Other values", "", *_table(["name", "value"], values), ""]
    if data.get("claims"):
        lines += ["### Claims", "", *_table(["claim", "verdict", "evidence"], data["claims"]), ""]
    if data.get("figures"):
        lines += ["### Figures", ""]
        for fig in data["figures"]:
            fig_path = Path(fig) if Path(fig).is_absolute() else path.parent / fig
            try:
                link = fig_path.relative_to(profile_dir).as_posix()
            except ValueError:
                link = fig_path.as_posix()
            lines += [f"![{Path(fig).name}]({link.replace(' ', '%20')})", ""]
    return lines


def write_summary(profile_dir: str | os.PathLike, failures: Mapping[str, str] | None = None) -> Path:
    """Write ``<profile_dir>/SUMMARY.md`` (atomically) from every ``<profile_dir>/*/results.json``.

    Args:
        profile_dir: figures/<profile>/; its name is taken as the profile's.
        failures: {stem: error line} of the notebooks that failed in this run (listed first).
    Returns:
        The path of SUMMARY.md.
    """
    profile_dir = Path(profile_dir)
    profile_dir.mkdir(parents=True, exist_ok=True)
    failures = dict(failures or {})
    results = sorted(profile_dir.glob("*/results.json"), key=lambda p: p.parent.name)
    lines = [f"# Reproduction summary: profile `{profile_dir.name}`", "",
             "Written by `python -m robust_utils run` from every `*/results.json` in this folder. "
             "Numbers: paper = published value (— when none), ours = this run, diff = ours − paper.", ""]
    if failures:
        lines += ["## Failed in this run", ""]
        lines += [f"- `{stem}`: {_cell(error)}" for stem, error in sorted(failures.items())] + [""]
    if not results:
        lines += ["No results.json found yet.", ""]
    for path in results:
        stem = path.parent.name
        lines += _notebook_section(stem, path, profile_dir, failures.get(stem))

    return atomic_write_bytes(profile_dir / "SUMMARY.md", ("\n".join(lines).rstrip() + "\n").encode("utf-8"))
