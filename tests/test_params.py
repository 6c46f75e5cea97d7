"""Profiles: every notebook is in every profile, the classroom profile equals the notebooks'
defaults, and every profile validates (dry run) against the notebooks' parameters cells."""

import ast
from pathlib import Path

import pytest
import yaml

from robust_utils.app import execute

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STEMS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
PROFILES = ("smoke", "classroom", "paper")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_is_in_every_profile(profile):
    listed = yaml.safe_load((NOTEBOOKS / "params" / f"{profile}.yaml").read_text())["notebooks"]
    assert sorted(listed) == STEMS


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_validates_in_a_dry_run(profile, tmp_path, capsys):
    assert execute.run(profile=profile, dry_run=True, figures_dir=tmp_path) == 0
    assert list(tmp_path.iterdir()) == []


def test_classroom_profile_equals_the_notebook_defaults():
    import papermill

    profile = yaml.safe_load((NOTEBOOKS / "params" / "classroom.yaml").read_text())
    for stem, values in profile["notebooks"].items():
        params = papermill.inspect_notebook(str(NOTEBOOKS / f"{stem}.ipynb"))
        merged = {**{k: v for k, v in profile.get("defaults", {}).items() if k in params}, **values}
        for name, value in merged.items():
            assert ast.literal_eval(params[name]["default"]) == value, (stem, name)
