"""The ``run`` command line: papermill's parameter forms (-p NAME VALUE, -f FILE), --list-params,
the console script, and strict inputs (issue 19, points 5 and 7: profile names, not paths; profile
YAML read as UTF-8 with duplicate keys refused, errors rc 2 naming file and line)."""

from __future__ import annotations

import re
import sys
import tomllib

import nbformat
import pytest

from robust_utils.app import cli, run_command
from robust_utils.app.profiles import list_profiles
from robust_utils.core.paths import project_root


def _project(root):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("profile = 'classroom'\nepochs = 2  # training epochs (paper: 100)\n"
                                     "lr: float = 0.1\neps_grid = [0.1]  # Linf budgets\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, str(root / "nb.ipynb"))
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text("notebooks:\n  nb:\n    epochs: 1\n")
    (root / "params" / "schema.yaml").write_text("rules:\n  epochs: {min: 1}\n  eps_grid: {each: {min: 0, max: 1}}\n")
    return root


def _main(capsys, *args):
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_papermill_parameter_forms(tmp_path, capsys):
    root = _project(tmp_path)
    (tmp_path / "p.yaml").write_text("lr: 0.5\nepochs: 7\n")
    code, out, _ = _main(capsys, "run", "--profile", "tiny", "--notebooks-dir", str(root), "--figures-dir",
                         str(tmp_path / "figs"), "-f", str(tmp_path / "p.yaml"), "-p", "epochs", "3",
                         "-p", "eps_grid=[0.2,0.3]", "--dry-run")
    assert code == 0
    assert "epochs = 3" in out and "lr = 0.5" in out and "eps_grid = [0.2, 0.3]" in out  # -p after -f


@pytest.mark.parametrize("args, message", [
    (["-p", "epochs", "3", "4"], "expected NAME VALUE or NAME=VALUE"),
    (["-p", "epochs"], "expected NAME VALUE or NAME=VALUE"),
])
def test_malformed_parameter_options_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as err:
        cli.main(["run", "--profile", "tiny", "--notebooks-dir", str(_project(tmp_path)), *args, "--dry-run"])
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("lr: 0.5\nlr: 0.6\n", r"p.yaml, line 2: .*duplicate key 'lr' \(first given on line 1\)"),
    ("- 1\n", "p.yaml: expected a mapping of parameter names to values"),
    ("epochs: -2\n", "nb: epochs = -2: must be >= 1"),
])
def test_a_bad_parameters_file_exits_2(tmp_path, capsys, text, message):
    root = _project(tmp_path)
    (tmp_path / "p.yaml").write_text(text)
    code, _, err = _main(capsys, "run", "--profile", "tiny", "--notebooks-dir", str(root), "-f", str(tmp_path / "p.yaml"),
                         "--dry-run")
    assert code == 2
    assert re.search(message, err), err


def test_list_params_prints_defaults_comments_and_rules(tmp_path, capsys):
    code, out, _ = _main(capsys, "run", "--list-params", "nb.ipynb", "--notebooks-dir", str(_project(tmp_path)))
    assert code == 0
    assert "  epochs   = 2  # training epochs (paper: 100)  [rule: >= 1]" in out
    assert "  lr       = 0.1\n" in out and "  eps_grid = [0.1]  # Linf budgets  [rule: each item >= 0 and <= 1]" in out
    code, _, err = _main(capsys, "run", "--list-params", "missing", "--notebooks-dir", str(tmp_path))
    assert code == 2 and "no notebook" in err and "notebooks: nb" in err


def test_list_params_of_a_real_notebook(capsys):
    code, out, _ = _main(capsys, "run", "--list-params", "02_hr_loss")
    assert code == 0 and "n_seeds" in out and "resnet_n" in out and "[rule: >= 1]" in out


def test_the_console_script_is_the_same_command_line():
    scripts = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["robust-companion"].partition(":")
    assert (module, name) == ("robust_utils.app.cli", "main") and callable(getattr(sys.modules[module], name))


def test_keyboard_interrupt_outside_a_notebook_exits_130(monkeypatch, capsys):
    from robust_utils.app import execute

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "run", interrupted)
    code, _, err = _main(capsys, "run", "--profile", "smoke")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- issue 19, points 5 and 7


@pytest.mark.parametrize("profile", ["/x/y", "../notebooks/params/smoke", "smoke.yaml", "params/smoke"])
def test_profile_must_be_a_name_not_a_path(tmp_path, capsys, profile):
    code, out, err = _main(capsys, "run", "--profile", profile, "--figures-dir", str(tmp_path / "figs"), "--dry-run")
    assert code == 2 and out == ""
    assert f"unknown profile '{profile}' (a profile is a name, not a path); valid profiles: classroom, paper, smoke" in err
    assert not (tmp_path / "figs").exists()


def test_a_profile_that_is_not_utf8_exits_2_naming_file_and_line(tmp_path, capsys):
    root = _project(tmp_path)
    (root / "params" / "latin.yaml").write_bytes("notebooks:\n  nb:\n    # caf\xe9\n".encode("latin-1"))
    code, _, err = _main(capsys, "run", "--profile", "latin", "--notebooks-dir", str(root), "--dry-run")
    assert code == 2 and "latin.yaml, line 3: not UTF-8 text (byte 0xe9)" in err and "Traceback" not in err


def test_a_duplicate_key_in_a_profile_exits_2_naming_the_line(tmp_path, capsys):
    root = _project(tmp_path)
    (root / "params" / "dup.yaml").write_text("notebooks:\n  nb:\n    epochs: 1\n    epochs: 5\n")
    code, _, err = _main(capsys, "run", "--profile", "dup", "--notebooks-dir", str(root), "--dry-run")
    assert code == 2 and "dup.yaml, line 4: " in err and "duplicate key 'epochs' (first given on line 3)" in err


def test_invalid_yaml_in_a_profile_exits_2_naming_the_line(tmp_path, capsys):
    root = _project(tmp_path)
    (root / "params" / "broken.yaml").write_text("notebooks:\n  nb:\n    epochs: [1\n")
    code, _, err = _main(capsys, "run", "--profile", "broken", "--notebooks-dir", str(root), "--dry-run")
    assert code == 2 and "broken.yaml, line " in err


def test_a_folder_named_yaml_is_not_a_profile(tmp_path, capsys):
    root = _project(tmp_path)
    (root / "params" / "x.yaml").mkdir()
    assert list_profiles(root) == ["tiny"]
    code, _, err = _main(capsys, "run", "--profile", "x", "--notebooks-dir", str(root), "--dry-run")
    assert code == 2 and "unknown profile 'x'; valid profiles: tiny" in err


def test_yaml_tags_never_construct_objects(tmp_path, capsys):
    root = _project(tmp_path)
    code, _, err = _main(capsys, "run", "--profile", "tiny", "--notebooks-dir", str(root), "-p",
                         "epochs=!!python/object/apply:os.system ['echo hacked']", "--dry-run")
    assert code == 2 and "could not determine a constructor" in err


def test_run_command_module_exports():
    assert set(run_command.__all__) == {"ParamAction", "RUN_EPILOG", "add_run", "cmd_run", "list_params"}


def test_checkpoints_from_any_device_sets_the_variable_the_store_reads(monkeypatch, tmp_path):
    """``run --checkpoints-from-any-device`` lets the kernels load a checkpoint trained on another device type."""
    from robust_utils.app.cli import build_parser
    from robust_utils.core.store import ANY_DEVICE_VARIABLE, any_device_allowed

    monkeypatch.setenv(ANY_DEVICE_VARIABLE, "")  # recorded, so the value the command sets is undone afterwards
    args = build_parser().parse_args(["run", "--profile", "smoke", "--dry-run", "--checkpoints-from-any-device",
                                      "--figures-dir", str(tmp_path)])
    assert args.checkpoints_from_any_device and not any_device_allowed()
    assert args.func(args) == 0
    assert any_device_allowed()
