"""The papermill runner (robust_utils.runner, ``python -m robust_utils run``) on throwaway notebooks.

Three tiny notebooks are built in a temporary folder: ``good`` writes a results.json (standard
library only) into $ROBUST_UTILS_FIGURES/<profile>/good/, ``other`` has different parameters,
``bad`` raises. Only two kernels are started in the whole file (the module-scoped real run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from robust_utils.core.paths import project_root
from robust_utils.app.profiles import RunnerError, load_profile, resolve_parameters
from robust_utils.app.execute import run
from robust_utils.app.summary import write_summary

PARAMS_GOOD = 'profile = "classroom"  # where the outputs go\nseed = 0\nn = 10\neps_grid = [0.1]\nname = "x"\n'

WRITE_RESULTS = '''\
import json, os, pathlib
out = pathlib.Path(os.environ["ROBUST_UTILS_FIGURES"]) / profile / "good"
out.mkdir(parents=True, exist_ok=True)
(out / "results.json").write_text(json.dumps({
    "notebook": "good", "profile": profile, "title": "A tiny notebook",
    "parameters": {"profile": profile, "seed": seed, "n": n, "eps_grid": eps_grid, "name": name},
    "tables": {"Table 9 (toy)": [
        {"cell": "CE, eps=0.1", "paper": 0.907, "ours": 0.9123, "diff": 0.0053},
        {"cell": "HR, eps=0.3", "paper": None, "ours": float(n), "diff": None}]},
    "claims": [{"claim": "n is what was asked", "verdict": "reproduced", "evidence": f"n = {n}"}],
    "figures": ["figure1.png"],
}))
'''

PROFILE_YAML = """\
# a throwaway profile
defaults:
  seed: 7          # good and other have it; bad does not
notebooks:
  good:
    n: 20
  other:
  bad:
"""


def _notebook(path: Path, params: str, *body: str) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(src) for src in body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _make_project(root: Path) -> Path:
    """notebooks good / other / bad and params/tiny.yaml under root; returns root."""
    _notebook(root / "good.ipynb", PARAMS_GOOD, WRITE_RESULTS)
    _notebook(root / "other.ipynb", "profile = 'classroom'\nseed = 0\nlr: float = 0.1\nextra = None\n", "x = lr * 2")
    _notebook(root / "bad.ipynb", "k = 1\n", "raise RuntimeError('boom in bad\\nsecond line')")
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text(PROFILE_YAML)
    return root


@pytest.fixture
def project(tmp_path):
    return _make_project(tmp_path)


def _assert_nothing_ran(root: Path) -> None:
    assert not (root / "figs").exists()


# ----------------------------------------------------------------------------- validation


def test_load_profile_and_resolution_precedence(project):
    spec = load_profile("tiny", project)
    assert list(spec["notebooks"]) == ["good", "other", "bad"]
    resolved = resolve_parameters("tiny", overrides=["n=5"], notebooks_dir=project)
    # defaults only where the notebook has the name; yaml entry < override; profile injected
    assert resolved["good"] == {"profile": "tiny", "seed": 7, "n": 5}
    assert resolved["other"] == {"profile": "tiny", "seed": 7}
    assert resolved["bad"] == {}


def test_unknown_profile_lists_valid_profiles(project):
    with pytest.raises(RunnerError, match=r"unknown profile 'nope'.*valid profiles: tiny"):
        run("nope", notebooks_dir=project, figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_unknown_notebook_lists_profile_notebooks(project):
    with pytest.raises(RunnerError, match=r"missing.*the profile's notebooks: good, other, bad"):
        run("tiny", notebooks=["good", "missing"], notebooks_dir=project, figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_unknown_parameter_in_yaml_lists_valid_names(project):
    (project / "params" / "tiny.yaml").write_text("notebooks:\n  good:\n    epochs: 3\n")
    with pytest.raises(RunnerError) as err:
        run("tiny", notebooks_dir=project, figures_dir=project / "figs")
    assert "'epochs'" in str(err.value)
    assert "valid parameters: profile, seed, n, eps_grid, name" in str(err.value)
    _assert_nothing_ran(project)


def test_unknown_override_is_an_error(project):
    with pytest.raises(RunnerError, match=r"-p lr: no selected notebook has a parameter 'lr'.*eps_grid"):
        # lr exists in `other`, but only `good` is selected
        run("tiny", notebooks=["good.ipynb"], overrides=["lr=0.5"], notebooks_dir=project,
            figures_dir=project / "figs")
    _assert_nothing_ran(project)


@pytest.mark.parametrize("override, message", [
    ("n=abc", r"'n' expects int .*got str 'abc'"),
    ("n=true", r"'n' expects int .*got bool True"),          # bool is not an int
    ("eps_grid=0.1", r"'eps_grid' expects list .*got float"),
    ("name=3", r"'name' expects str .*got int 3"),
])
def test_wrong_type_names_parameter_and_types(project, override, message):
    with pytest.raises(RunnerError, match=message):
        run("tiny", notebooks=["good"], overrides=[override], dry_run=True, notebooks_dir=project,
            figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_type_rules_that_are_accepted(project):
    # int where a float is annotated, anything where the default is None, scientific notation
    resolved = resolve_parameters("tiny", ["other"], {"lr": 1, "extra": [1, "a"]}, project)
    assert resolved["other"]["lr"] == 1 and resolved["other"]["extra"] == [1, "a"]
    assert resolve_parameters("tiny", ["other"], ["lr=1e-3"], project)["other"]["lr"] == pytest.approx(1e-3)
    with pytest.raises(RunnerError, match=r"'lr' expects float .*got str"):
        resolve_parameters("tiny", ["other"], ["lr=fast"], project)


def test_dry_run_prints_and_executes_nothing(project):
    lines = []
    assert run("tiny", overrides=["n=3"], dry_run=True, notebooks_dir=project,
               figures_dir=project / "figs", log=lines.append) == 0
    text = "\n".join(lines)
    assert "[1/3] good" in text and "n = 3" in text and "seed = 7" in text
    assert str(Path("figs") / "tiny" / "good") in text
    _assert_nothing_ran(project)


# ----------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Runs good (with -p n=42) and bad once; returns (root, exit code, log lines)."""
    root = _make_project(tmp_path_factory.mktemp("runner"))
    before = os.environ.get("ROBUST_UTILS_FIGURES")
    lines: list[str] = []
    code = run("tiny", notebooks=["bad", "good"], overrides=["n=42"], notebooks_dir=root,
               figures_dir=root / "figs", log=lines.append)
    assert os.environ.get("ROBUST_UTILS_FIGURES") == before  # restored after the run
    return root, code, lines


@pytest.mark.slow
def test_failing_notebook_gives_exit_1_and_others_still_run(real_run):
    root, code, lines = real_run
    assert code == 1
    progress = [line for line in lines if line.startswith("[")]
    assert progress[0].startswith("[1/2] good ... ok (")  # profile order, not the order asked
    assert progress[1].startswith("[2/2] bad ... FAILED (") and "RuntimeError: boom in bad" in progress[1]
    assert "second line" not in progress[1]
    assert (root / "figs" / "tiny" / "good" / "good.ipynb").is_file()
    assert (root / "figs" / "tiny" / "bad" / "bad.ipynb").is_file()  # papermill keeps the failed output


@pytest.mark.slow
def test_override_and_profile_reach_the_executed_notebook(real_run):
    root, _, _ = real_run
    results = json.loads((root / "figs" / "tiny" / "good" / "results.json").read_text())
    assert results["parameters"] == {"profile": "tiny", "seed": 7, "n": 42, "eps_grid": [0.1], "name": "x"}


@pytest.mark.slow
def test_summary_has_tables_claims_figures_and_failures(real_run):
    root, _, _ = real_run
    summary = (root / "figs" / "tiny" / "SUMMARY.md").read_text()
    assert "profile `tiny`" in summary
    assert "## good: A tiny notebook" in summary
    assert "| cell | paper | ours | diff |" in summary
    assert "| CE, eps=0.1 | 0.907 | 0.912 | +0.005 |" in summary
    assert "| HR, eps=0.3 | — | 42.000 | — |" in summary
    assert "| n is what was asked | reproduced | n = 42 |" in summary
    assert "![figure1.png](good/figure1.png)" in summary
    assert "- `bad`: RuntimeError: boom in bad" in summary
    assert not list((root / "figs" / "tiny").glob(".SUMMARY*"))  # no temp file left behind


def test_write_summary_reads_every_results_json(tmp_path):
    for stem, title in [("b_second", "Second"), ("a_first", None)]:
        (tmp_path / stem).mkdir()
        data = {"notebook": stem, "tables": {"T": [{"cell": "x | y", "paper": 1, "ours": 0.12345, "diff": None}]}}
        if title:
            data["title"] = title
        (tmp_path / stem / "results.json").write_text(json.dumps(data))  # no claims / figures keys
    (tmp_path / "c_broken").mkdir()
    (tmp_path / "c_broken" / "results.json").write_text("{not json")
    text = write_summary(tmp_path).read_text()
    assert text.index("## a_first") < text.index("## b_second: Second") < text.index("## c_broken")
    assert "| x \\| y | 1 | 0.123 | — |" in text
    assert "Could not read `c_broken/results.json`" in text
    assert "Claims" not in text


def test_write_summary_shows_leaderboards_with_their_own_columns(tmp_path):
    import pandas as pd

    from robust_utils.app.results import Results

    res = Results("board", "tiny", "Board", {})
    res.dir = tmp_path / "board"
    res.add_leaderboard("Leaderboard (MNIST)", pd.DataFrame({"defense": ["HR loss", "CE"], "AA Linf 0.1": [0.25, None],
                                                             "audit": ["passed", "1 failed"]}))
    res.save()
    text = write_summary(tmp_path).read_text()
    assert "### Leaderboard (MNIST)" in text and "| defense | AA Linf 0.1 | audit |" in text
    assert "| HR loss | 0.250 | passed |" in text and "| CE | — | 1 failed |" in text


# ----------------------------------------------------------------------------- command line


def test_cli_unknown_profile_exits_2(project):
    env = {**os.environ, "ROBUST_UTILS_FIGURES": str(project / "figs")}
    proc = subprocess.run(
        [sys.executable, "-m", "robust_utils", "run", "--profile", "nope", "--notebooks-dir", str(project)],
        capture_output=True, text=True, cwd=project_root(), env=env, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown profile 'nope'" in proc.stderr and "valid profiles: tiny" in proc.stderr
    assert proc.stdout == ""
    _assert_nothing_ran(project)
