"""The gradient of a loss with respect to the input only (shared by the gradient attacks)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def require_grad_mode() -> None:
    """Raise RuntimeError inside ``torch.inference_mode``, where no input gradient can be taken."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need input gradients: call them outside torch.inference_mode()")


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss value and its gradient with respect to the input, d loss_fn(model(x), y) / dx.

    The gradient is taken with ``torch.autograd.grad(loss, x_adv)`` on a detached copy of x, so
    the model parameters' ``.grad`` are never written, and the model's train/eval mode is left
    as the caller set it (a model in train mode keeps its dropout / noise / batch statistics).
    Gradients are enabled locally, so this also works under ``torch.no_grad``.

    Args:
        model: maps x -> logits (N, K).   x: (N, C, H, W) float.   y: (N,) int64.
        loss_fn: (logits, y) -> scalar.
    Returns:
        (loss, grad): the detached 0-dim loss and the detached gradient, shaped like x.
    Raises:
        RuntimeError: inside ``torch.inference_mode``.
    """
    require_grad_mode()
    x_adv = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x_adv), y)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        (grad,) = torch.autograd.grad(loss, x_adv)
    return loss.detach(), grad.detach()
