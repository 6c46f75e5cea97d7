"""What a submitted solution cell may use, checked before it runs (for ``python -m robust_utils grade``).

An exercise asks the student to write one piece of a method with torch; the autograder cell then
compares it with robust_utils' implementation. A solution that imports robust_utils, or calls the
reference the autograder cell has just imported (a global name resolved at call time), would be
compared with itself; a solution that opens files, starts processes or builds code at run time is
not an answer to the exercise. :func:`check_solution` reads the cell with :mod:`ast` and
:mod:`symtable` (nothing is executed) and names the first rule broken. It is a policy for honest
mistakes and casual shortcuts, not a sandbox: Python cannot be confined from inside, so untrusted
submissions belong in a container. Teaching infrastructure, not a paper's method.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from typing import Iterable

# Top-level modules a solution may import (the exercises need torch and math; numpy and the
# standard library's functional helpers are harmless).
ALLOWED_IMPORTS = frozenset({"__future__", "collections", "dataclasses", "functools", "itertools", "math",
                             "numpy", "torch", "typing"})
# Builtins that run code, read files or reach the interpreter's state.
FORBIDDEN_NAMES = frozenset({"__import__", "__builtins__", "breakpoint", "compile", "eval", "exec", "exit",
                             "globals", "input", "locals", "open", "quit", "vars"})
# Attributes that lead out of a function to module globals, frames or every class.
FORBIDDEN_ATTRIBUTES = frozenset({"__builtins__", "__closure__", "__code__", "__dict__", "__globals__",
                                  "__import__", "__loader__", "__subclasses__", "f_back", "f_globals",
                                  "f_locals", "gi_frame", "tb_frame"})
_BUILTINS = frozenset(dir(builtins)) - FORBIDDEN_NAMES


def defined_names(source: str) -> set[str]:
    """The module-level names a cell binds (functions, classes, assignments, imports); empty if it
    does not parse."""
    try:
        table = symtable.symtable(source, "<solution>", "exec")
    except SyntaxError:
        return set()
    return {s.get_name() for s in table.get_symbols() if s.is_local() or s.is_declared_global()}


def _free_globals(table: symtable.SymbolTable) -> set[str]:
    """Names read as globals anywhere in the cell (module level included)."""
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
    for child in table.get_children():
        names |= _free_globals(child)
    return names


def _import_problem(tree: ast.AST) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            return "a relative import, which a solution may not use"
        modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                   else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for module in modules:
            if module.split(".")[0] not in ALLOWED_IMPORTS:
                return (f"it imports {module!r}, which a solution may not (allowed: "
                        f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
    return None


def check_solution(source: str, earlier: Iterable[str] = ()) -> str | None:
    """Why a solution cell may not run, or None when it may.

    Rules, in order: it parses as Python (no IPython magics or shell escapes); it imports only
    ``ALLOWED_IMPORTS``; it reaches no ``FORBIDDEN_ATTRIBUTES`` and uses no ``FORBIDDEN_NAMES``;
    every global name it reads is one it defines or imports, a builtin, or one of ``earlier``.

    Args:
        source: the solution cell's source.
        earlier: names defined by the notebook's earlier solution cells (a later exercise may call
            the student's own earlier functions, e.g. ``hr_loss`` calls ``renyi_divergence``).
    Returns:
        A sentence naming the rule broken and where, or None.
    """
    try:
        tree = ast.parse(source)
        table = symtable.symtable(source, "<solution>", "exec")
    except SyntaxError as exc:
        return f"the solution cell is not valid Python (line {exc.lineno}: {exc.msg})"
    problem = _import_problem(tree)
    if problem:
        return problem
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            return f"line {node.lineno} reaches the attribute {node.attr!r}, which a solution may not"
    free = _free_globals(table) - defined_names(source) - set(earlier)
    forbidden = sorted(free & FORBIDDEN_NAMES)
    if forbidden:
        return f"it uses {', '.join(map(repr, forbidden))}, which a solution may not"
    unknown = sorted(free - _BUILTINS)
    if unknown:
        return (f"it uses {', '.join(map(repr, unknown))} without defining or importing it in the cell "
                f"(a solution may use only its own names, allowed imports and earlier solutions' functions)")
    return None


__all__ = ["ALLOWED_IMPORTS", "FORBIDDEN_ATTRIBUTES", "FORBIDDEN_NAMES", "check_solution", "defined_names"]
