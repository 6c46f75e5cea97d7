"""Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, eq. 3), and Foolbox 1.x's smallest-eps search."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from robust_utils.core.checks import check_eps, check_images, check_labels, check_positive_int
from robust_utils.core.losses import cross_entropy
from .grad import LossFn, input_gradient, require_grad_mode


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, loss_fn: LossFn | None = None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015, eq. 3): one Linf step of size eps.

    x_adv = clip_[0,1](x + eps * sign(grad_x L(model(x), y))).

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64 true labels.
        eps: Linf budget in pixel units of [0, 1], 0 <= eps <= 1.
        loss_fn: (logits, y) -> scalar to ascend; default cross-entropy. With a batch-level loss
            such as ``losses.hr_loss`` (its Renyi term is a log-mean-exp over the batch) the
            gradient of one sample depends on the rest of the batch, so results depend on the
            batch size and composition.
    Returns:
        (N, C, H, W) adversarial images in [0, 1] with ||x_adv - x||_inf <= eps; every pixel
        with a non-zero gradient moves by exactly eps unless the box [0, 1] clips it. A new,
        detached tensor of x's dtype and device (eps = 0 returns a copy of x).
    Raises:
        ValueError: eps < 0 or eps > 1, x not a float tensor in [0, 1], y not int64 (N,).
        RuntimeError: called inside ``torch.inference_mode``.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    eps = check_eps(eps, "inf")
    require_grad_mode()
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    _, grad = input_gradient(model, x, y, loss_fn or cross_entropy)
    return (x.detach() + eps * grad.sign()).clamp_(0.0, 1.0)


def foolbox_eps_grid(max_eps: float = 1.0, num: int = 1000) -> torch.Tensor:
    """Foolbox 1.x's FGSM grid: ``linspace(0, max_eps, num)[1:]`` (defaults max_eps 1, num 1000)."""
    check_eps(max_eps, "inf")
    check_positive_int(num, "num")
    return torch.linspace(0.0, float(max_eps), num)[1:]


class SmallestEps(NamedTuple):
    """Result of ``fgsm_smallest_eps``: x_adv (N, C, H, W) in [0, 1]; eps (N,) float32, inf where none fooled."""

    x_adv: torch.Tensor
    eps: torch.Tensor


def fgsm_smallest_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: torch.Tensor | None = None,
                      refine: bool = True, loss_fn: LossFn | None = None) -> SmallestEps:
    """FGSM as Foolbox 1.x runs it (``GradientSignAttack``): the smallest eps on a grid that fools the model.

    The protocol of Khan et al. (2019, section 2.1: "gradually increase the magnitude of eps until
    the input is misclassified"), who used Foolbox. The sign of the loss gradient at x is taken
    once (one forward/backward pass; for a stochastic model, one draw); then for eps = grid[0],
    grid[1], ... the image clip(x + eps * sign(grad)) is classified with one forward pass (for a
    stochastic model, a fresh draw at every eps) until it is misclassified. As in Foolbox, if the
    first success is among the first 20 grid points, the search is repeated on
    ``linspace(0, eps_found, 21)[1:]`` and the smallest success kept. Samples misclassified before
    the attack get eps = 0 and are returned unchanged (Foolbox does not attack them).

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64 true labels.
        eps_grid: increasing Linf budgets in (0, 1] (1-D tensor); default ``foolbox_eps_grid()``,
            999 points up to 1.   refine: Foolbox's refinement near the start of the grid.
        loss_fn: (logits, y) -> scalar to ascend; default cross-entropy.
    Returns:
        SmallestEps(x_adv, eps): x_adv at the smallest successful eps; where no eps of the grid
        succeeded, eps = inf and x_adv is the image at the largest eps (the strongest attempt).
    Raises:
        ValueError: bad x, y or grid (empty, not increasing, outside (0, 1]).
        RuntimeError: called inside ``torch.inference_mode``.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    grid = foolbox_eps_grid() if eps_grid is None else torch.as_tensor(eps_grid, dtype=torch.float32).flatten()
    if grid.numel() == 0 or not bool((grid > 0).all() and (grid <= 1).all()) or not bool((grid.diff() > 0).all()):
        raise ValueError("eps_grid must be a non-empty, strictly increasing sequence in (0, 1]")
    require_grad_mode()
    x = x.detach()
    n = x.shape[0]
    _, grad = input_gradient(model, x, y, loss_fn or cross_entropy)
    direction = grad.sign()
    eps = torch.full((n,), math.inf, device=x.device)
    first = torch.full((n,), -1, dtype=torch.long, device=x.device)
    with torch.no_grad():
        active = model(x).argmax(1) == y
        eps[~active] = 0.0

        def fooled_at(idx: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            xa = (x[idx] + e.view(-1, *([1] * (x.dim() - 1))) * direction[idx]).clamp(0.0, 1.0)
            return model(xa).argmax(1) != y[idx]

        for i, e in enumerate(grid.tolist()):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            hit = idx[fooled_at(idx, torch.full((idx.numel(),), e, device=x.device))]
            eps[hit], first[hit], active[hit] = e, i, False
        if refine:
            idx = ((first >= 0) & (first < 20)).nonzero().squeeze(1)
            top, open_ = eps[idx].clone(), torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
            for j in range(1, 21):
                e = top * (j / 20)
                hit = open_ & fooled_at(idx, e) if idx.numel() else open_
                eps[idx[hit]] = e[hit]
                open_ &= ~hit
        scale = torch.where(torch.isfinite(eps), eps, grid[-1].to(x.device))
        x_adv = (x + scale.view(-1, *([1] * (x.dim() - 1))) * direction).clamp(0.0, 1.0)
    return SmallestEps(x_adv, eps)
