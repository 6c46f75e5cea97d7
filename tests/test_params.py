"""Profiles and the parameter schema against the real notebooks: every notebook is in every
profile, the classroom profile equals the notebooks' defaults, every profile validates (dry run),
every parameter has a rule that its defaults keep, and the bad values of issue 19 (point 4) are
refused before any kernel starts."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robust_utils.app import execute
from robust_utils.app.paramtypes import literal_default, notebook_parameters, unparsed_by_papermill
from robust_utils.app.profiles import RunnerError, list_profiles, resolve_parameters
from robust_utils.app.rules import check_values, load_schema
from robust_utils.core.paths import project_root

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STEMS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
PROFILES = ("smoke", "classroom", "paper")


def test_the_profiles_are_the_three():
    assert list_profiles() == sorted(PROFILES)  # params/schema.yaml is not a profile


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_is_in_every_profile(profile):
    listed = yaml.safe_load((NOTEBOOKS / "params" / f"{profile}.yaml").read_text())["notebooks"]
    assert sorted(listed) == STEMS


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_validates_in_a_dry_run(profile, tmp_path, capsys):
    # the paper profile reads the full CIFAR-10, which this machine's data root does not hold
    assert execute.run(profile=profile, dry_run=True, figures_dir=tmp_path, check_data=profile != "paper") == 0
    assert list(tmp_path.iterdir()) == []


def test_classroom_profile_equals_the_notebook_defaults():
    profile = yaml.safe_load((NOTEBOOKS / "params" / "classroom.yaml").read_text())
    for stem, values in profile["notebooks"].items():
        params = notebook_parameters(NOTEBOOKS / f"{stem}.ipynb")
        merged = {**{k: v for k, v in profile.get("defaults", {}).items() if k in params}, **values}
        for name, value in merged.items():
            assert literal_default(params[name]) == value, (stem, name)


@pytest.mark.parametrize("stem", STEMS)
def test_papermill_parses_every_parameter(stem):
    """papermill's line parser (``--help-notebook``) skips a line with two '=' (one in a comment):
    every parameter must be visible to it too."""
    assert unparsed_by_papermill(NOTEBOOKS / f"{stem}.ipynb") == []


@pytest.mark.parametrize("stem", STEMS)
def test_every_parameter_has_a_rule_its_default_keeps(stem):
    schema = load_schema()
    params = notebook_parameters(NOTEBOOKS / f"{stem}.ipynb")
    defaults = {name: literal_default(info) for name, info in params.items()}
    ruled = {n for n, v in defaults.items() if isinstance(v, (int, float, list)) and not isinstance(v, bool)}
    assert [n for n in sorted(ruled) if schema.rule(stem, n) is None] == []
    assert check_values(stem, defaults, schema) == []


def test_the_schema_names_only_real_parameters():
    schema = load_schema()
    params = {stem: notebook_parameters(NOTEBOOKS / f"{stem}.ipynb") for stem in STEMS}
    assert sorted(schema.notebooks) == STEMS
    everyone = set().union(*params.values())
    assert [n for n in schema.shared if "*" not in n and n not in everyone] == []
    for stem, entry in schema.notebooks.items():
        assert [n for n in entry["rules"] if "*" not in n and n not in params[stem]] == [], stem
        named = [d[1:] for d in entry["datasets"] + entry["optional_datasets"] if d.startswith("$")]
        assert [n for n in named if n not in params[stem]] == [], stem


# ----------------------------------------------------------------------------- issue 19, point 4


def _has(name):
    return [s for s in STEMS if name in notebook_parameters(NOTEBOOKS / f"{s}.ipynb")]


@pytest.mark.parametrize("override, name", [
    ("epochs=-1", "epochs"), ("n_train=0", "n_train"), ("eps_grid=[2.0]", "eps_grid"), ("eps_grid=[-0.1]", "eps_grid"),
    ("device=tpu", "device"), ("lr=.nan", "lr"), ("n_seeds=0", "n_seeds"), ("channels=[]", "channels"),
    ("eps_grid=[]", "eps_grid"), ("threads=-1", "threads"), ("lr=.inf", "lr"), ("dataset=<script>", "dataset"),
])
def test_bad_values_are_refused_for_every_notebook_that_has_them(override, name):
    with pytest.raises(RunnerError) as err:
        resolve_parameters("smoke", overrides=[override])
    lines = str(err.value).splitlines()[1:]
    assert sorted(line.split(":")[0].strip() for line in lines) == _has(name)
    assert all(f"{name} = " in line for line in lines)


def test_a_value_in_range_passes_and_references_are_checked():
    assert resolve_parameters("smoke", ["05_sdr_learnable"], ["n_local_search=40"])  # <= n_attack (40)
    with pytest.raises(RunnerError, match=r"n_local_search = 41: must be <= n_attack \(40\)"):
        resolve_parameters("smoke", ["05_sdr_learnable"], ["n_local_search=41"])


def test_dry_run_with_epochs_minus_one_exits_2_naming_every_notebook():
    """``python -m robust_utils run --profile smoke -p epochs=-1 --dry-run``: rc 2, every notebook with epochs, fast."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "robust_utils", "run", "--profile", "smoke", "-p", "epochs=-1",
                           "--dry-run"], capture_output=True, text=True, cwd=project_root(), timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    for stem in _has("epochs"):
        assert f"{stem}: epochs = -1: must be >= 1" in proc.stderr
    assert "06_adaptive_evaluation" not in proc.stderr
    assert time.perf_counter() - start < 10


def test_notebook_06_source_values_apply_checked_overrides():
    """Notebook 06's models of notebooks 01-05: their values at a profile, with per-notebook overrides
    held to the same names and rules as -p; an override for another notebook is refused."""
    from robust_utils.app.profiles import source_values

    base = source_values(["02_hr_loss", "05_sdr_learnable"], "classroom")
    over = source_values(["02_hr_loss", "05_sdr_learnable"], "classroom", {"02_hr_loss": {"epochs": 1}})
    assert over["02_hr_loss"] == {**base["02_hr_loss"], "epochs": 1} and over["05_sdr_learnable"] == base["05_sdr_learnable"]
    assert base["02_hr_loss"]["epochs"] != 1
    with pytest.raises(RunnerError, match="unknown notebook.*03_stochastic_lwta"):
        source_values(["02_hr_loss"], "classroom", {"03_stochastic_lwta": {"epochs": 1}})
    with pytest.raises(RunnerError, match="epochz"):
        source_values(["02_hr_loss"], "classroom", {"02_hr_loss": {"epochz": 1}})
    with pytest.raises(RunnerError, match="epochs"):
        source_values(["02_hr_loss"], "classroom", {"02_hr_loss": {"epochs": 0}})
