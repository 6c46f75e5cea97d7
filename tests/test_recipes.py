"""The training recipes (one source for every model a notebook trains), notebook parameters at a
profile, and the one definition of a random model."""

import pytest
import torch
from torch import nn

from robust_utils.app import profiles
from robust_utils.methods import recipes
from robust_utils.nn import models
from robust_utils.nn.randomness import is_random, random_layers


def test_notebook_values_are_the_defaults_overridden_by_the_profile():
    p = profiles.notebook_values("05_sdr_learnable", "smoke")
    assert p["widths"] == [32, 32] and p["epochs"] == 2  # smoke.yaml
    assert p["lr"] == 0.1 and p["sdr_beta"] == 0.05  # the notebook's parameters cell
    assert p["profile"] == "smoke"
    assert profiles.notebook_values("05_sdr_learnable", "classroom")["widths"] == [100, 100, 100]


def test_unknown_profile_or_notebook_is_an_error():
    with pytest.raises(profiles.RunnerError, match="unknown profile"):
        profiles.notebook_values("05_sdr_learnable", "nope")
    with pytest.raises(profiles.RunnerError, match="unknown notebook"):
        profiles.notebook_values("07_nothing", "smoke")


@pytest.mark.parametrize("notebook, config", [
    ("01_probabilistic_loss", recipes.ProbabilisticLoss), ("02_hr_loss", recipes.HRLoss),
    ("03_stochastic_lwta", recipes.StochasticLWTA), ("04_adversary_critic", recipes.AdversaryCritic),
    ("05_sdr_learnable", recipes.StochasticWeights)])
@pytest.mark.parametrize("profile", ["smoke", "classroom", "paper"])
def test_every_profile_configures_its_notebooks_recipe(notebook, config, profile):
    cfg = config.from_parameters(profiles.notebook_values(notebook, profile))
    assert cfg.seed == 0


def test_a_missing_parameter_is_named():
    with pytest.raises(ValueError, match="needs the parameter\\(s\\) n_heldout"):
        recipes.StochasticWeights.from_parameters({k: v for k, v in profiles.notebook_values(
            "05_sdr_learnable", "smoke").items() if k != "n_heldout"})
    with pytest.raises(ValueError, match="lwta_training"):
        recipes.StochasticLWTA.from_parameters(profiles.notebook_values("03_stochastic_lwta", "smoke"),
                                               lwta_training="nope")


def test_a_recipe_trains_once_then_loads_the_same_models(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(tmp_path / "cache"))
    cfg = recipes.StochasticWeights.from_parameters(profiles.notebook_values("05_sdr_learnable", "smoke"),
                                                    n_train=200, n_heldout=100, epochs=1)
    first = recipes.train_stochastic_weights(cfg, torch.device("cpu"), names=["Vanilla MLP", "DropConnect"],
                                             progress=False)
    again = recipes.train_stochastic_weights(cfg, torch.device("cpu"), names=["DropConnect", "Vanilla MLP"],
                                             progress=False)
    assert not any(r.from_cache for r in first.values()) and all(r.from_cache for r in again.values())
    for name in first:
        assert first[name].key == again[name].key
        for a, b in zip(first[name].model.state_dict().values(), again[name].model.state_dict().values()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown model"):
        recipes.train_stochastic_weights(cfg, torch.device("cpu"), names=["nope"], progress=False)


def test_is_random_by_layer_type_and_by_probe():
    x = torch.rand(4, 1, 28, 28)
    mlp = models.build_model("mlp", seed=0, device="cpu", widths=[8, 8])
    assert not is_random(mlp.eval()) and not is_random(mlp, x) and random_layers(mlp) == []
    noisy = models.build_model("mlp", seed=0, device="cpu", widths=[8, 8], layer="pni", activation="stochastic_lwta",
                               activation_kwargs={"units": 2}).eval()
    with torch.no_grad():
        assert not torch.equal(noisy(x), noisy(x))  # PNI noise and LWTA sampling, also in eval mode
    assert is_random(noisy) and len(random_layers(noisy)) >= 2
    for kind in ("sdr-learnable", "dropconnect"):
        assert is_random(models.build_model("mlp", seed=0, device="cpu", widths=[8], layer=kind).eval())
    with pytest.raises(ValueError, match="bad arguments"):
        models.build_model("mlp", seed=0, device="cpu", activation="relu", activation_kwargs={"units": 2})


class _Jitter(nn.Module):
    """A random module the layer-type list does not know: only the probe can see it."""

    def __init__(self, net, scale):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return self.net(x) + self.scale * torch.randn(x.shape[0], 10)


def test_the_probe_catches_unknown_randomness_beyond_its_tolerance():
    x = torch.rand(4, 1, 28, 28)
    mlp = models.build_model("mlp", seed=0, device="cpu", widths=[8]).eval()
    jitter = _Jitter(mlp, 1e-3)
    assert not is_random(jitter)  # no known layer, no probe
    assert is_random(jitter, x)
    assert not is_random(jitter, x, tol=1.0)  # differences below the tolerance count as deterministic
    with pytest.raises(ValueError, match="tol"):
        is_random(jitter, x, tol=-1)
