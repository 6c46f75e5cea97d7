"""Profiles and notebook parameters: what ``python -m robust_utils run`` validates before any kernel starts.

Infrastructure, not from a paper. A *profile* (smoke, classroom, paper) is the file
``notebooks/params/<profile>.yaml``::

    defaults:            # optional: given to every notebook whose parameters cell has the name
      threads: 2
    notebooks:           # the notebooks that belong to the profile, with their parameters
      02_hr_loss:
        n_train: 1000

Everything is validated before anything runs: the profile (a name of a file in params/, never a
path; strict YAML: UTF-8, no duplicate keys), the notebook names, every parameter name (it must be
in the notebook's ``parameters``-tagged cell), every value's type (compared with the annotation or
the literal default in that cell) and every value's rule (``params/schema.yaml``, :mod:`.rules`).
Each notebook then executes into ``figures/<profile>/<stem>/<stem>.ipynb``, where it also writes
its figures and ``results.json``; ``figures/<profile>/SUMMARY.md`` gathers all the results.json files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core import paths
from .inputs import RunnerError, YamlInputError, load_file, loads
from .paramtypes import expected_types, literal_default, notebook_parameters, type_name, type_ok
from .rules import SCHEMA_FILE, Schema, check_parameters, check_values, load_schema

DEFAULT_PROFILE = "classroom"
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


# --------------------------------------------------------------------------- profiles


def notebooks_folder(notebooks_dir: str | os.PathLike | None = None) -> Path:
    """The notebooks folder: ``notebooks_dir``, else the repository's notebooks/."""
    return Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()


def notebook_stem(name: str) -> str:
    """'02_hr_loss', '02_hr_loss.ipynb' or 'notebooks/02_hr_loss.ipynb' -> '02_hr_loss'."""
    name = Path(str(name).strip()).name
    return name[: -len(".ipynb")] if name.endswith(".ipynb") else name


def list_profiles(notebooks_dir: str | os.PathLike | None = None) -> list[str]:
    """The available profiles: the stems of the regular files ``<notebooks_dir>/params/*.yaml``, sorted.

    The parameter schema (params/schema.yaml) and folders named ``*.yaml`` are not profiles.

    Args:
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        Profile names, e.g. ["classroom", "paper", "smoke"].
    """
    folder = notebooks_folder(notebooks_dir) / "params"
    return sorted(p.stem for p in folder.glob("*.yaml")
                  if p.is_file() and p.name != SCHEMA_FILE and _PROFILE_NAME.fullmatch(p.stem))


def profile_path(profile: str, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """The file of a profile given by name.

    Raises:
        RunnerError: not one of :func:`list_profiles` (a path, an unknown name); the message lists the valid ones.
    """
    valid = list_profiles(notebooks_dir)
    folder = notebooks_folder(notebooks_dir) / "params"
    if not isinstance(profile, str) or profile not in valid:
        hint = " (a profile is a name, not a path)" if isinstance(profile, str) and re.search(r"[/\\.]", profile) else ""
        raise RunnerError(f"unknown profile {profile!r}{hint}; valid profiles: {', '.join(valid) or '(none)'} "
                          f"(the files {folder}/<profile>.yaml)")
    return folder / f"{profile}.yaml"


def _mapping(path: Path, value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunnerError(f"{path}: {what} must be a mapping")
    return dict(value)


def load_profile(profile: str, notebooks_dir: str | os.PathLike | None = None) -> dict:
    """Read and check ``<notebooks_dir>/params/<profile>.yaml``.

    Args:
        profile: the profile name (smoke, classroom, paper).
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        {"defaults": {name: value}, "notebooks": {stem: {name: value}}}, in file order.
    Raises:
        RunnerError: unknown profile or a path (the message lists the valid ones), a file that is not
            UTF-8, not valid YAML or has a duplicate key (file and line named), or a malformed file.
    """
    path = profile_path(profile, notebooks_dir)
    data = load_file(path)
    data = _mapping(path, data, "the file (keys 'defaults' and 'notebooks')")
    extra = set(data) - {"defaults", "notebooks"}
    if extra:
        raise RunnerError(f"{path}: unknown top-level key(s) {sorted(extra)}; allowed: defaults, notebooks")
    defaults = _mapping(path, data.get("defaults"), "'defaults'")
    listed = _mapping(path, data.get("notebooks"), "'notebooks'")
    notebooks = {}
    for name, params in listed.items():
        notebooks[notebook_stem(name)] = _mapping(path, params, f"the entry of notebook {name!r}")
    if not notebooks:
        raise RunnerError(f"{path}: lists no notebooks under 'notebooks:'")
    return {"defaults": defaults, "notebooks": notebooks}


# --------------------------------------------------------------------------- overrides


def parse_overrides(items: Iterable[str | tuple[str, str]] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["epochs=3", ("lr", "0.1")]`` into {name: value}; values are read as (strict) YAML.

    Args:
        items: "NAME=VALUE" strings or (NAME, VALUE) pairs (papermill's ``-p NAME VALUE``), or an
            already parsed mapping.
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
        if isinstance(item, (tuple, list)):
            name, sep, text = str(item[0]), "=", str(item[1])
            shown = f"-p {name} {text}"
        else:
            name, sep, text = str(item).partition("=")
            shown = f"-p {item}"
        name = name.strip()
        if not sep or not name.isidentifier():
            raise RunnerError(f"{shown!r}: expected NAME=VALUE or NAME VALUE, e.g. -p epochs=3 or -p epochs 3")
        out[name] = loads(text, shown) if text.strip() else None
    return out


def load_parameters_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a papermill-style parameters file (``-f params.yaml``): a YAML mapping of name to value.

    Raises:
        RunnerError: not a file, not UTF-8, invalid YAML, a duplicate key, or not a mapping of names.
    """
    data = load_file(path)
    if not isinstance(data, dict) or not all(isinstance(k, str) and k.isidentifier() for k in data):
        raise YamlInputError(f"{path}: expected a mapping of parameter names to values, e.g. 'epochs: 3'")
    return data


# --------------------------------------------------------------------------- resolution


def _select(profile: str, listed: list[str], notebooks: Iterable[str] | None, nb_dir: Path) -> list[str]:
    selected = listed
    if notebooks is not None:
        wanted = [notebook_stem(n) for n in notebooks]
        unknown = [n for n in wanted if n not in listed]
        if unknown:
            raise RunnerError(f"unknown notebook(s) {', '.join(unknown)} for profile {profile!r}; "
                              f"the profile's notebooks: {', '.join(listed)}")
        selected = [n for n in listed if n in wanted]
    selected = sorted(selected)  # numbered order: 01_..., 02_..., whatever the profile's order
    missing = [n for n in selected if not (nb_dir / f"{n}.ipynb").is_file()]
    if missing:
        raise RunnerError(f"profile {profile!r} lists notebook(s) without a file in {nb_dir}: "
                          f"{', '.join(f'{n}.ipynb' for n in missing)}")
    return selected


def _unknown_names(spec: dict, params: dict, selected: list[str], overrides: Mapping[str, Any],
                   source: str, origin: Mapping[str, str]) -> list[str]:
    errors = []
    all_names = set().union(*params.values()) if params else set()
    for name in spec["defaults"]:
        if name not in all_names:
            errors.append(f"{source}: default {name!r} is not a parameter of any of the profile's notebooks; "
                          f"valid parameters: {', '.join(sorted(all_names)) or '(none)'}")
    selected_names = set().union(*(params[n] for n in selected)) if selected else set()
    for name in overrides:
        if name not in selected_names:
            errors.append(f"{origin.get(name, '-p')} {name}: no selected notebook has a parameter {name!r}; "
                          f"valid parameters: {', '.join(sorted(selected_names)) or '(none)'}")
    for stem in selected:
        for name in spec["notebooks"][stem]:
            if name not in params[stem]:
                errors.append(f"{source}: {stem} has no parameter {name!r}; "
                              f"valid parameters: {', '.join(params[stem]) or '(none)'}")
    return errors


def _notebook_values(stem: str, profile: str, spec: dict, info: dict, overrides: Mapping[str, Any],
                     errors: list[str]) -> dict[str, Any]:
    """The values given to one notebook (precedence: defaults < its entry < overrides), type-checked."""
    values = {k: v for k, v in spec["defaults"].items() if k in info}
    values.update({k: v for k, v in spec["notebooks"][stem].items() if k in info})
    values.update({k: v for k, v in overrides.items() if k in info})
    if "profile" in info:
        if values.get("profile", profile) != profile:
            errors.append(f"{stem}: parameter 'profile' is {values['profile']!r} but the profile being run "
                          f"is {profile!r} (the outputs would land in the wrong folder)")
        values = {"profile": profile, **values}
    for name, value in values.items():
        expected = expected_types(info[name])
        if not type_ok(value, expected):
            errors.append(f"{stem}: parameter {name!r} expects {' or '.join(sorted(expected))} "
                          f"(notebook default: {info[name]['default']}), got {type_name(value)} {value!r}")
    return values


def _literal_defaults(info: Mapping[str, dict]) -> dict[str, Any]:
    """{name: default} of the parameters whose default is a Python literal."""
    out = {}
    for name, entry in info.items():
        try:
            out[name] = literal_default(entry)
        except ValueError:
            pass
    return out


def _rule_errors(stem: str, values: dict, info: dict, schema: Schema) -> list[str]:
    """Rule violations of the values a notebook runs with (its literal defaults, then ``values``)."""
    full = {**_literal_defaults(info), **values}
    bad_types = {n for n, v in values.items() if not type_ok(v, expected_types(info[n]))}
    return check_values(stem, {k: v for k, v in full.items() if k not in bad_types}, schema)


def resolve_parameters(
    profile: str = DEFAULT_PROFILE,
    notebooks: Iterable[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    parameter_files: Iterable[str | os.PathLike] = (),
) -> dict[str, dict[str, Any]]:
    """Validate a run and compute the parameters given to each notebook.

    Precedence, lowest first: the profile's ``defaults`` (for notebooks that have the name),
    the notebook's entry in the profile, the ``-f`` files in order, the overrides. A notebook with
    a ``profile`` parameter always gets the profile's name there, so its outputs land in figures/<profile>/.

    Args:
        profile: the profile name.
        notebooks: stems (or file names) to run, a subset of the profile's; None runs them all.
        overrides: "name=value" strings, (name, value) pairs or a {name: value} mapping, applied to
            every selected notebook that has the parameter.
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
        parameter_files: YAML files of {name: value} (papermill's ``-f``), applied before the overrides.
    Returns:
        {stem: {name: value}} in the notebooks' numbered (sorted) order.
    Raises:
        RunnerError: unknown profile, notebook or parameter, a value of the wrong type or outside its
            rule (params/schema.yaml), or a missing notebook file; the message lists every problem found.
    """
    nb_dir = notebooks_folder(notebooks_dir)
    spec = load_profile(profile, nb_dir)
    schema = load_schema(nb_dir)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in parameter_files:
        values = load_parameters_file(path)
        merged.update(values)
        origin.update({k: f"-f {path}:" for k in values})
    cli = parse_overrides(overrides)
    merged.update(cli)
    origin.update({k: "-p" for k in cli})
    merged = {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}

    listed = list(spec["notebooks"])
    selected = _select(profile, listed, notebooks, nb_dir)
    params = {n: notebook_parameters(nb_dir / f"{n}.ipynb") for n in listed if (nb_dir / f"{n}.ipynb").is_file()}
    errors = _unknown_names(spec, params, selected, merged, f"params/{profile}.yaml", origin)
    resolved: dict[str, dict[str, Any]] = {}
    for stem in selected:
        resolved[stem] = _notebook_values(stem, profile, spec, params[stem], merged, errors)
        errors += _rule_errors(stem, resolved[stem], params[stem], schema)
    if errors:
        raise RunnerError("invalid run:\n  " + "\n  ".join(errors))
    return resolved


def with_defaults(notebook: str, values: Mapping[str, Any], notebooks_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A notebook's literal parameter defaults (its parameters cell), then ``values`` over them.

    Args:
        notebook: the stem.   values: e.g. its entry of :func:`resolve_parameters`.
    Returns:
        {name: value}; a default that is not a literal is left out.
    """
    path = notebooks_folder(notebooks_dir) / f"{notebook_stem(notebook)}.ipynb"
    return {**_literal_defaults(notebook_parameters(path)), **values}


def notebook_values(notebook: str, profile: str = DEFAULT_PROFILE,
                    notebooks_dir: str | os.PathLike | None = None,
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every parameter a notebook runs with at ``profile``: its parameters cell's defaults, then the
    profile's values, then ``overrides`` (checked like ``-p`` overrides: names and rules).

    Notebook 06 configures the recipes of notebooks 01-05 with this, so it trains (or loads) the
    very models those notebooks trained at the same profile (or, with overrides, says which others).

    Args:
        notebook: the notebook's stem, e.g. "02_hr_loss".   profile: the profile name.
        overrides: {name: value} for this notebook, e.g. {"epochs": 2}.
    Returns:
        {name: value}.
    Raises:
        RunnerError: unknown profile, notebook or override name, a value outside its rule, or a
            parameter default that is not a literal.
    """
    resolved = resolve_parameters(profile, [notebook], overrides=dict(overrides or {}),
                                  notebooks_dir=notebooks_dir)[notebook_stem(notebook)]
    path = notebooks_folder(notebooks_dir) / f"{notebook_stem(notebook)}.ipynb"
    try:
        defaults = {k: literal_default(v) for k, v in notebook_parameters(path).items()}
    except ValueError as exc:
        raise RunnerError(f"{path}: {exc}") from exc
    return {**defaults, **resolved}


def source_values(notebooks: Iterable[str], profile: str = DEFAULT_PROFILE,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """{stem: notebook_values(stem, profile, overrides=overrides[stem])} for several notebooks.

    Raises:
        RunnerError: an override for a notebook not in ``notebooks`` (the message lists the valid
            ones), or any error of :func:`notebook_values`.
    """
    stems = [notebook_stem(nb) for nb in notebooks]
    overrides = dict(overrides or {})
    unknown = sorted(set(map(str, overrides)) - set(stems))
    if unknown:
        raise RunnerError(f"overrides for unknown notebook(s) {unknown}; valid: {', '.join(stems)}")
    return {nb: notebook_values(nb, profile, notebooks_dir, overrides.get(nb)) for nb in stems}


__all__ = ["DEFAULT_PROFILE", "RunnerError", "check_parameters", "list_profiles", "load_parameters_file", "load_profile",
           "notebook_parameters", "notebook_stem", "notebook_values", "notebooks_folder", "parse_overrides",
           "profile_path", "resolve_parameters", "source_values", "with_defaults"]
