"""The defense recipes of notebook 06: parameters as the notebooks get them, and MLP variants.
(That each recipe loads its notebook's checkpoints is checked after each smoke notebook run, in
test_notebook_smoke.py.)"""

import pytest
import torch

from robust_utils import defenses, models, runner


def test_source_parameters_are_the_notebook_defaults_overridden_by_the_profile():
    p = defenses.source_parameters("05_sdr_learnable", "smoke")
    assert p["widths"] == [32, 32] and p["epochs"] == 2  # smoke.yaml
    assert p["lr"] == 0.1 and p["sdr_beta"] == 0.05  # the notebook's parameters cell
    assert p["profile"] == "smoke"
    assert defenses.source_parameters("05_sdr_learnable", "classroom")["widths"] == [100, 100, 100]


def test_unknown_profile_or_notebook_is_an_error():
    with pytest.raises(runner.RunnerError, match="unknown profile"):
        defenses.source_parameters("05_sdr_learnable", "nope")
    with pytest.raises(runner.RunnerError, match="unknown notebook"):
        defenses.source_parameters("07_nothing", "smoke")


def test_mlp_with_pni_layers_and_lwta_activations():
    net = models.build_model("mlp", seed=0, device="cpu", widths=[8, 8], layer="pni", activation="stochastic_lwta",
                             activation_kwargs={"units": 2})
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # PNI noise and LWTA sampling, also in eval mode
    assert defenses._is_random(net.eval()) and not defenses._is_random(models.build_model("mlp", seed=0, device="cpu"))
    with pytest.raises(ValueError, match="bad arguments"):
        models.build_model("mlp", seed=0, device="cpu", activation="relu", activation_kwargs={"units": 2})
