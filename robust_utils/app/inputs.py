"""The runner's inputs, read strictly: the error it raises for bad input (exit status 2) and the YAML of
profiles, the parameter schema, ``-f`` files and ``-p`` values.

Infrastructure, not from a paper. Every file is read as UTF-8; a mapping with a key given twice is
refused (plain PyYAML silently keeps the last value); YAML tags never construct Python objects
(a SafeLoader); ``1e-3`` reads as a float (plain PyYAML reads it as a string). Each error is a
:class:`YamlInputError` naming the file and the line, so the command line can exit 2 with it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml


class RunnerError(ValueError):
    """An input the runner refuses (a profile, notebook, parameter, value, data file or folder), raised
    before any kernel starts; the command line prints it and exits 2."""


class YamlInputError(RunnerError):
    """A YAML input the runner refuses: not UTF-8, not valid YAML, a duplicate key, or not a file.
    The message names the file (or the ``-p`` item) and the line."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate mapping keys and reads ``1e-3`` as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let SafeLoader report it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f", line {mark.line + 1}" if mark is not None else ""


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    text = " ".join(str(p) for p in (context, problem) if p) or str(exc).splitlines()[0]
    return text


def loads(text: str, source: str) -> Any:
    """Parse YAML text strictly.

    Args:
        text: the YAML text.   source: how to name it in errors (a path, or "-p epochs=...").
    Returns:
        The parsed value (dict, list, str, int, float, bool or None).
    Raises:
        YamlInputError: invalid YAML or a duplicate key; the message is "<source>, line N: <problem>".
    """
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise YamlInputError(f"{source}{_where(exc)}: {_problem(exc)}") from None


def load_file(path: str | os.PathLike) -> Any:
    """Read a YAML file strictly: UTF-8 only, duplicate keys refused, errors name the file and line.

    Args:
        path: the file.
    Returns:
        The parsed value (None for an empty file).
    Raises:
        YamlInputError: not a regular file, unreadable, not UTF-8, invalid YAML or a duplicate key.
    """
    path = Path(path)
    if not path.is_file():
        raise YamlInputError(f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlInputError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                             "save the file as UTF-8") from None
    return loads(text.removeprefix("\ufeff"), str(path))


__all__ = ["RunnerError", "StrictLoader", "YamlInputError", "load_file", "loads"]
