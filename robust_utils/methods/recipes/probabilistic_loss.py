"""Notebook 01's recipe: the Inception CNN trained with CE, the EM-calibrated soft labels, label smoothing and eq. 6 (paper 000)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...core import data
from ...nn import models
from ...training.loop import FitResult, fit
from .base import Config, select
from .. import calibration



@dataclass(frozen=True)
class ProbabilisticLoss(Config):
    """Notebook 01's training parameters (paper 000: Inception CNN, AdamW, Algorithm 1's soft labels)."""

    seed: int
    n_train: int
    width: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    prior: float
    variance: str
    em_tol: float
    em_max_iter: int
    smoothing: float

    def training_data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """n_train class-balanced MNIST training images (seeded): x (N, 1, 28, 28) float32 in [0, 1], y (N,) int64."""
        return data.load_dataset("mnist", "train", n=self.n_train, seed=self.seed, device=device)

    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> calibration.Calibration:
        """Algorithm 1 (EM with the per-sample prior) on the flattened training images, at this config's variance."""
        return calibration.em_calibrate(x.flatten(1), y, 10, prior=self.prior, variance=self.variance,
                                        tol=self.em_tol, max_iter=self.em_max_iter)


PROBABILISTIC_LOSS_MODELS = ("CE", "calibrated (EM)", "label smoothing", "eq. 6")


def train_probabilistic_loss(cfg: ProbabilisticLoss, device: torch.device, names: Sequence[str] | None = None,
                             calibrated: calibration.Calibration | None = None,
                             progress: bool = True) -> dict[str, FitResult]:
    """Notebook 01: the Inception CNN (width ``cfg.width``) trained four ways on the same data and init.

    "CE" (cross-entropy), "calibrated (EM)" (soft CE on Algorithm 1's tau, eq. 9), "label
    smoothing" (soft CE on the prior's off-class mass, the control) and "eq. 6" (the push-away loss).

    Args:
        cfg: the configuration.   device: where to train.   names: a subset of
            ``PROBABILISTIC_LOSS_MODELS`` (default all).   calibrated: ``cfg.calibrate``'s result,
            if the caller has it already (EM is deterministic: the same tau either way).
    Returns:
        {name: FitResult}.
    Raises:
        ValueError: an unknown name.
    """
    x, y = cfg.training_data(device)
    chosen = select(dict.fromkeys(PROBABILISTIC_LOSS_MODELS), names)
    targets = {"CE": None, "eq. 6": None}
    if "calibrated (EM)" in chosen:
        targets["calibrated (EM)"] = (calibrated or cfg.calibrate(x, y)).tau
    if "label smoothing" in chosen:
        targets["label smoothing"] = calibration.label_smoothing_targets(y, 10, mass=cfg.smoothing)
    loss = {"CE": "ce", "calibrated (EM)": "soft_ce", "label smoothing": "soft_ce", "eq. 6": "push_away"}
    out = {}
    for name in chosen:
        net = models.build_model("inception_mnist", seed=cfg.seed, device=device, width=cfg.width)
        out[name] = fit(net, x, y, loss=loss[name], targets=targets[name], epochs=cfg.epochs, batch_size=cfg.batch_size,
                        seed=cfg.seed, optimizer={"name": "adamw", "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                        desc=name, progress=progress)
    return out


__all__ = ["ProbabilisticLoss", "PROBABILISTIC_LOSS_MODELS", "train_probabilistic_loss"]
