"""Training and attack losses.

Every loss maps ``(logits (N, K) float, y (N,) int64) -> scalar`` so that it can be used for
training (``train.fit``) and as the objective an attack ascends (``attacks.*(loss_fn=...)``).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean categorical cross-entropy -1/N sum_i log softmax(logits_i)[y_i].

    Args:
        logits: (N, K) float.   y: (N,) int64 in [0, K).
    Returns:
        0-dim float tensor, in nats.
    """
    return F.cross_entropy(logits, y)


def conditional_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(Y_hat | X) estimated on a batch: -1/N sum_i sum_k q(k|x_i) log q(k|x_i), q = softmax(logits).

    Args:
        logits: (N, K) float.
    Returns:
        0-dim float tensor in nats, in [0, log K].
    """
    log_q = F.log_softmax(logits, dim=1)
    return -(log_q.exp() * log_q).sum(dim=1).mean()


def renyi_divergence(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Standard Renyi divergence of order alpha between the empirical joint and the model's joint.

    P = p_XY puts mass 1/N on each (x_i, y_i) (one-hot labels); Q = p_X q(.|x) shares the same
    p_X. Then sum P^alpha Q^(1-alpha) = 1/N sum_i q(y_i|x_i)^(1-alpha), and

        D_alpha(P || Q) = 1/(alpha-1) * log( 1/N sum_i exp((alpha-1) * CE_i) ),   CE_i = -log q(y_i|x_i),

    a log-mean-exp ("tilted" mean) of the per-sample cross-entropies over the batch
    (../shared/papers/NOTES.md, section B). It is >= mean CE for alpha > 1 (Jensen) and tends to
    mean CE as alpha -> 1. Computed per sample it would be CE_i for every alpha, so the batch is
    the unit: the value (and its gradient for one sample) depends on the other samples of the batch.

    Args:
        logits: (N, K) float.   y: (N,) int64.   alpha: order, > 1.
    Returns:
        0-dim float tensor, in nats.
    Raises:
        ValueError: alpha <= 1.
    """
    if not alpha > 1:
        raise ValueError(f"the Renyi order alpha must be > 1, got {alpha}")
    ce = F.cross_entropy(logits, y, reduction="none")
    t = alpha - 1.0
    return (torch.logsumexp(t * ce, dim=0) - math.log(ce.numel())) / t


def hr_loss(logits: torch.Tensor, y: torch.Tensor, alpha: float = 1.6, weight: float | None = None) -> torch.Tensor:
    """The HR loss of Picot et al., eq. (3): L_HR = H(Y_hat|X) + alpha * D_alpha(p_XY || p_XY_hat).

    Interpretation choices (stated because the paper leaves them open):
      * The entropy term is the mean softmax entropy ``conditional_entropy`` and is *minimised*
        (added with a plus sign): the bound of eq. (1) on the error grows with H(Y_hat|X).
      * The paper's eq. (4) defines D_alpha with the factor 1/(alpha(alpha-1)), so alpha * D_alpha
        in eq. (3) equals the *standard* Renyi divergence 1/(alpha-1) log sum P^alpha Q^(1-alpha)
        (``renyi_divergence``). With ``weight=None`` (default) the loss is therefore
        H + D_alpha_standard. ``weight=w`` gives H + w * D_alpha_standard instead, e.g. ``weight=alpha``
        for the reading of eq. (3) with the standard normalisation.
      * The divergence is computed over the batch (see ``renyi_divergence``); alpha = 1.6 is the
        paper's value for every dataset (section 3).

    Known values: on uniform logits (q = 1/K everywhere) H = log K and every CE_i = log K, so
    L = (1 + w) log K with w = 1 by default. On a correct one-hot prediction L -> 0.

    Args:
        logits: (N, K) float.   y: (N,) int64 in [0, K).
        alpha: Renyi order, > 1.   weight: coefficient of the standard divergence (None: eq. 3-4, i.e. 1).
    Returns:
        0-dim float tensor, in nats.
    Raises:
        ValueError: alpha <= 1 or weight < 0.
    """
    if weight is not None and weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    w = 1.0 if weight is None else float(weight)
    return conditional_entropy(logits) + w * renyi_divergence(logits, y, alpha)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"ce": cross_entropy, "hr": hr_loss}


def get_loss(name: str, **kwargs) -> LossFn:
    """A loss by name ("ce" or "hr"), with its keyword arguments bound.

    Raises:
        ValueError: an unknown name or keyword.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[name]
    allowed = set(inspect.signature(fn).parameters) - {"logits", "y"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"unknown argument(s) {sorted(unknown)} for loss {name!r}; valid: {sorted(allowed)}")
    if not kwargs:
        return fn

    def bound(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(logits, y, **kwargs)

    bound.__name__ = f"{name}({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"
    return bound
