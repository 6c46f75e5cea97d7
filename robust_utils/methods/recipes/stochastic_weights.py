"""Notebook 05's recipe: the MLP with plain, SDR-decay, SDR-Learnable and DropConnect layers (Khan et al. 2019), and notebook 06's adversarially trained MLPs on the same data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...core import data
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config, select
from ...training import objectives
from .. import sdr
from ..lwta_elbo import ELBO



@dataclass(frozen=True)
class StochasticWeights(Config):
    """Notebook 05's training parameters (Khan et al. 2019: the 784-100-100-100-10 MLP four ways)."""

    seed: int
    n_train: int
    n_heldout: int
    widths: Sequence[int]
    epochs: int
    batch_size: int
    lr: float
    sdr_beta: float
    sdr_zeta: float
    sdr_tau: int
    sigma_low: float
    sigma_high: float
    sigma_step: float
    schedule_every: int
    plateau_tol: float
    schedule_max_drop: float
    dropconnect_p: float

    def training_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_train, y_train, x_held, y_held): ``n_heldout`` class-balanced images held out of MNIST's
        training split for the variance schedule, and ``n_train`` of the rest for training."""
        x_all, y_all = data.load_dataset("mnist", "train", device=device)
        held = torch.zeros(len(y_all), dtype=torch.bool)
        held[data.balanced_subset(y_all.cpu(), self.n_heldout, self.seed)] = True
        held = held.to(device)
        x_rest, y_rest = x_all[~held], y_all[~held]
        keep = data.balanced_subset(y_rest.cpu(), self.n_train, self.seed).to(device)
        return x_rest[keep], y_rest[keep], x_all[held], y_all[held]

    def models(self, x_held: torch.Tensor, y_held: torch.Tensor) -> dict[str, tuple[str, dict, list]]:
        """{name: (layer kind, layer arguments, training callbacks)}: Table 1's four models and
        SDR-Learnable without the variance schedule (section 6)."""
        return {
            "Vanilla MLP": ("linear", {}, []),
            "SDR-decay MLP": ("sdr-decay", {}, [sdr.SDRDecay(self.sdr_beta, self.sdr_zeta, self.sdr_tau)]),
            "Learnable SDR MLP": ("sdr-learnable", {}, [sdr.VarianceSchedule(
                x_held, y_held, self.sigma_low, self.sigma_high, self.sigma_step, self.schedule_every, self.plateau_tol,
                max_drop=self.schedule_max_drop)]),
            "DropConnect": ("dropconnect", {"p": self.dropconnect_p}, []),
            "Learnable SDR MLP, no variance schedule": ("sdr-learnable", {}, [sdr.VarianceSchedule(
                x_held, y_held, self.sigma_low, self.sigma_high, self.sigma_step, every=10**9)]),  # thresholds never move
        }


def train_stochastic_weights(cfg: StochasticWeights, device: torch.device, names: Sequence[str] | None = None,
                             progress: bool = True) -> dict[str, FitResult]:
    """Notebook 05: the MLP ``cfg.widths`` with plain, SDR-decay, SDR-Learnable and DropConnect layers
    (and SDR-Learnable without the schedule), cross-entropy and plain SGD (eq. 1's mean update).

    Returns:
        {name: FitResult}.
    Raises:
        ValueError: an unknown name.
    """
    x, y, x_held, y_held = cfg.training_data(device)
    out = {}
    for name, (kind, kw, callbacks) in select(cfg.models(x_held, y_held), names).items():
        net = models.build_model("mlp", seed=cfg.seed, device=device, widths=cfg.widths, layer=kind, layer_kwargs=kw)
        out[name] = fit(net, x, y, optimizer={"name": "sgd", "lr": cfg.lr}, epochs=cfg.epochs, batch_size=cfg.batch_size,
                        seed=cfg.seed, callbacks=callbacks, desc=name, progress=progress)
    return out




def train_adversarial_mlps(cfg: StochasticWeights, device: torch.device, eps: float, steps: int, epochs: int,
                           seed: int, kl_weight: float = 1e-3, progress: bool = True) -> dict[str, FitResult]:
    """Notebook 06's own models: notebook 05's MLP, data and optimiser, trained with PGD adversarial
    training (Madry et al. 2018, eq. 2.1; step 2.5 eps / steps) as plain ReLU ("PGD-AT MLP"), with
    PNI layers (Rakin et al. 2019, layer-wise alpha, noise on in training and test), and with
    stochastic LWTA activations (Panousis et al. 2021, U = 2, trained as the ELBO of PGD-AT plus
    kl_weight x KL). The three share one objective, so PGD-AT is the twin of the other two.

    Args:
        cfg: notebook 05's configuration (its data, widths, lr, batch size).   eps: training budget,
            Linf, pixel units of [0, 1].   steps: PGD steps.   epochs, seed: training epochs and seed.
    Returns:
        {"PGD-AT MLP" | "PNI MLP (PGD-AT)" | "Stochastic LWTA MLP (PGD-AT)": FitResult}.
    """
    x, y, _, _ = cfg.training_data(device)
    at = objectives.PGDAdversarialTraining(eps=eps, alpha=2.5 * eps / steps, steps=steps)
    recipes = {
        "PGD-AT MLP": ({}, at),
        "PNI MLP (PGD-AT)": ({"layer": "pni"}, at),
        "Stochastic LWTA MLP (PGD-AT)": ({"activation": "stochastic_lwta", "activation_kwargs": {"units": 2}},
                                         ELBO(at, kl_weight=kl_weight)),
    }
    out = {}
    for name, (kw, objective) in recipes.items():
        net = models.build_model("mlp", seed=seed, device=device, widths=cfg.widths, **kw)
        out[name] = fit(net, x, y, objective=objective, optimizer={"name": "sgd", "lr": cfg.lr}, epochs=epochs,
                        batch_size=cfg.batch_size, seed=seed, desc=name, progress=progress)
    return out


__all__ = ["StochasticWeights", "train_stochastic_weights", "train_adversarial_mlps"]
