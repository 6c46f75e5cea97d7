"""Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, eq. 3)."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_eps, check_images, check_labels
from ..losses import cross_entropy
from ._grad import LossFn, input_gradient, require_grad_mode


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
