"""A notebook's ``parameters`` cell: each parameter's name, default, annotation and comment, and the
types a value given to it may have.

Infrastructure, not from a paper. The cell is read with Python's own parser (ast, and tokenize for
the comments), in the format of papermill's ``inspect_notebook``: every name the cell assigns is a
parameter. papermill's own line parser skips any line holding two ``=`` (e.g. an ``=`` inside the
comment), so :func:`unparsed_by_papermill` lists such lines for a test to ask that they be
reworded (``papermill --help-notebook`` would miss them). Neither nbformat nor papermill is
imported to read a cell: the runner's checks stay fast.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import tokenize
import warnings
from pathlib import Path
from typing import Any, Mapping

_ANNOTATIONS = {
    "int": {"int"}, "float": {"float"}, "str": {"str"}, "bool": {"bool"},
    "list": {"list"}, "sequence": {"list", "tuple"}, "tuple": {"tuple"},
    "dict": {"dict"}, "mapping": {"dict"}, "none": {"None"}, "nonetype": {"None"},
}


def parameters_cell(path: str | os.PathLike) -> str:
    """The source of the notebook's ``parameters``-tagged cell (the .ipynb read as JSON).

    Raises:
        OSError: the file cannot be read.   ValueError: not a notebook, or no parameters cell.
    """
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a notebook ({exc})") from None
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and "parameters" in (cell.get("metadata") or {}).get("tags", []):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else str(source)
    raise ValueError(f"{path} has no cell tagged 'parameters'")


def _comments(source: str) -> dict[int, str]:
    """{line number: comment text without '#'} of the source's comments."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _assignments(source: str) -> dict[str, dict]:
    """Every name the cell assigns, in papermill's format, from Python's parser."""
    tree, comments, out = ast.parse(source), _comments(source), {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, annotation = node.targets, None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, annotation = [node.target], ast.get_source_segment(source, node.annotation)
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in out:
                out[target.id] = {"name": target.id, "inferred_type_name": annotation or "None",
                                  "default": ast.get_source_segment(source, node.value),
                                  "help": comments.get(node.end_lineno, "")}
    return out


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """The parameters of a notebook's ``parameters``-tagged cell, in the cell's order.

    Args:
        path: the .ipynb file.
    Returns:
        {name: {"name", "inferred_type_name", "default", "help"}} as papermill's inspect_notebook
        gives them: default is the source text, inferred_type_name the annotation ("None" when
        there is none), help the comment on the assignment's last line.
    Raises:
        OSError: the file cannot be read.   ValueError: not a notebook, or no parameters cell.
        SyntaxError: the cell is not valid Python.
    """
    return _assignments(parameters_cell(path))


def unparsed_by_papermill(path: str | os.PathLike) -> list[str]:
    """The names the parameters cell assigns that papermill's ``inspect_notebook`` misses."""
    import papermill

    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)  # its "Unable to parse line" warnings: the answer is the list returned
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = papermill.inspect_notebook(str(path))
    finally:
        log.setLevel(level)
    return [name for name in notebook_parameters(path) if name not in parsed]


def literal_default(info: Mapping[str, Any]) -> Any:
    """A parameter's default as a Python value.

    Raises:
        ValueError: the default is not a literal (a name or an expression).
    """
    try:
        return ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"the default of {info.get('name')!r} is not a Python literal: {info.get('default')}") from None


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "[(") - (ch in "])")
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


def expected_types(info: Mapping[str, Any]) -> set[str] | None:
    """The accepted type names of a parameter, from its annotation or else its literal default.

    Returns:
        A set such as {"int"} or {"float", "None"}; None means anything goes (no annotation and a
        None or non-literal default).
    """
    annotation = info.get("inferred_type_name")
    if annotation and annotation != "None":  # papermill writes "None" when there is no annotation
        return _types_from_annotation(annotation)
    try:
        default = literal_default(info)
    except ValueError:
        return None
    if default is None:
        return None
    name = type(default).__name__
    return {name} if name in {"int", "float", "str", "bool", "list", "tuple", "dict"} else None


def type_ok(value: Any, expected: set[str] | None) -> bool:
    """Whether ``value`` (as read from YAML) fits ``expected`` (an int is fine for a float, a list for a tuple)."""
    if expected is None:
        return True
    if value is None:
        return "None" in expected
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool" in expected
    checks = ((int, {"int", "float"}), (float, {"float"}), (str, {"str"}), (list, {"list", "tuple"}),
              (tuple, {"tuple"}), (dict, {"dict"}))
    return any(isinstance(value, cls) and bool(expected & names) for cls, names in checks)


def type_name(value: Any) -> str:
    """'None', 'int', 'list', ... for messages."""
    return "None" if value is None else type(value).__name__


__all__ = ["expected_types", "literal_default", "notebook_parameters", "parameters_cell", "type_name", "type_ok",
           "unparsed_by_papermill"]
