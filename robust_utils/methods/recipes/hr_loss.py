"""Notebook 02's recipe: the CNN trained with CE and with the HR loss (Picot et al., eq. 3), per seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...core import data
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config
from ...evaluation.robustness import RobustAccuracyMonitor



@dataclass(frozen=True)
class HRLoss(Config):
    """Notebook 02's training parameters (Picot et al.: the HR loss, eq. 3, against CE)."""

    seed: int
    n_seeds: int
    dataset: str
    n_train: int
    n_val: int
    architecture: str
    channels: Sequence[int]
    hidden: int
    optimizer: str
    lr: float
    momentum: float
    epochs: int
    batch_size: int
    alpha: float
    eps_grid: Sequence[float]
    attack_batch_size: int

    @property
    def seeds(self) -> list[int]:
        """seed, seed + 1, ..., one per independent training."""
        return [self.seed + i for i in range(self.n_seeds)]

    def training_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """n_train class-balanced training images of ``dataset`` (seeded), float32 in [0, 1], int64 labels."""
        return data.load_dataset(self.dataset, "train", n=self.n_train, seed=self.seed, device=device)

    def validation_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Figure 1's monitoring set: n_val test images (seed + 1), as the paper draws them from the test set."""
        return data.load_dataset(self.dataset, "test", n=self.n_val, seed=self.seed + 1, device=device)

    @property
    def optimizer_spec(self) -> dict:
        """The ``fit`` optimiser spec (momentum only for SGD)."""
        return {"name": self.optimizer, "lr": self.lr, **({"momentum": self.momentum} if self.optimizer == "sgd" else {})}


def train_hr_loss(cfg: HRLoss, device: torch.device, seeds: Sequence[int] | None = None,
                  progress: bool = True) -> dict[tuple[str, int], FitResult]:
    """Notebook 02: for each seed, the network trained with CE and with the HR loss (alpha ``cfg.alpha``).

    Both losses get the same network, initialisation (the seed), data order and optimiser; after
    every epoch Figure 1's monitor records the accuracy under CE-FGSM at each eps of ``cfg.eps_grid``
    on the validation set (history keys "val_acc@eps=<eps>").

    Args:
        cfg: the configuration.   device: where to train.   seeds: a subset of ``cfg.seeds`` (default all).
    Returns:
        {(loss, seed): FitResult}, loss "ce" or "hr".
    """
    x, y = cfg.training_data(device)
    x_val, y_val = cfg.validation_data(device)
    monitor = RobustAccuracyMonitor(x_val, y_val, cfg.eps_grid, attack="fgsm", loss="ce", batch_size=cfg.attack_batch_size)
    loss_kwargs = {"ce": {}, "hr": {"alpha": cfg.alpha}}
    out = {}
    for s in cfg.seeds if seeds is None else seeds:
        for loss in ("ce", "hr"):
            net = models.build_model(cfg.architecture, seed=s, device=device, channels=cfg.channels, hidden=cfg.hidden)
            out[loss, s] = fit(net, x, y, loss=loss, loss_kwargs=loss_kwargs[loss], optimizer=cfg.optimizer_spec,
                               epochs=cfg.epochs, batch_size=cfg.batch_size, seed=s, callbacks=[monitor],
                               desc=f"{loss.upper()} seed {s}", progress=progress)
    return out


__all__ = ["HRLoss", "train_hr_loss"]
