"""What the runner checks before any kernel starts: the parameter rules (each outcome of each
rule, on constructed values), the schema file, the data files the notebooks read (issue 16,
point 4) and the writability of the figures and cache folders (issue 19, point 1's runner side)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from robust_utils.app import preflight
from robust_utils.app.execute import run
from robust_utils.app.inputs import RunnerError
from robust_utils.app.rules import (ParameterError, Schema, check_parameters, check_values, datasets_needed,
                                    describe, load_schema, value_problems)
from robust_utils.core import datafiles
from robust_utils.core.paths import project_root

# ----------------------------------------------------------------------------- one rule, each outcome


@pytest.mark.parametrize("value, rule, problems", [
    (1, {"min": 1}, []), (0, {"min": 1}, ["must be >= 1"]),
    (1.0, {"max": 1}, []), (1.5, {"max": 1}, ["must be <= 1"]),
    (0.5, {"gt": 0, "lt": 1}, []), (0, {"gt": 0}, ["must be > 0"]), (1, {"lt": 1}, ["must be < 1"]),
    ("3", {"min": 1}, ["must be a number, not str"]), (True, {"min": 0}, ["must be a number, not bool"]),
    ("adam", {"choices": ["adam", "sgd"]}, []), ("tpu", {"choices": ["adam"]}, ["must be one of 'adam'"]),
    (True, {"choices": [1]}, ["must be one of 1"]), (None, {"choices": ["svhn", None]}, []),
    ("cuda:1", {"pattern": "auto|cpu|cuda(:[0-9]+)?"}, []), ("cuda:x", {"pattern": "cpu"}, ["must match 'cpu'"]),
    ([4, 8], {"items": 2}, []), ([], {"items": 2}, ["must have exactly 2 item(s), has 0"]),
    ([], {"min_items": 1}, ["must have at least 1 item(s), has 0"]),
    ([1, 2, 3], {"max_items": 2}, ["must have at most 2 item(s), has 3"]),
    (5, {"items": 2}, ["must be a list, not int"]),
    ([0.1, 0.3], {"each": {"min": 0, "max": 1}}, []),
    ([2.0], {"each": {"min": 0, "max": 1}}, ["item 2.0 must be <= 1"]),
    ([-0.1, 0.5], {"each": {"min": 0}}, ["item -0.1 must be >= 0"]),
    (float("nan"), {"gt": 0}, ["must be a finite number"]), (float("inf"), None, ["must be a finite number"]),
    ([0.1, float("nan")], {}, ["must hold finite numbers only"]),
    (float("nan"), {"finite": False}, []), (7, None, []),
])
def test_value_problems_each_outcome(value, rule, problems):
    assert value_problems(value, rule) == problems


def test_bounds_may_name_another_parameter():
    rule = {"min": 1, "max": "$n_attack"}
    assert value_problems(40, rule, {"n_attack": 40}) == []
    assert value_problems(41, rule, {"n_attack": 40}) == ["must be <= n_attack (40)"]
    assert value_problems(41, rule, {}) == []  # an unknown reference checks nothing
    assert describe(rule) == ">= 1 and <= n_attack"
    assert describe({"each": {"gt": 0}, "min_items": 1}) == "each item > 0; at least 1 item(s)"


def test_rule_lookup_order():
    schema = Schema(Path("x"), {"n_adaptive": {"max": 5}, "n_*": {"min": 1}, "*": {"min": 9}},
                    {"nb": {"rules": {"n_train": {"min": 100}}, "datasets": [], "optional_datasets": []}})
    assert schema.rule("nb", "n_train") == {"min": 100}   # the notebook's own rule replaces the shared one
    assert schema.rule("other", "n_train") == {"min": 1}  # first matching pattern in file order
    assert schema.rule("nb", "n_adaptive") == {"max": 5}  # an exact name before a pattern
    assert schema.rule("nb", "lr") == {"min": 9}
    assert check_values("nb", {"n_train": 50, "lr": 10}, schema) == ["nb: n_train = 50: must be >= 100"]


def test_datasets_needed():
    schema = Schema(Path("x"), {}, {"nb": {"rules": {}, "datasets": ["mnist", "$dataset"],
                                           "optional_datasets": ["$cifar", "$svhn", "$dataset"]}})
    assert datasets_needed("nb", {"dataset": "cifar10", "cifar": None, "svhn": "svhn"}, schema) == (
        ["mnist", "cifar10"], ["svhn"])
    assert datasets_needed("nb", {"dataset": "", "cifar": "cifar10_subset"}, schema) == (["mnist"], ["cifar10_subset"])
    assert datasets_needed("unknown", {}, schema) == ([], [])


# ----------------------------------------------------------------------------- the schema file


def _schema(tmp_path: Path, text: str) -> Path:
    (tmp_path / "params").mkdir(exist_ok=True)
    (tmp_path / "params" / "schema.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("rules:\n  epochs: {minimum: 1}\n", r"rules\.epochs: unknown rule key\(s\) \['minimum'\]"),
    ("rules:\n  epochs: {min: one}\n", r"min must be a number or \$parameter, got 'one'"),
    ("rules:\n  device: {pattern: '('}\n", r"pattern '\(' is not a regular expression"),
    ("rules:\n  epochs: {min: 1}\n  epochs: {min: 2}\n", r"schema\.yaml, line 3: .*duplicate key 'epochs'"),
    ("notebooks:\n  nb:\n    datasets: mnist\n", r"notebooks\.nb\.datasets: expected a list"),
    ("notebooks:\n  nb:\n    data: [mnist]\n", r"notebooks\.nb: expected a mapping with keys among"),
    ("- a list\n", r"expected a mapping with keys 'rules' and 'notebooks'"),
])
def test_a_malformed_schema_is_refused_naming_the_file(tmp_path, text, message):
    with pytest.raises(RunnerError, match=message):
        load_schema(_schema(tmp_path, text))


def test_no_schema_file_means_no_rules(tmp_path):
    schema = load_schema(tmp_path)
    assert schema.rule("nb", "epochs") is None and check_values("nb", {"epochs": -1}, schema) == []


def test_the_notebook_side_check_lists_every_violation(tmp_path):
    _schema(tmp_path, "rules:\n  epochs: {min: 1}\n  eps_grid: {each: {max: 1}, min_items: 1}\n")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("epochs = 3  # training epochs\neps_grid = [0.1]\nname = 'x'\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    check_parameters("nb", {"epochs": 3, "eps_grid": [0.1], "name": "x", "other": -5}, tmp_path)  # passes
    with pytest.raises(ParameterError) as err:
        check_parameters("nb", {"epochs": 0, "eps_grid": [2.0], "name": "x"}, tmp_path)
    assert "nb: epochs = 0: must be >= 1" in str(err.value) and "nb: eps_grid = [2.0]: item 2.0 must be <= 1" in str(err.value)


# ----------------------------------------------------------------------------- data


def _fake_data(monkeypatch, present: set[str]):
    """core.datafiles' interface with two datasets of one file each; `present` are fine, the rest missing."""
    def required_files(name, root=None):
        if name not in ("mnist", "svhn"):
            raise ValueError(name)
        return [datafiles.DataFile(Path(f"/data/{name}.bin"), f"md5-{name}", f"python -m robust_utils download {name}")]

    def check_files(files):
        return [f"missing {f.path} (expected md5 {f.md5}): fetch it with `{f.fetch}`" for f in files
                if f.path.stem not in present]

    monkeypatch.setattr(preflight.data, "required_files", required_files)
    monkeypatch.setattr(preflight.data, "check_files", check_files)


SCHEMA = Schema(Path("x"), {}, {"a": {"rules": {}, "datasets": ["mnist"], "optional_datasets": ["svhn"]},
                                "b": {"rules": {}, "datasets": ["$dataset"], "optional_datasets": []}})


def test_data_problems_lists_each_missing_required_file_and_notes_optional_ones(monkeypatch):
    _fake_data(monkeypatch, present=set())
    problems, notes, missing = preflight.data_problems({"a": {}, "b": {"dataset": "mnist"}}, SCHEMA)
    assert problems == ["mnist (needed by a, b):",
                        "  missing /data/mnist.bin (expected md5 md5-mnist): fetch it with `python -m robust_utils download mnist`"]
    assert notes[0] == "svhn (used when present by a):" and missing == ["mnist"]
    message = preflight.data_message(problems, missing)
    assert "no notebook was started" in message and "Fetch them with: python -m robust_utils download mnist" in message


def test_data_problems_pass_when_everything_is_there(monkeypatch):
    _fake_data(monkeypatch, present={"mnist", "svhn"})
    assert preflight.data_problems({"a": {}, "b": {"dataset": "not-a-dataset"}}, SCHEMA) == ([], [], [])


def test_an_empty_data_root_stops_the_run_before_any_kernel_in_under_10_s(tmp_path):
    """Issue 16, point 4 (done when): every missing file named with its md5 and the download command."""
    env = {**os.environ, "ROBUST_UTILS_DATA": str(tmp_path / "data"), "ROBUST_UTILS_FIGURES": str(tmp_path / "figs"),
           "ROBUST_UTILS_CACHE": str(tmp_path / "cache")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "robust_utils", "run", "--profile", "smoke"], capture_output=True,
                          text=True, cwd=project_root(), env=env, timeout=60)
    assert time.perf_counter() - start < 10
    assert proc.returncode == 2 and "started" not in proc.stdout
    for rel, md5 in datafiles.manifest().items():
        if rel.startswith("MNIST/") or rel == "cifar10_subset.npz":
            assert f"missing {tmp_path / 'data' / rel} (expected md5 {md5})" in proc.stderr
    assert "Fetch them with: python -m robust_utils download mnist cifar10" in proc.stderr
    assert not list((tmp_path / "figs").glob("smoke/*"))  # no notebook folder: nothing ran


def test_a_corrupt_file_is_named_with_both_hashes(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for rel in datafiles.MNIST_FILES["train"] + datafiles.MNIST_FILES["test"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(project_root() / "data" / rel)
    bad = root / datafiles.MNIST_FILES["test"][1]
    bad.unlink()
    bad.write_bytes(b"not the labels")
    monkeypatch.setenv("ROBUST_UTILS_DATA", str(root))
    with pytest.raises(RunnerError) as err:
        run("smoke", ["02_hr_loss"], dry_run=True, figures_dir=tmp_path / "figs")
    text = str(err.value)
    assert f"corrupt {bad} (md5 {datafiles.md5sum(bad)}, expected md5 ec29112dd5afa0611ce80d1b7f02629c)" in text
    assert "missing /" not in text and "download mnist" in text


def test_the_paper_profile_stops_before_any_kernel_without_the_full_cifar10(tmp_path):
    if datafiles.cifar10_batches_present():
        pytest.fail("this test expects the project's data root, which holds only the CIFAR-10 subset")
    with pytest.raises(RunnerError) as err:
        run("paper", ["03_stochastic_lwta"], figures_dir=tmp_path / "figs", log=lambda line: None)
    assert "cifar10 (needed by 03_stochastic_lwta)" in str(err.value)
    assert "data_batch_1 (expected md5 c99cafc152244af753f735de768cd75f)" in str(err.value)
    assert not list((tmp_path / "figs").glob("paper/*"))


# ----------------------------------------------------------------------------- folders


def test_writable_folders_pass_and_leave_nothing_behind(tmp_path):
    assert preflight.writable_problem(tmp_path / "new" / "cache", "checkpoint cache", "ROBUST_UTILS_CACHE") is None
    assert list((tmp_path / "new" / "cache").iterdir()) == []
    assert preflight.writable_problem(tmp_path / "other", "figures folder", "X", create=False) is None
    assert not (tmp_path / "other").exists()  # a dry run creates nothing


@pytest.mark.parametrize("create", [True, False])
def test_an_unwritable_folder_names_the_variable_that_moves_it(tmp_path, create):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    problem = preflight.writable_problem(blocker / "cache", "checkpoint cache", "ROBUST_UTILS_CACHE", create)
    assert problem.startswith(f"the checkpoint cache {blocker / 'cache'} cannot be written (")
    assert problem.endswith("set ROBUST_UTILS_CACHE to a writable folder")


def test_a_read_only_folder_is_refused_without_creating_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)  # as a non-root user sees a 0o555 folder
    problem = preflight.writable_problem(tmp_path / "cache", "checkpoint cache", "ROBUST_UTILS_CACHE", create=False)
    assert "no write permission on" in problem and "ROBUST_UTILS_CACHE" in problem


def test_run_checks_the_cache_before_any_kernel(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(tmp_path / "a_file" / "cache"))
    before = os.environ.get("ROBUST_UTILS_FIGURES")
    with pytest.raises(RunnerError, match=r"checkpoint cache .* cannot be written .* set ROBUST_UTILS_CACHE"):
        run("smoke", ["02_hr_loss"], figures_dir=tmp_path / "figs", log=lambda line: None)
    with pytest.raises(RunnerError, match=r"figures folder .* set ROBUST_UTILS_FIGURES \(or --figures-dir\)"):
        run("smoke", ["02_hr_loss"], figures_dir=tmp_path / "a_file" / "figs", log=lambda line: None)
    assert not list((tmp_path / "figs").glob("smoke/*")) and os.environ.get("ROBUST_UTILS_FIGURES") == before
