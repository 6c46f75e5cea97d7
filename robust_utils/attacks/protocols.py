"""The two kinds of attack, as Foolbox 3 splits them, and small frozen attack configurations.

    FixedBudgetAttack          ``attack(model, x, y, eps) -> x_adv`` with ||x_adv - x|| <= eps
                               (FGSM, PGD: accuracy at a budget).
    MinimalPerturbationAttack  ``attack(model, x, y) -> x_adv``, as small a perturbation as the
                               attack finds (DeepFool, CW-L2, LocalSearch: rho_adv, Matyasko &
                               Chau 2018, eq. 8).

The configurations (``FGSM``, ``PGD``, ``DeepFool``, ``CWL2``) are frozen dataclasses: calling
one runs the attack with its settings, and ``label`` names it the same way everywhere (tables,
results.json, the leaderboard), so no label is rebuilt by hand. Every attack works in pixel
space [0, 1]; eps is in that scale and measured in the config's norm ("inf" or "2").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from ..core.losses import get_loss
from .cw import cw_l2
from .deepfool import deepfool
from .fgsm import fgsm
from .pgd import pgd


class FixedBudgetAttack(Protocol):
    """``attack(model, x, y, eps) -> x_adv``: x (N, C, H, W) float32 in [0, 1], y (N,) int64, eps in
    pixel units of [0, 1]; x_adv like x, in [0, 1], within eps of x in the attack's norm."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor: ...


class MinimalPerturbationAttack(Protocol):
    """``attack(model, x, y) -> x_adv``: no budget; x_adv like x, in [0, 1], misclassified where the
    attack succeeded, with as small a perturbation as it found."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def _loss_suffix(loss: str) -> str:
    return "" if loss == "ce" else f" ({loss.upper()})"


@dataclass(frozen=True)
class FGSM:
    """Fast gradient sign method (Goodfellow et al. 2015), Linf, one step, ascending ``loss``.

    Attributes:
        loss: a name of ``core.losses.LOSSES`` ("ce", "hr", ...).   loss_kwargs: its arguments.
    Call:
        (model, x, y, eps) -> x_adv, as ``attacks.fgsm``.
    Raises:
        ValueError: an unknown loss (at construction), bad x, y or eps (at the call).
    """

    loss: str = "ce"
    loss_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_loss(self.loss, **self.loss_kwargs)

    @property
    def label(self) -> str:
        """'FGSM', or 'FGSM (HR)' for another loss."""
        return "FGSM" + _loss_suffix(self.loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return fgsm(model, x, y, eps, loss_fn=get_loss(self.loss, **self.loss_kwargs))


@dataclass(frozen=True)
class PGD:
    """Projected gradient descent (Madry et al. 2018, eq. 2.1) in Linf or L2, ascending ``loss``.

    Attributes:
        steps: iterations per restart.   norm: "inf" or "2".   restarts: the worst case is kept.
        random_start: start from a uniform point of the ball (Madry et al.) or from x (BIM).
        rel_step: step size as a multiple of eps (default 2.5 / steps, Madry et al.'s rule).
        loss, loss_kwargs: the loss ascended (``core.losses``).
    Call:
        (model, x, y, eps) -> x_adv, as ``attacks.pgd``; eps = 0 returns a copy of x.
    Raises:
        ValueError: steps or restarts < 1, an unknown norm or loss (at construction).
    """

    steps: int = 40
    norm: str = "inf"
    restarts: int = 1
    random_start: bool = True
    rel_step: float | None = None
    loss: str = "ce"
    loss_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1 or not isinstance(self.restarts, int) or self.restarts < 1:
            raise ValueError(f"steps and restarts must be positive ints, got {self.steps!r}, {self.restarts!r}")
        if self.norm not in ("inf", "2"):
            raise ValueError(f"unknown norm {self.norm!r}; valid: 'inf', '2'")
        get_loss(self.loss, **self.loss_kwargs)

    def alpha(self, eps: float) -> float:
        """The step size at budget eps: rel_step * eps, or 2.5 eps / steps (Madry et al. 2018)."""
        return self.rel_step * eps if self.rel_step is not None else 2.5 * eps / self.steps

    @property
    def label(self) -> str:
        """e.g. 'PGD-40', 'PGD-50 x 2 restarts', 'PGD-20 (HR)', 'PGD-L2-50'."""
        name = f"PGD-{self.steps}" if self.norm == "inf" else f"PGD-L2-{self.steps}"
        if self.restarts > 1:
            name += f" x {self.restarts} restarts"
        if not self.random_start:
            name += " (no random start)"
        return name + _loss_suffix(self.loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        if eps == 0:
            return x.clone()
        return pgd(model, x, y, eps, self.alpha(eps), self.steps, norm=self.norm,
                   random_start=self.random_start, restarts=self.restarts,
                   loss_fn=get_loss(self.loss, **self.loss_kwargs))


@dataclass(frozen=True)
class DeepFool:
    """DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2), a minimal-perturbation L2 attack.

    Attributes:
        steps: iterations.   overshoot: the final step's overshoot.   max_step: a cap on each
            step's L2 norm (None: none).
    Call:
        (model, x, y) -> x_adv, as ``attacks.deepfool``.
    """

    steps: int = 50
    overshoot: float = 0.02
    max_step: float | None = None

    @property
    def label(self) -> str:
        """e.g. 'DeepFool-50' or 'DeepFool-500 (step <= 0.1)'."""
        return f"DeepFool-{self.steps}" + ("" if self.max_step is None else f" (step <= {self.max_step:g})")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return deepfool(model, x, y, steps=self.steps, overshoot=self.overshoot, max_step=self.max_step)


@dataclass(frozen=True)
class CWL2:
    """Carlini & Wagner 2017's L2 attack (untargeted), a minimal-perturbation attack.

    Attributes:
        steps: Adam steps per binary-search step.   c: the initial constant.   kappa: the margin.
        lr: Adam's learning rate.   binary_search_steps: searches over c.
    Call:
        (model, x, y) -> x_adv, as ``attacks.cw_l2``.
    """

    steps: int = 100
    c: float = 1.0
    kappa: float = 0.0
    lr: float = 0.05
    binary_search_steps: int = 5

    @property
    def label(self) -> str:
        """e.g. 'CW-L2 (5 x 100 steps)'."""
        return f"CW-L2 ({self.binary_search_steps} x {self.steps} steps)" + ("" if self.kappa == 0 else f", kappa {self.kappa:g}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cw_l2(model, x, y, c=self.c, kappa=self.kappa, steps=self.steps, lr=self.lr,
                     binary_search_steps=self.binary_search_steps)


def attack_fn(name: str, loss: str = "ce", loss_kwargs: dict | None = None, **kwargs) -> FixedBudgetAttack:
    """A fixed-budget attack by name: ``FGSM(loss, loss_kwargs)`` or ``PGD(loss=..., **kwargs)``.

    Args:
        name: "fgsm" or "pgd".
        loss: the loss the attack ascends, by name ("ce", "hr"); loss_kwargs: its arguments (e.g. alpha).
        kwargs: PGD's other settings (steps (default 40), norm, restarts, random_start, rel_step);
            without rel_step the step is 2.5 eps / steps (Madry et al. 2018).
    Returns:
        The frozen config, callable as ``(model, x, y, eps) -> x_adv``.
    Raises:
        ValueError: unknown name or loss, an argument the attack does not have.
    """
    loss_kwargs = dict(loss_kwargs or {})
    if name == "fgsm":
        if kwargs:
            raise ValueError(f"FGSM has no argument(s) {sorted(kwargs)}")
        return FGSM(loss, loss_kwargs)
    if name == "pgd":
        try:
            return PGD(loss=loss, loss_kwargs=loss_kwargs, **kwargs)
        except TypeError as exc:
            raise ValueError(f"PGD: {exc}") from None
    raise ValueError(f"unknown fixed-budget attack {name!r}; valid: fgsm, pgd")


__all__ = ["FixedBudgetAttack", "MinimalPerturbationAttack", "FGSM", "PGD", "DeepFool", "CWL2", "attack_fn"]
