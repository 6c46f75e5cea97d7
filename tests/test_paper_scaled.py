"""The paper profile, proven on the CPU before any GPU time is spent on it (issue 21, point 2).

Every notebook runs through the runner with the paper profile's values of every structural
parameter (architectures and widths, optimisers, losses and their settings, attack kinds and their
step rules, budgets) and only its sizes scaled down: numbers of images, seeds, epochs, attack
steps, restarts, passes and samples, and grid lengths, taken from the smoke profile. Each run's
results.json is checked as a smoke run's would be (tests/notebook_checks.py). Where the
paper profile reads the full CIFAR-10, which these machines do not have, the real subset stands in
(the same loader path, fewer images). Notebook 06 gets the same scaled sizes for the models of
notebooks 01-05 it evaluates (its ``source_overrides``), so it evaluates the paper architectures.
"""

from __future__ import annotations

import fnmatch
import json

import pytest
import yaml

from notebook_checks import CHECKS, LEDGER_SIZES, assert_ledger
from robust_utils.app import execute
from robust_utils.app.profiles import notebook_values
from robust_utils.core import paths
from robust_utils.core.datafiles import check_files, required_files

# The parameters that only size the work; every other parameter keeps its paper-profile value.
SIZE_PATTERNS = ("n_*", "*n_seeds", "*n_train", "*n_test", "*epochs", "*_steps", "*_search", "*_restarts",
                 "passes", "eot_samples", "square_queries", "em_max_iter", "schedule_every", "fgsm_grid_points",
                 "ls_rounds", "*eps_grid", "eps_sweep", "sweep_eps", "l2_budgets", "linf_eps", "l2_eps")
# Sizes the smoke profile does not set but the paper profile makes large.
# Notebook 06 runs AutoAttack at one Linf budget only: its cost is its fixed iterations per budget, and
# the L2 path is the same code, run by the classroom notebook under nbval.
EXTRA_SIZES = {"02_hr_loss": {"cifar_n_seeds": 1},
               "06_adaptive_evaluation": {"n_attack": 5, "n_crosscheck": 20, "linf_eps": [0.1], "l2_eps": []}}
NOTEBOOKS = ["01_probabilistic_loss", "02_hr_loss", "03_stochastic_lwta", "04_adversary_critic",
             "05_sdr_learnable", "06_adaptive_evaluation"]
SOURCES = ["01_probabilistic_loss", "02_hr_loss", "04_adversary_critic", "05_sdr_learnable"]


def is_size(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in SIZE_PATTERNS)


def profile_entry(profile: str, notebook: str) -> dict:
    text = (paths.notebooks_dir() / "params" / f"{profile}.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["notebooks"][notebook])


def scaled_sizes(notebook: str) -> dict:
    """The smoke profile's sizes for ``notebook`` (and EXTRA_SIZES), plus the CIFAR-10 subset where
    the full CIFAR-10 is absent."""
    sizes = {k: v for k, v in profile_entry("smoke", notebook).items() if is_size(k)}
    sizes.update(EXTRA_SIZES.get(notebook, {}))
    paper = notebook_values(notebook, "paper")
    for name in ("dataset", "cifar_dataset"):
        if paper.get(name) == "cifar10" and check_files(required_files("cifar10")):
            sizes[name] = "cifar10_subset"
    return sizes


def test_the_scaling_changes_sizes_only():
    """The rule above can fail: every override is a size (or the CIFAR-10 stand-in), and every
    structural parameter the paper profile sets keeps its paper value."""
    for nb in NOTEBOOKS:
        sizes = scaled_sizes(nb)
        assert all(is_size(k) or k in ("dataset", "cifar_dataset") for k in sizes), nb
        structural = {k for k in profile_entry("paper", nb) if not is_size(k)}
        assert structural.isdisjoint(sizes.keys() - {"dataset", "cifar_dataset"}), nb
    assert not is_size("width") and not is_size("mlp_widths") and not is_size("cw_lr") and is_size("cw_steps")


@pytest.fixture(scope="module")
def scaled_cache(tmp_path_factory):
    """One checkpoint cache for this module's runs: notebook 06 evaluates the scaled models that the
    runs of 01, 02, 04 and 05 trained (the same training parameters, so the same checkpoint keys)
    instead of training them again; run alone, 06 trains them itself."""
    return tmp_path_factory.mktemp("scaled_cache")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_paper_profile_runs_scaled(notebook, tmp_path, monkeypatch, scaled_cache):
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(scaled_cache))
    monkeypatch.setenv("ROBUST_UTILS_CHECKPOINTS", str(tmp_path / "no_bundle"))
    overrides = scaled_sizes(notebook)
    if notebook == "06_adaptive_evaluation":
        overrides["source_overrides"] = {nb: scaled_sizes(nb) for nb in SOURCES}
    figures = tmp_path / "figures"
    assert execute.run(profile="paper", notebooks=[notebook], overrides=overrides, figures_dir=figures) == 0
    results = json.loads((figures / "paper" / notebook / "results.json").read_text())
    paper = notebook_values(notebook, "paper")
    used = results["parameters"]
    for name, value in paper.items():  # the structural parameters ran at their paper values
        if name not in overrides and name in used and name != "device":  # the record holds the resolved device
            assert used[name] == (list(value) if isinstance(value, tuple) else value), name
    assert used["profile"] == "paper"
    if notebook in LEDGER_SIZES:
        assert_ledger(results, notebook)
    CHECKS[notebook](results)
