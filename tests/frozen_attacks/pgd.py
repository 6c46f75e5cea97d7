"""Projected gradient descent in Linf or L2 (Madry et al. 2018; BIM of Kurakin et al. 2016)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.core.checks import check_eps, check_images, check_labels, check_positive_int
from robust_utils.core.losses import cross_entropy
from .grad import LossFn, input_gradient, require_grad_mode

_TINY = 1e-12


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped (N, 1, ..., 1) to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _uniform(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) of `shape`, drawn on the generator's device (so a CPU generator works for CUDA x)."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _normal(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform random point of the eps-ball around x (Linf: cube; L2: ball), clipped to [0, 1].

    Clipping to the box only shrinks each coordinate of the perturbation, so the start stays in the ball.
    """
    if norm == "inf":
        delta = (2.0 * _uniform(x.shape, x, generator) - 1.0) * eps
    else:
        n, d = x.shape[0], x[0].numel()
        direction = _normal(x.shape, x, generator)
        direction = direction / _per_sample_norm(direction).clamp_min(_TINY)
        # radius eps * U^(1/d) makes the point uniform in the d-dimensional ball
        radius = eps * _uniform((n,), x, generator).pow(1.0 / d)
        delta = direction * radius.view(-1, *([1] * (x.dim() - 1)))
    return (x + delta).clamp_(0.0, 1.0)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project x_adv onto {x' : ||x' - x||_norm <= eps} and then onto the box [0, 1]."""
    delta = x_adv - x
    if norm == "inf":
        delta = delta.clamp(-eps, eps)
    else:
        factor = (eps / _per_sample_norm(delta).clamp_min(_TINY)).clamp(max=1.0)
        delta = delta * factor
    return (x + delta).clamp_(0.0, 1.0)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
        norm: str = "inf", random_start: bool = True, restarts: int = 1, loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent attack (Madry et al. 2018, eq. 2.1; Kurakin et al. 2016 for BIM).

    Each step ascends the loss and projects back onto the eps-ball around x and the box [0, 1]:
    Linf: x <- P(x + alpha * sign(g));  L2: x <- P(x + alpha * g / ||g||_2) (per-sample normalised
    gradient; a zero gradient gives no step). The random start is uniform in the eps-ball (Linf:
    the cube; L2: the ball), then clipped to the box. ``random_start=False`` with ``norm="inf"``
    is BIM (Kurakin et al. 2016). Each restart returns its last iterate.

    Restarts: per sample, the first restart whose result is misclassified (argmax of the
    logits != y) is kept; if no restart succeeds for that sample, the one with the highest
    per-sample cross-entropy is kept (whatever ``loss_fn`` the steps ascend). The check uses one
    forward pass in the model's current mode (a stochastic model draws its noise for it). With the
    same seeded ``generator``, restart 1 equals the ``restarts=1`` result, so more restarts are
    never weaker on a deterministic model. Restarts stop early once every sample is fooled.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64 true labels.
        eps: budget in pixel units of [0, 1], measured in the `norm` ("inf" or "2").
        alpha: step size, same units.   steps, restarts: iterations per restart; the worst case is kept.
        norm: "inf" or "2".   random_start: start at a uniform random point of the ball.
        loss_fn: (logits, y) -> scalar to ascend; default cross-entropy. With a batch-level loss
            such as ``losses.hr_loss`` (its Renyi term is a log-mean-exp over the batch) the
            gradient of one sample depends on the rest of the batch, so results depend on the
            batch size and composition.
        generator: torch.Generator for the random starts (reproducible runs); None: global RNG.
    Returns:
        (N, C, H, W) adversarial images in [0, 1] with ||x_adv - x||_norm <= eps (up to float
        rounding, ~1e-7); a new, detached tensor of x's dtype and device.
    Raises:
        ValueError: eps < 0, Linf eps > 1, alpha <= 0, steps < 1, restarts < 1, an unknown norm,
            x not a float tensor in [0, 1], y not int64 (N,).
        RuntimeError: called inside ``torch.inference_mode``.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    eps = check_eps(eps, norm)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number, got {alpha!r}") from None
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be > 0, got {alpha}")
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    require_grad_mode()
    x = x.detach()
    if eps == 0 or x.shape[0] == 0:
        return x.clone()
    loss_fn = loss_fn or cross_entropy

    best = x.clone()
    best_success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    best_ce = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    for restart in range(restarts):
        x_adv = _random_start(x, eps, norm, generator) if random_start else x.clone()
        for _ in range(steps):
            _, grad = input_gradient(model, x_adv, y, loss_fn)
            if norm == "inf":
                step = grad.sign()
            else:
                step = grad / _per_sample_norm(grad).clamp_min(_TINY)
            x_adv = _project(x_adv + alpha * step, x, eps, norm)
        with torch.no_grad():
            logits = model(x_adv)
            success = logits.argmax(dim=1) != y
            ce = F.cross_entropy(logits, y, reduction="none").to(x.dtype)
        take = ~best_success & (success | (ce > best_ce)) if restart else torch.ones_like(success)
        best[take] = x_adv[take]
        best_ce = torch.where(take, ce, best_ce)
        best_success |= success
        if bool(best_success.all()):
            break
    return best
