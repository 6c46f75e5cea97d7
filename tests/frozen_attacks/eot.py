"""Expectation over Transformation (Athalye et al. 2018) for models with a random forward pass."""

from __future__ import annotations

import math

import torch
from torch import nn

from robust_utils.core.checks import check_positive_int


class EOT(nn.Module):
    """A model wrapper whose output is the log of the Monte-Carlo mean prediction over M forward passes.

    forward(x) = log( (1/M) sum_m softmax(model(x)) ), each of the M calls of ``model`` drawing its
    own randomness (a stochastic layer samples new weights in every call). Every attack of
    ``robust_utils.attacks`` then works unchanged on ``eot(model, M)``: its gradient is the
    gradient of the loss of the expected prediction E_w[p(y | x, w)], estimated with M samples.
    EOT (Athalye, Engstrom, Ilyas & Kwok 2018; used against randomised defenses by Athalye,
    Carlini & Wagner 2018, "stochastic gradients") averages over the randomness; the classic form
    averages the gradients of the per-draw loss, E_w[grad log p]; ours is grad log E_w[p], the
    loss of the averaged prediction. Both use M draws per gradient and agree as the draws
    concentrate.

    With M = 1 the output is log_softmax(model(x)): the same softmax, the same cross-entropy and the
    same logit differences as model(x), so every attack gives the same result as on the plain
    model for the same random draws.

    Args:
        model: maps x (N, C, H, W) in [0, 1] to logits (N, K).   samples: M >= 1.
    Shapes: x (N, C, H, W) float32 -> log-probabilities (N, K) float32 (valid logits).
    Raises:
        ValueError: samples < 1.
    """

    def __init__(self, model: nn.Module, samples: int = 10):
        super().__init__()
        self.model = model
        self.samples = check_positive_int(samples, "samples")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(self.model(x), dim=1) for _ in range(self.samples)])
        return torch.logsumexp(logp, dim=0) - math.log(self.samples)

    def extra_repr(self) -> str:
        return f"samples={self.samples}"


def eot(model: nn.Module, samples: int = 10) -> EOT:
    """``EOT(model, samples)``: attack ``eot(model, M)`` instead of ``model`` to average over M draws."""
    return EOT(model, samples)


__all__ = ["EOT", "eot"]
