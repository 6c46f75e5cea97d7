"""Profiles and notebook parameters: what ``python -m robust_utils run`` validates before any kernel starts.

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
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..core import paths

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


def notebooks_folder(notebooks_dir: str | os.PathLike | None = None) -> Path:
    """The notebooks folder: ``notebooks_dir``, else the repository's notebooks/."""
    return Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()


def notebook_stem(name: str) -> str:
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
    return sorted(p.stem for p in (notebooks_folder(notebooks_dir) / "params").glob("*.yaml"))


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
    path = notebooks_folder(notebooks_dir) / "params" / f"{profile}.yaml"
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
        notebooks[notebook_stem(name)] = dict(params)
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
    nb_dir = notebooks_folder(notebooks_dir)
    spec = load_profile(profile, nb_dir)
    listed = list(spec["notebooks"])
    overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in parse_overrides(overrides).items()}

    selected = listed
    if notebooks is not None:
        wanted = [notebook_stem(n) for n in notebooks]
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



def notebook_values(notebook: str, profile: str = DEFAULT_PROFILE,
                    notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Every parameter a notebook runs with at ``profile``: its parameters cell's defaults, then the profile's values.

    Notebook 06 configures the recipes of notebooks 01-05 with this, so it trains (or loads) the
    very models those notebooks trained at the same profile.

    Args:
        notebook: the notebook's stem, e.g. "02_hr_loss".   profile: the profile name.
    Returns:
        {name: value}.
    Raises:
        RunnerError: unknown profile or notebook, or a parameter default that is not a literal.
    """
    resolved = resolve_parameters(profile, [notebook], notebooks_dir=notebooks_dir)[notebook_stem(notebook)]
    path = notebooks_folder(notebooks_dir) / f"{notebook_stem(notebook)}.ipynb"
    try:
        defaults = {k: ast.literal_eval(v["default"]) for k, v in notebook_parameters(path).items()}
    except (ValueError, SyntaxError) as exc:
        raise RunnerError(f"{path}: a parameter default is not a Python literal ({exc})") from exc
    return {**defaults, **resolved}


__all__ = ["DEFAULT_PROFILE", "RunnerError", "list_profiles", "load_profile", "parse_overrides", "notebook_parameters", "notebook_values",
           "resolve_parameters", "notebooks_folder", "notebook_stem"]
