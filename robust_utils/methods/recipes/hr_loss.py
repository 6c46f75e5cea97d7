"""Notebook 02's recipe: a network trained with CE and with the HR loss (Picot et al., eq. 3), per seed,
for each column of Table 1 (MNIST: the 2-conv + 2-fc CNN; CIFAR-10 and SVHN: the CIFAR ResNet with
6n + 2 layers, n = 1 in the paper, Appendix C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ...core import data
from ...evaluation.robustness import RobustAccuracyMonitor
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config

#: Table 1's columns and the notebook parameter naming each column's dataset.
COLUMNS = {"MNIST": "dataset", "CIFAR-10": "cifar_dataset", "SVHN": "svhn_dataset"}
#: The parameters of the CIFAR-10 and SVHN columns (the paper: "the same setup as for CIFAR-10" for SVHN).
_COLOUR = {"n_seeds": "cifar_n_seeds", "n_train": "cifar_n_train", "optimizer": "cifar_optimizer",
           "lr": "cifar_lr", "epochs": "cifar_epochs", "batch_size": "cifar_batch_size"}


@dataclass(frozen=True)
class HRLoss(Config):
    """Notebook 02's training parameters for one column of Table 1 (Picot et al.: the HR loss, eq. 3, against CE).

    ``architecture`` is "mnist_cnn" (``channels``, ``hidden``) or "cifar_resnet" (``resnet_n``: 6n + 2
    layers; CIFAR-10 inputs are standardised inside the model, SVHN's are not: the paper's "no data
    processing" for SVHN, Appendix C).
    """

    seed: int
    n_seeds: int
    dataset: str
    n_train: int
    n_val: int
    architecture: str
    channels: Sequence[int]
    hidden: int
    resnet_n: int
    optimizer: str
    lr: float
    momentum: float
    epochs: int
    batch_size: int
    alpha: float
    eps_grid: Sequence[float]
    attack_batch_size: int

    @classmethod
    def column(cls, params: Mapping[str, Any], column: str) -> "HRLoss":
        """The configuration of Table 1's ``column`` ("MNIST", "CIFAR-10" or "SVHN") from notebook 02's parameters.

        MNIST uses the notebook's main parameters; CIFAR-10 and SVHN use ``cifar_dataset`` /
        ``svhn_dataset`` and the ``cifar_*`` parameters with the CIFAR ResNet.
        Raises:
            ValueError: an unknown column or a missing parameter.
        """
        if column not in COLUMNS:
            raise ValueError(f"unknown column {column!r}; valid: {', '.join(COLUMNS)}")
        if column == "MNIST":
            return cls.from_parameters(params)
        overrides = {field: params[name] for field, name in _COLOUR.items() if name in params}
        return cls.from_parameters(params, dataset=params.get(COLUMNS[column]), architecture="cifar_resnet",
                                   **overrides)

    @property
    def seeds(self) -> list[int]:
        """seed, seed + 1, ..., one per independent training."""
        return [self.seed + i for i in range(self.n_seeds)]

    @property
    def model_kwargs(self) -> dict:
        """The arguments of ``models.build_model(architecture, ...)``."""
        if self.architecture == "cifar_resnet":
            return {"depth": 6 * self.resnet_n + 2, "normalize": self.dataset.startswith("cifar10")}
        return {"channels": self.channels, "hidden": self.hidden}

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
    Raises:
        DataError: the dataset's files are missing or corrupt (``core.data``).
    """
    x, y = cfg.training_data(device)
    x_val, y_val = cfg.validation_data(device)
    monitor = RobustAccuracyMonitor(x_val, y_val, cfg.eps_grid, attack="fgsm", loss="ce", batch_size=cfg.attack_batch_size)
    loss_kwargs = {"ce": {}, "hr": {"alpha": cfg.alpha}}
    out = {}
    for s in cfg.seeds if seeds is None else seeds:
        for loss in ("ce", "hr"):
            net = models.build_model(cfg.architecture, seed=s, device=device, **cfg.model_kwargs)
            out[loss, s] = fit(net, x, y, loss=loss, loss_kwargs=loss_kwargs[loss], optimizer=cfg.optimizer_spec,
                               epochs=cfg.epochs, batch_size=cfg.batch_size, seed=s, callbacks=[monitor],
                               desc=f"{cfg.dataset}: {loss.upper()} seed {s}", progress=progress)
    return out


__all__ = ["COLUMNS", "HRLoss", "train_hr_loss"]
