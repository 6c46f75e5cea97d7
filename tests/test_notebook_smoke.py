"""A real notebook through the runner at the smoke profile: outputs, results.json and SUMMARY.md.

The other notebooks run through the runner in tests/test_paper_scaled.py (the paper profile's
structure at the smoke profile's sizes), with the same checks of their outputs.
"""

import json

import pytest

from notebook_checks import assert_ledger, check_02
from robust_utils.app import execute


@pytest.mark.slow
def test_smoke_profile_regenerates_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(tmp_path / "cache"))  # train for real, not from a cache
    monkeypatch.setenv("ROBUST_UTILS_CHECKPOINTS", str(tmp_path / "no_bundle"))  # nor from a classroom bundle
    figures = tmp_path / "figures"
    assert execute.run(profile="smoke", notebooks=["02_hr_loss"], figures_dir=figures) == 0
    out = figures / "smoke" / "02_hr_loss"
    assert (out / "02_hr_loss.ipynb").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["profile"] == "smoke" and results["parameters"]["epochs"] == 1
    check_02(results)
    assert_ledger(results, "02_hr_loss")  # MNIST, CIFAR-10 and SVHN columns; SVHN not tested without its download
    for name in results["figures"]:
        assert (out / name).stat().st_size > 1000
    summary = (figures / "smoke" / "SUMMARY.md").read_text()
    assert "Table 1 (MNIST)" in summary and "HRCE, eps=0.1" in summary
    assert list((tmp_path / "cache").glob("*.pt"))  # the smoke run trained and cached its models
    assert "02_hr_loss" in capsys.readouterr().out
