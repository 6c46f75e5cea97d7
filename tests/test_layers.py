"""The library's layers (DESIGN.md): the import-linter contract holds, no module imports a private
name of another, and the modules and functions stay small enough to read."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robust_utils.core.paths import project_root

PACKAGE = project_root() / "robust_utils"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # the body, docstring excluded


def _lint(cwd: Path, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(env_path or cwd), "HOME": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_the_layer_contract_holds():
    result = _lint(project_root())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_contract_catches_an_upward_import(tmp_path):
    """The same contract on a toy package whose core imports its app must fail (the check can fail)."""
    pkg = tmp_path / "toy"
    for layer in ("app", "methods", "evaluation", "training", "attacks", "nn", "core"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "app" / "cli.py").write_text("X = 1\n")
    (pkg / "core" / "data.py").write_text("from toy.app.cli import X\n")
    contract = (project_root() / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    (tmp_path / "pyproject.toml").write_text("[tool.importlinter]" + contract.replace('"robust_utils', '"toy'))
    result = _lint(tmp_path)
    assert result.returncode != 0 and "toy.core.data -> toy.app.cli" in result.stdout, result.stdout


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _private_imports(path: Path) -> list[str]:
    """Names starting with '_' imported from another module, or private attributes of an imported module."""
    tree = ast.parse(path.read_text())
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") or (alias.asname or "").startswith("_"):
                    found.append(f"from {'.' * node.level}{node.module or ''} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_imports_a_private_name_of_another():
    bad = {str(p.relative_to(PACKAGE)): names for p in _modules() if (names := _private_imports(p))}
    assert not bad, bad


def test_the_private_name_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""\
        from .runner import _error_line
        from . import attacks
        attacks._grad
        """))
    assert _private_imports(probe) == ["from .runner import _error_line", "attacks._grad"]


def _body_lines(node: ast.AST) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_readable(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split the module along its seams"
    long = {n.name: _body_lines(n) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(n) > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
