"""Parameter rules (valid ranges, choices, list lengths) and the data each notebook reads.

Infrastructure, not from a paper. The rules are declared once, in ``notebooks/params/schema.yaml``
(beside the profiles; not a profile itself), and read by both sides: ``python -m robust_utils run``
(also ``--dry-run``) checks every selected notebook's values before any kernel starts, and each
notebook calls :func:`check_parameters` right after its parameters cell, so a value edited by
hand in Jupyter is held to the same rules. The file::

    rules:                       # for every notebook that has the parameter; * matches any text
      epochs: {min: 1}
      "n_*": {min: 1}
      device: {pattern: "auto|cpu|cuda(:[0-9]+)?"}
    notebooks:
      02_hr_loss:
        datasets: [$dataset]              # read by the notebook: the run stops if a file is missing
        optional_datasets: [$svhn_dataset]  # used when present: the run says what is missing and goes on
        rules:                            # this notebook's own rules (they replace a shared one of that name)
          eps_grid: {each: {min: 0, max: 1}, min_items: 1}

A rule has any of: ``min`` / ``max`` (inclusive), ``gt`` / ``lt`` (strict): a number or ``$name``
(another parameter's value); ``choices`` (allowed values); ``pattern`` (a regular expression the
whole string matches); ``items`` / ``min_items`` / ``max_items`` (list length); ``each`` (a rule for
every item of a list); ``finite: false`` to allow nan or inf. Every float, in a list or not, must be
finite unless its rule says ``finite: false``. A dataset entry is a dataset name ("mnist") or
``$name``, the dataset named by a parameter (none when that parameter is null or "").
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core import paths
from .inputs import RunnerError, load_file

SCHEMA_FILE = "schema.yaml"
RULE_KEYS = ("min", "max", "gt", "lt", "choices", "pattern", "items", "min_items", "max_items", "each", "finite")
NOTEBOOK_KEYS = ("rules", "datasets", "optional_datasets")
_BOUNDS = {"min": (">=", lambda v, b: v >= b), "max": ("<=", lambda v, b: v <= b),
           "gt": (">", lambda v, b: v > b), "lt": ("<", lambda v, b: v < b)}


class ParameterError(RunnerError):
    """One or more parameter values break their rules; the message lists every violation."""


@dataclass(frozen=True)
class Schema:
    """The parsed schema file: shared rules, and per notebook its rules and data.

    Attributes:
        path: the file (it may not exist: then there are no rules and no data declarations).
        shared: {name or pattern: rule}.   notebooks: {stem: {"rules", "datasets", "optional_datasets"}}.
    """

    path: Path
    shared: dict = field(default_factory=dict)
    notebooks: dict = field(default_factory=dict)

    def rule(self, stem: str, name: str) -> dict | None:
        """The rule of parameter ``name`` in notebook ``stem``: its own, else the first shared match."""
        for table in ((self.notebooks.get(stem) or {}).get("rules") or {}, self.shared):
            if name in table:
                return table[name]
            match = next((r for pat, r in table.items() if fnmatch.fnmatchcase(name, pat)), None)
            if match is not None:
                return match
        return None


# --------------------------------------------------------------------------- reading the schema


def _check_bound(where: str, key: str, bound: Any) -> None:
    ok = isinstance(bound, (int, float)) and not isinstance(bound, bool) or \
        isinstance(bound, str) and bound.startswith("$") and bound[1:].isidentifier()
    if not ok:
        raise RunnerError(f"{where}: {key} must be a number or $parameter, got {bound!r}")


def _check_rule(where: str, rule: Any) -> dict:
    if not isinstance(rule, dict):
        raise RunnerError(f"{where}: a rule must be a mapping such as {{min: 1}}, got {rule!r}")
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        raise RunnerError(f"{where}: unknown rule key(s) {unknown}; valid: {', '.join(RULE_KEYS)}")
    for key in ("min", "max", "gt", "lt"):
        if key in rule:
            _check_bound(where, key, rule[key])
    for key in ("items", "min_items", "max_items"):
        if key in rule and (not isinstance(rule[key], int) or isinstance(rule[key], bool) or rule[key] < 0):
            raise RunnerError(f"{where}: {key} must be a non-negative int, got {rule[key]!r}")
    if "choices" in rule and not (isinstance(rule["choices"], list) and rule["choices"]):
        raise RunnerError(f"{where}: choices must be a non-empty list")
    if "pattern" in rule:
        try:
            re.compile(str(rule["pattern"]))
        except re.error as exc:
            raise RunnerError(f"{where}: pattern {rule['pattern']!r} is not a regular expression ({exc})") from None
    if "each" in rule:
        _check_rule(f"{where}.each", rule["each"])
    return rule


def _check_rules(where: str, rules: Any) -> dict:
    if not isinstance(rules, dict):
        raise RunnerError(f"{where}: expected a mapping of parameter name to rule")
    return {str(name): _check_rule(f"{where}.{name}", rule) for name, rule in rules.items()}


def _check_notebook(where: str, entry: Any) -> dict:
    entry = entry or {}
    if not isinstance(entry, dict) or set(entry) - set(NOTEBOOK_KEYS):
        raise RunnerError(f"{where}: expected a mapping with keys among {', '.join(NOTEBOOK_KEYS)}")
    for key in ("datasets", "optional_datasets"):
        items = entry.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise RunnerError(f"{where}.{key}: expected a list of dataset names or $parameter names")
    return {"rules": _check_rules(f"{where}.rules", entry.get("rules") or {}),
            "datasets": list(entry.get("datasets") or []),
            "optional_datasets": list(entry.get("optional_datasets") or [])}


def schema_path(notebooks_dir: str | os.PathLike | None = None) -> Path:
    """``<notebooks>/params/schema.yaml``."""
    return Path(notebooks_dir if notebooks_dir is not None else paths.notebooks_dir()) / "params" / SCHEMA_FILE


def load_schema(notebooks_dir: str | os.PathLike | None = None) -> Schema:
    """Read and check the schema file (strict YAML: UTF-8, no duplicate keys).

    Args:
        notebooks_dir: the notebooks folder (default: the repository's notebooks/).
    Returns:
        The :class:`Schema`; an empty one when the file does not exist.
    Raises:
        RunnerError: the file is malformed (the message names the file, and the line for YAML errors).
    """
    path = schema_path(notebooks_dir)
    if not path.exists():
        return Schema(path)
    data = load_file(path) or {}
    if not isinstance(data, dict) or set(data) - {"rules", "notebooks"}:
        raise RunnerError(f"{path}: expected a mapping with keys 'rules' and 'notebooks'")
    notebooks = data.get("notebooks") or {}
    if not isinstance(notebooks, dict):
        raise RunnerError(f"{path}: 'notebooks' must be a mapping of notebook to its entry")
    return Schema(path, _check_rules(f"{path}: rules", data.get("rules") or {}),
                  {str(stem): _check_notebook(f"{path}: notebooks.{stem}", e) for stem, e in notebooks.items()})


# --------------------------------------------------------------------------- checking values


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(bound: Any, values: Mapping[str, Any]) -> tuple[Any, str]:
    """(the bound's value or None when it cannot be resolved, how to show it)."""
    if isinstance(bound, str):
        other = values.get(bound[1:])
        return (other, f"{bound[1:]} ({other!r})") if _is_number(other) else (None, bound)
    return bound, f"{bound:g}" if isinstance(bound, float) else str(bound)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or _is_number(a) and _is_number(b) and a == b


def _number_problems(value: Any, rule: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    if not _is_number(value):
        return [f"must be a number, not {type(value).__name__}"]
    out = []
    for key, (op, ok) in _BOUNDS.items():
        if key in rule:
            bound, shown = _bound(rule[key], values)
            if bound is not None and not ok(value, bound):
                out.append(f"must be {op} {shown}")
    return out


def _list_problems(value: Any, rule: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, (list, tuple)):
        return [f"must be a list, not {type(value).__name__}"]
    n, out = len(value), []
    if "items" in rule and n != rule["items"]:
        out.append(f"must have exactly {rule['items']} item(s), has {n}")
    if "min_items" in rule and n < rule["min_items"]:
        out.append(f"must have at least {rule['min_items']} item(s), has {n}")
    if "max_items" in rule and n > rule["max_items"]:
        out.append(f"must have at most {rule['max_items']} item(s), has {n}")
    for item in value if "each" in rule else []:
        out += [f"item {item!r} {p}" for p in value_problems(item, rule["each"], values)]
    return out


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def value_problems(value: Any, rule: Mapping[str, Any] | None, values: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with one value under one rule (empty when nothing is).

    Args:
        value: the parameter's value.   rule: its rule (None: only the finite-float check).
        values: every parameter of the notebook, for bounds given as ``$name``.
    Returns:
        Problem phrases such as "must be >= 1" or "item 2.0 must be <= 1".
    """
    rule, values = rule or {}, values or {}
    if _non_finite(value) and rule.get("finite") is not False:
        return ["must be a finite number" if _is_number(value) else "must hold finite numbers only"]
    out: list[str] = []
    if "choices" in rule and not any(_same(value, c) for c in rule["choices"]):
        out.append("must be one of " + ", ".join(repr(c) for c in rule["choices"]))
    if "pattern" in rule and (not isinstance(value, str) or not re.fullmatch(str(rule["pattern"]), value)):
        out.append(f"must match {rule['pattern']!r}")
    if any(k in rule for k in _BOUNDS):
        out += _number_problems(value, rule, values)
    if any(k in rule for k in ("items", "min_items", "max_items", "each")):
        out += _list_problems(value, rule, values)
    return out


def describe(rule: Mapping[str, Any] | None) -> str:
    """A rule in words, e.g. ">= 1", "each item >= 0 and <= 1; at least 1 item(s)"."""
    if not rule:
        return ""
    parts = [f"{_BOUNDS[k][0]} {str(rule[k]).removeprefix('$')}" for k in _BOUNDS if k in rule]
    words = [" and ".join(parts)] if parts else []
    if "choices" in rule:
        words.append("one of " + ", ".join(str(c) for c in rule["choices"]))
    if "pattern" in rule:
        words.append(f"matches {rule['pattern']}")
    if "each" in rule:
        words.append(f"each item {describe(rule['each'])}")
    words += [f"{label} {rule[k]} item(s)" for k, label in
              (("items", "exactly"), ("min_items", "at least"), ("max_items", "at most")) if k in rule]
    return "; ".join(words)


def check_values(stem: str, values: Mapping[str, Any], schema: Schema) -> list[str]:
    """Every rule violation among one notebook's values.

    Args:
        stem: the notebook.   values: {name: value}, every parameter it runs with.   schema: the rules.
    Returns:
        Lines "<stem>: <name> = <value>: <problem>" (empty when every value keeps its rule).
    """
    out = []
    for name, value in values.items():
        rule = schema.rule(stem, name)
        for problem in value_problems(value, rule, values):
            out.append(f"{stem}: {name} = {value!r}: {problem}")
    return out


def check_parameters(notebook: str, namespace: Mapping[str, Any],
                     notebooks_dir: str | os.PathLike | None = None) -> None:
    """The notebook side: call right after the parameters cell, ``check_parameters("02_hr_loss", globals())``.

    Args:
        notebook: the notebook's stem.   namespace: the kernel's globals (papermill's overrides included).
        notebooks_dir: where the notebook and params/schema.yaml are (default: the repository's notebooks/).
    Raises:
        ParameterError: one message listing every value that breaks its rule in schema.yaml.
    """
    from .paramtypes import notebook_parameters

    folder = Path(notebooks_dir if notebooks_dir is not None else paths.notebooks_dir())
    names = notebook_parameters(folder / f"{notebook}.ipynb")
    values = {n: namespace[n] for n in names if n in namespace}
    problems = check_values(notebook, values, load_schema(folder))
    if problems:
        raise ParameterError("parameter(s) outside their valid range (notebooks/params/schema.yaml):\n  "
                             + "\n  ".join(problems))


def datasets_needed(stem: str, values: Mapping[str, Any], schema: Schema) -> tuple[list[str], list[str]]:
    """The datasets a notebook reads with these values: (required, optional), each without repeats.

    ``$name`` entries take the parameter's value; a null, empty or non-string value names none.
    """
    entry = schema.notebooks.get(stem) or {}
    out = []
    for key in ("datasets", "optional_datasets"):
        names = []
        for item in entry.get(key, []):
            name = values.get(item[1:]) if item.startswith("$") else item
            if isinstance(name, str) and name and name not in names:
                names.append(name)
        out.append(names)
    return out[0], [n for n in out[1] if n not in out[0]]


__all__ = ["NOTEBOOK_KEYS", "ParameterError", "RULE_KEYS", "SCHEMA_FILE", "Schema", "check_parameters", "check_values",
           "datasets_needed", "describe", "load_schema", "schema_path", "value_problems"]
