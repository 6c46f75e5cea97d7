"""Notebook 03's recipe: the WideResNets of Kaspar et al.'s Table 1 (attack mixtures, PNI, Stochastic LWTA) on CIFAR-10."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ...core import data
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config, select
from ...training import objectives
from ..lwta_elbo import ELBO



@dataclass(frozen=True)
class StochasticLWTA(Config):
    """Notebook 03's training parameters (Kaspar et al.'s Table 1: WideResNets on CIFAR-10)."""

    seed: int
    dataset: str
    n_train: int
    depth: int
    widen_factor: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    train_eps: float
    train_alpha: float
    train_steps: int
    noise_std: float
    cw_train_steps: int
    pni_noise: str
    lwta_units: int
    lwta_temperature: float
    lwta_test_temperature: float
    lwta_ibp: bool
    lwta_training: str
    kl_weight: float

    def __post_init__(self) -> None:
        if self.lwta_training not in ("mixture", "pgd_at"):
            raise ValueError(f"unknown lwta_training {self.lwta_training!r}; valid: 'mixture', 'pgd_at'")

    def training_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """n_train class-balanced training images of ``dataset`` (seeded): x (N, 3, 32, 32) float32 in [0, 1]."""
        return data.load_dataset(self.dataset, "train", n=self.n_train, seed=self.seed, device=device)

    def _mixture(self, *members: str) -> objectives.AttackMixtureTraining:
        return objectives.AttackMixtureTraining(attacks=list(members), eps=self.train_eps, alpha=self.train_alpha,
                                                pgd_steps=self.train_steps, noise_std=self.noise_std,
                                                cw_kwargs={"steps": self.cw_train_steps})

    def table1(self) -> dict[str, tuple[dict, Any]]:
        """Table 1's rows: {name: (WideResNet arguments beyond depth and width, objective or None for CE)}."""
        pni = dict(layer="pni", layer_kwargs={"noise": self.pni_noise})
        lwta = dict(activation="stochastic_lwta", layer="ibp" if self.lwta_ibp else "plain",
                    activation_kwargs={"units": self.lwta_units, "temperature": self.lwta_temperature,
                                       "test_temperature": self.lwta_test_temperature})
        lwta_objective = (self._mixture("pgd") if self.lwta_training == "mixture" else objectives.PGDAdversarialTraining(
            eps=self.train_eps, alpha=self.train_alpha, steps=self.train_steps, attack_mode="eval"))
        full = ("noise", "pgd", "fgsm", "cw")
        return {
            "Regular training": ({}, None),
            "Noise Injection": (pni, None),
            "Smoothing": ({}, self._mixture("noise")),
            "Smoothing, PGD": ({}, self._mixture("noise", "pgd")),
            "Smoothing, PGD, FGSM": ({}, self._mixture("noise", "pgd", "fgsm")),
            "Smoothing, PGD, FGSM, CW": ({}, self._mixture(*full)),
            "Smoothing, PGD, FGSM, CW + Noise Injection": (pni, self._mixture(*full)),
            "Stochastic LWTA": (lwta, ELBO(lwta_objective, kl_weight=self.kl_weight)),
        }


def train_table1_cifar(cfg: StochasticLWTA, device: torch.device, names: Sequence[str] | None = None,
                       progress: bool = True) -> dict[str, FitResult]:
    """Notebook 03: the WideResNet-``depth``-``widen_factor`` of each Table 1 row (``cfg.table1()``),
    SGD with momentum and weight decay (PNI's alphas exempt), the same data, init and data order.

    Returns:
        {row name: FitResult}.
    Raises:
        ValueError: an unknown name.
    """
    x, y = cfg.training_data(device)
    out = {}
    for name, (kw, objective) in select(cfg.table1(), names).items():
        net = models.build_model("wide_resnet", seed=cfg.seed, device=device, depth=cfg.depth,
                                 widen_factor=cfg.widen_factor, **kw)
        out[name] = fit(net, x, y, objective=objective, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                        optimizer={"name": "sgd", "lr": cfg.lr, "momentum": cfg.momentum,
                                   "weight_decay": cfg.weight_decay}, desc=name, progress=progress)
    return out


__all__ = ["StochasticLWTA", "train_table1_cifar"]
