"""The MNIST defenses of notebooks 01-05, and notebook 06's own MLPs, for the cross-defense evaluation.

Every model comes from the recipe its paper notebook calls (``methods.recipes``), configured from
that notebook's parameters at the profile being evaluated, so ``training.fit`` finds the
checkpoint the paper notebook wrote. Notebook 03 trains on CIFAR-10; its two random defenses, PNI
(Rakin et al. 2019) and Stochastic LWTA (Panousis et al. 2021), are trained here on MNIST with
notebook 05's MLP and data, beside the same MLP with plain PGD adversarial training (Madry et al.
2018), which is their undefended-by-noise twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ..nn.randomness import is_random
from . import recipes


@dataclass
class Defense:
    """One trained MNIST model of the leaderboard.

    Attributes:
        name: the leaderboard label.   key: its name in that notebook.   notebook: the notebook that trains it (stem).
        paper: the ``evaluation.reference`` key of its paper ("" for ours).   architecture: a short description.
        model: the trained model, in eval mode.   twin: the name of the model trained the same way
            without the defense (same architecture, data and optimiser), None for a twin itself.
        random: its forward pass is random in eval mode (``nn.randomness.is_random``).
        from_cache: loaded, not trained.
    """

    name: str
    key: str
    notebook: str
    paper: str
    architecture: str
    model: nn.Module = field(repr=False)
    twin: str | None
    random: bool
    from_cache: bool


def _describe(model: nn.Module) -> str:
    return f"{type(model).__name__}, {sum(q.numel() for q in model.parameters()):,} parameters"


#: Notebook 06's labels: {notebook: {recipe key: (label, twin label)}}.
LABELS = {
    "01_probabilistic_loss": {"CE": ("CE (Inception, nb 01)", None),
                              "calibrated (EM)": ("Probabilistic loss (EM soft labels)", "CE (Inception, nb 01)")},
    "02_hr_loss": {"ce": ("CE (CNN, nb 02)", None), "hr": ("HR loss", "CE (CNN, nb 02)")},
    "04_adversary_critic": {"Reference": ("CE (LeNet-5, nb 04)", None),
                            "AT": ("FGSM-AT (LeNet-5)", "CE (LeNet-5, nb 04)"),
                            "Critic": ("Adversary critic", "CE (LeNet-5, nb 04)")},
    "05_sdr_learnable": {"Vanilla MLP": ("Vanilla MLP (nb 05)", None), "SDR-decay MLP": ("SDR-decay", "Vanilla MLP (nb 05)"),
                         "Learnable SDR MLP": ("SDR-Learnable", "Vanilla MLP (nb 05)"),
                         "DropConnect": ("DropConnect", "Vanilla MLP (nb 05)")},
    "06_adaptive_evaluation": {"PGD-AT MLP": ("PGD-AT MLP", "Vanilla MLP (nb 05)"),
                               "PNI MLP (PGD-AT)": ("PNI MLP (PGD-AT)", "PGD-AT MLP"),
                               "Stochastic LWTA MLP (PGD-AT)": ("Stochastic LWTA MLP (PGD-AT)", "PGD-AT MLP")},
}
PAPERS = {"01_probabilistic_loss": "", "02_hr_loss": "picot", "04_adversary_critic": "matyasko",
          "05_sdr_learnable": "khan", "PNI MLP (PGD-AT)": "rakin", "Stochastic LWTA MLP (PGD-AT)": "panousis"}


def _trained(parameters: Mapping[str, Mapping], device: torch.device, eps: float, steps: int, epochs: int, seed: int,
             kl_weight: float, progress: bool) -> dict[str, dict]:
    """{notebook: {recipe key: FitResult}} from each notebook's recipe, only the models notebook 06 uses."""
    p01 = recipes.ProbabilisticLoss.from_parameters(parameters["01_probabilistic_loss"])
    p02 = recipes.HRLoss.from_parameters(parameters["02_hr_loss"])
    p04 = recipes.AdversaryCritic.from_parameters(parameters["04_adversary_critic"])
    p05 = recipes.StochasticWeights.from_parameters(parameters["05_sdr_learnable"])
    nb04 = recipes.train_adversary_critic(p04, device, networks=["LeNet-5"], defenses=["Reference", "AT", "Critic"],
                                          progress=progress)
    return {
        "01_probabilistic_loss": recipes.train_probabilistic_loss(p01, device, names=["CE", "calibrated (EM)"],
                                                                  progress=progress),
        "02_hr_loss": {loss: r for (loss, _), r in recipes.train_hr_loss(p02, device, seeds=[p02.seed],
                                                                         progress=progress).items()},
        "04_adversary_critic": {d: r for (_, d), r in nb04.items()},
        "05_sdr_learnable": recipes.train_stochastic_weights(p05, device, names=list(LABELS["05_sdr_learnable"]),
                                                             progress=progress),
        "06_adaptive_evaluation": recipes.train_adversarial_mlps(p05, device, eps, steps, epochs, seed, kl_weight,
                                                                 progress),
    }


def mnist_defenses(parameters: Mapping[str, Mapping], device: torch.device, eps: float, steps: int, epochs: int,
                   seed: int, kl_weight: float = 1e-3, progress: bool = False) -> dict[str, Defense]:
    """Every MNIST defense of notebooks 01-05, and notebook 06's PGD-AT, PNI and LWTA MLPs.

    Args:
        parameters: {notebook stem: its parameters at the profile evaluated} for 01_probabilistic_loss,
            02_hr_loss, 04_adversary_critic and 05_sdr_learnable (``app.profiles.notebook_values``).
        device: where to train / load.   eps, steps, epochs, seed, kl_weight: ``recipes.train_adversarial_mlps``.
    Returns:
        {label: Defense} in leaderboard order; twins are included (twin=None).
    Raises:
        ValueError: a notebook's parameters lack a field its recipe needs.
    """
    runs = _trained(parameters, device, eps, steps, epochs, seed, kl_weight, progress)
    out: dict[str, Defense] = {}
    for notebook, labels in LABELS.items():
        for key, (label, twin) in labels.items():
            r = runs[notebook][key]
            paper = PAPERS.get(key, PAPERS.get(notebook, ""))
            out[label] = Defense(label, key, notebook, paper, _describe(r.model), r.model, twin, is_random(r.model),
                                 r.from_cache)
    return out


__all__ = ["Defense", "LABELS", "mnist_defenses"]
