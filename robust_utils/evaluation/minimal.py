"""Minimal-perturbation attacks measured: per-sample L2 distances and rho_adv (Matyasko & Chau 2018, eq. 8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..core.checks import check_eps, check_images, check_labels, check_positive_int
from .metrics import predict


@dataclass(frozen=True)
class MinimalPerturbation:
    """Per-sample outcome of a minimal-perturbation attack (DeepFool, CW-L2, eq. 7's attack).

    Attributes (N = number of test points, all CPU tensors):
        distance: (N,) float32, ||x_adv - x||_2 in pixel units of [0, 1]; 0 for points already
            misclassified (they are not attacked).
        ratio: (N,) float32, distance / ||x||_2, the summand of rho_adv (eq. 8).
        fooled: (N,) bool, misclassified at the start or x_adv misclassified.
        x_adv: (N, C, H, W) float32 adversarial images (x itself for misclassified points).
    """

    distance: torch.Tensor
    ratio: torch.Tensor
    fooled: torch.Tensor
    x_adv: torch.Tensor = field(repr=False)

    @property
    def rho_adv(self) -> float:
        """rho_adv = mean over all N points of ||r||_2 / ||x||_2 (Matyasko & Chau 2018, eq. 8)."""
        return self.ratio.mean().item()

    @property
    def success_rate(self) -> float:
        """Share of the N points that end misclassified (1.0 for a complete minimal attack)."""
        return self.fooled.float().mean().item()

    def robust_accuracy(self, eps: float) -> float:
        """Accuracy within an L2 budget: the share of points neither misclassified nor fooled by
        a perturbation of L2 norm <= eps (pixel units of [0, 1])."""
        eps = check_eps(eps, "2")
        return (~(self.fooled & (self.distance <= eps))).float().mean().item()


def minimal_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable,
                         batch_size: int = 500) -> MinimalPerturbation:
    """Run a minimal-perturbation attack and measure its L2 perturbations (for rho_adv, eq. 8).

    Convention (the authors' code, the authors' code, github.com/aam-at/adversary_critic): points that the model already
    misclassifies are not attacked and contribute ||r|| = 0; the rho_adv mean is over all N
    points. Points the attack fails to fool keep the perturbation it returned (reported through
    ``fooled`` / ``success_rate``, so that a weak attack is visible).

    Args:
        model: maps x -> logits (N, K).   x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        attack: ``(model, x, y) -> x_adv`` with no budget, e.g.
            ``lambda m, x, y: attacks.deepfool(m, x, y, steps=500, max_step=0.1)``.
        batch_size: samples per attack call.
    Returns:
        MinimalPerturbation (its ``rho_adv`` is eq. 8).
    Raises:
        ValueError: bad x, y or batch_size (before any attack runs).
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    correct = predict(model, x) == y
    x_adv = x.detach().clone()
    idx = correct.nonzero().squeeze(1)
    for part in idx.split(batch_size):
        x_adv[part] = attack(model, x[part], y[part]).detach()
    fooled = predict(model, x_adv) != y
    distance = (x_adv - x).flatten(1).norm(dim=1)
    distance[~correct] = 0.0
    ratio = distance / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return MinimalPerturbation(distance.cpu(), ratio.cpu(), fooled.cpu(), x_adv.cpu())


def rho_adv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, batch_size: int = 500) -> float:
    """rho_adv(A_f) = 1/|D| sum_x ||r(x)||_2 / ||x||_2 (Matyasko & Chau 2018, eq. 8).

    ``minimal_perturbation(model, x, y, attack, batch_size).rho_adv``: see there for shapes, the
    convention for misclassified points (r = 0) and the errors raised.
    """
    return minimal_perturbation(model, x, y, attack, batch_size).rho_adv


__all__ = ["MinimalPerturbation", "minimal_perturbation", "rho_adv"]
