"""The install files agree, torch is pinned exactly, and robust_utils never imports torchvision."""

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["test"])


def test_environment_yml_has_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in env["dependencies"]
    assert {p for p in pip_section if not p.startswith("-e")} == _pyproject_pins()


def test_every_dependency_is_pinned_exactly_and_torch_is_2_13_0():
    pins = _pyproject_pins()
    assert all("==" in p for p in pins), [p for p in pins if "==" not in p]
    assert "torch==2.13.0" in pins and "torchvision==0.28.0" in pins


def test_robust_utils_never_imports_torchvision():
    code = (
        "import importlib, pkgutil, sys, robust_utils\n"
        "for m in pkgutil.walk_packages(robust_utils.__path__, 'robust_utils.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_requires_python_is_a_tested_range_with_the_gpu_machines_3_12():
    """The classroom machines run Python 3.11 and the GPU machine of the paper runs 3.12: both are
    admitted, and the range is closed above (an untested 3.13 is refused)."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert {"3.11.9", "3.12.3"} <= {v for v in ("3.10.14", "3.11.9", "3.12.3", "3.13.0") if v in spec}
    assert "3.13.0" not in spec and "3.10.14" not in spec
