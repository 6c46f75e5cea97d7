"""Notebook 04's recipes: Table 1's five defenses of Matyasko & Chau 2018 for the MLP and LeNet-5, and the proxy judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ...core import data
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config, select
from ...training import objectives
from .. import critic



@dataclass(frozen=True)
class AdversaryCritic(Config):
    """Notebook 04's training parameters (Matyasko & Chau 2018: Table 1's five defenses, the proxy judge)."""

    seed: int
    n_train: int
    mlp_widths: Sequence[int]
    lenet_channels: Sequence[int]
    lenet_hidden: Sequence[int]
    critic_widths: Sequence[int]
    epochs: int
    pretrain_epochs: int
    batch_size: int
    lr: float
    model_lr: float
    critic_lr: float
    lr_decay_every: int
    lam_mlp: float
    lam_lenet: float
    lam_rec: float
    grad_penalty: float
    attack_steps: int
    at_eps: float
    vat_eps: float
    margin_lam: float
    judge_eps: float
    judge_steps: int
    judge_epochs: int

    def training_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """n_train class-balanced MNIST training images (seeded)."""
        return data.load_dataset("mnist", "train", n=self.n_train, seed=self.seed, device=device)

    def networks(self) -> dict[str, tuple[str, dict, float]]:
        """{"MLP" | "LeNet-5": (architecture, its arguments, the critic weight lambda)}."""
        return {"MLP": ("mlp", {"widths": self.mlp_widths}, self.lam_mlp),
                "LeNet-5": ("lenet5", {"channels": self.lenet_channels, "hidden": self.lenet_hidden,
                                       "first_padding": 0}, self.lam_lenet)}

    def baselines(self) -> dict[str, Any]:
        """Table 1's baselines: {"Reference": None (CE), "AT", "VAT", "Margin": their objectives}."""
        return {"Reference": None, "AT": objectives.FGSMAdversarialTraining(self.at_eps),
                "VAT": objectives.VirtualAdversarialTraining(self.vat_eps),
                "Margin": objectives.MarginMaximization(self.margin_lam)}


ADVERSARY_CRITIC_DEFENSES = ("Reference", "AT", "VAT", "Margin", "Critic")


def _train_with_critic(cfg: AdversaryCritic, x, y, arch: str, kw: dict, lam: float, device, progress: bool) -> FitResult:
    """``pretrain_epochs`` of CE (an initial estimate of the class confidences, the paper), then
    ``epochs`` of eq. 5 + eq. 6 with the critic (alternating updates, Adam with beta1 0.5, both
    learning rates halved every ``lr_decay_every`` epochs)."""
    net = models.build_model(arch, seed=cfg.seed, device=device, **kw)
    fit(net, x, y, optimizer={"name": "adam", "lr": cfg.lr}, epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, desc=f"{arch} pretrain", progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        disc = critic.Critic(widths=cfg.critic_widths).to(device)
    schedule = {"step_size": cfg.lr_decay_every, "gamma": 0.5}
    objective = critic.AdversaryCritic(disc, lam=lam, lam_rec=cfg.lam_rec, penalty=cfg.grad_penalty,
                                       attack_steps=cfg.attack_steps,
                                       critic_optimizer={"name": "adam", "lr": cfg.critic_lr, "betas": (0.5, 0.999)},
                                       critic_lr_schedule=schedule)
    return fit(net, x, y, objective=objective, lr_schedule=schedule, epochs=cfg.epochs,
               optimizer={"name": "adam", "lr": cfg.model_lr, "betas": (0.5, 0.999)}, batch_size=cfg.batch_size,
               seed=cfg.seed, desc=f"{arch} critic", progress=progress)


def train_adversary_critic(cfg: AdversaryCritic, device: torch.device, networks: Sequence[str] | None = None,
                           defenses: Sequence[str] | None = None,
                           progress: bool = True) -> dict[tuple[str, str], FitResult]:
    """Notebook 04: each network ("MLP", "LeNet-5") with each defense of Table 1.

    The baselines train for ``epochs`` with Adam (lr ``cfg.lr``): "Reference" (CE), "AT" (FGSM
    adversarial training, eq. 2), "VAT", "Margin"; "Critic" is ``_train_with_critic``.

    Args:
        networks: a subset of ("MLP", "LeNet-5").   defenses: a subset of ``ADVERSARY_CRITIC_DEFENSES``.
    Returns:
        {(network, defense): FitResult}.
    Raises:
        ValueError: an unknown network or defense.
    """
    x, y = cfg.training_data(device)
    baselines = cfg.baselines()
    chosen = select(dict.fromkeys(ADVERSARY_CRITIC_DEFENSES), defenses)
    out = {}
    for net_name, (arch, kw, lam) in select(cfg.networks(), networks).items():
        for name in chosen:
            if name == "Critic":
                out[net_name, name] = _train_with_critic(cfg, x, y, arch, kw, lam, device, progress)
                continue
            net = models.build_model(arch, seed=cfg.seed, device=device, **kw)
            out[net_name, name] = fit(net, x, y, objective=baselines[name], optimizer={"name": "adam", "lr": cfg.lr},
                                      epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                                      desc=f"{net_name} {name}", progress=progress)
    return out


def train_judge(cfg: AdversaryCritic, device: torch.device, progress: bool = True) -> FitResult:
    """Notebook 04's proxy judge for Table 2: a differently built CNN (``MnistCNN`` 16/32 channels,
    256 hidden, its own seed ``seed + 100``), ``pretrain_epochs`` of CE, then ``judge_epochs`` of
    PGD-L2 adversarial training (Madry et al. 2018) at radius ``judge_eps`` with ``judge_steps`` steps."""
    x, y = cfg.training_data(device)
    judge = models.build_model("mnist_cnn", seed=cfg.seed + 100, device=device, channels=(16, 32), hidden=256)
    fit(judge, x, y, optimizer={"name": "adam", "lr": cfg.lr}, epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size,
        seed=cfg.seed + 100, desc="judge pretrain", progress=progress)
    return fit(judge, x, y, objective=objectives.PGDAdversarialTraining(
        cfg.judge_eps, 2.5 * cfg.judge_eps / cfg.judge_steps, cfg.judge_steps, norm="2"),
        optimizer={"name": "adam", "lr": cfg.lr}, epochs=cfg.judge_epochs, batch_size=cfg.batch_size,
        seed=cfg.seed + 100, desc="judge (PGD-L2 training)", progress=progress)


__all__ = ["AdversaryCritic", "ADVERSARY_CRITIC_DEFENSES", "train_adversary_critic", "train_judge"]
