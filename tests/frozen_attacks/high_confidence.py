"""The high-confidence targeted L2 attack of Matyasko & Chau (NeurIPS 2018, eq. 7 and Algorithm 1).

Two forms of one update. With p_t the softmax probability of the target class t at the current
iterate x_adv = x + (1 + overshoot) * r, w = grad_x log p_t and f = |log p_t - log C|, each step adds

    r_i = (sqrt(eps) + f / ||w||) * w / ||w||,   ||w|| = sqrt(eps + sum w^2),  eps = 1e-8,

the first-order (Lagrange) solution of min ||r|| s.t. log p_t(x + r) >= log C (eq. 7), until p_t >= C.

    high_confidence           the test-time loop (section 5): up to 500 steps, each step's L2
                              norm clipped to 0.1, the iterate projected onto the box [0, 1],
                              per-sample stop once t is predicted with p_t >= C.
    high_confidence_unrolled  the differentiable form used in training: a fixed number of steps
                              (5), a stopping indicator with a straight-through gradient, and a
                              result that is a function of the model's parameters (second order).
    closest_target            the target rule of both: the class with the closest linearised
                              decision boundary (DeepFool's rule, Moosavi-Dezfooli et al. 2016).

Details (overshoot, the sigmoid-adjusted straight-through indicator, the stop-gradient on the
iterate) follow the authors' public code, github.com/aam-at/adversary_critic (attack.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.core.checks import check_images, check_labels, check_number, check_positive_int
from .grad import require_grad_mode

_EPS = 1e-8


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, ..., 1), to broadcast against like (N, C, H, W)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _confidence(confidence, n: int, like: torch.Tensor) -> torch.Tensor:
    """A target confidence C per sample, (N,), checked to lie in (0, 1)."""
    c = torch.as_tensor(confidence, dtype=like.dtype, device=like.device).detach()
    if c.dim() == 0:
        c = c.expand(n)
    if c.shape != (n,):
        raise ValueError(f"confidence must be a number or a ({n},) tensor, got shape {tuple(c.shape)}")
    if n and not bool(((c > 0) & (c < 1)).all()):
        raise ValueError(f"confidence must lie in (0, 1); got range [{c.min():.4g}, {c.max():.4g}]")
    return c


def _check_targets(targets: torch.Tensor, n: int, num_classes: int | None = None) -> None:
    check_labels(targets, n, "targets")
    if num_classes is not None and n and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}), got range [{targets.min()}, {targets.max()}]")


def closest_target(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The class with the closest linearised decision boundary (DeepFool's rule).

    t = argmin_{k != labels} |z_k(x) - z_l(x)| / ||grad_x z_k(x) - grad_x z_l(x)||_2 on the logits z
    at x, l = labels (Moosavi-Dezfooli et al. 2016, eq. 8; the target rule of Matyasko & Chau
    2018, section 4). One backward pass per class, batched over the samples.

    Args:
        model: maps x -> logits (N, K).   x: (N, C, H, W) float in [0, 1].
        labels: (N,) int64, the class each sample starts from (its label or its prediction).
    Returns:
        (N,) int64 target classes, never equal to ``labels``.
    Raises:
        ValueError: bad x or labels.   RuntimeError: inside ``torch.inference_mode``.
    """
    check_images(x)
    check_labels(labels, x.shape[0], "labels")
    require_grad_mode()
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        k = logits.shape[1]
        z_l = logits.gather(1, labels[:, None]).squeeze(1)
        (g_l,) = torch.autograd.grad(z_l.sum(), xg, retain_graph=True)
        dist = torch.empty(x.shape[0], k, dtype=x.dtype, device=x.device)
        for j in range(k):
            (g_j,) = torch.autograd.grad(logits[:, j].sum(), xg, retain_graph=j < k - 1)
            w_norm = (g_j - g_l).flatten(1).norm(dim=1)
            dist[:, j] = (logits[:, j] - z_l).detach().abs() / w_norm.clamp_min(1e-12)
    dist.scatter_(1, labels[:, None], math.inf)
    return dist.argmin(dim=1)


def straight_through_indicator(z: torch.Tensor) -> torch.Tensor:
    """round(sigmoid(z)) in the forward pass, with the gradient of sigmoid(z) in the backward pass.

    The sigmoid-adjusted straight-through estimator of Bengio, Leonard & Courville (2013), used
    by Matyasko & Chau (2018, section 4) for the attack's stopping indicator: the forward value is
    the indicator [z > 0] (exactly 0 or 1), the backward pass treats round() as the identity.

    Args:
        z: any float tensor.
    Returns:
        a tensor of z's shape with values in {0., 1.}, differentiable (d/dz = sigmoid'(z)).
    """
    s = torch.sigmoid(z)
    return s + (torch.round(s) - s).detach()


def high_confidence_unrolled(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, confidence,
                             steps: int = 5, overshoot: float = 0.05) -> torch.Tensor:
    """Eq. 7's attack unrolled for ``steps`` iterations, differentiable w.r.t. the model's parameters.

    x_adv = x + (1 + overshoot) * sum_i s_i * r_i, where r_i is eq. 7's step computed at the
    iterate x_i = stop_gradient(x + (1 + overshoot) * sum_{j<i} s_j r_j) and
    s_i = prod_{j<=i} I[p_t(x_j) < C] is the stopping indicator (``straight_through_indicator`` of
    C - p_t(x_j)). The iterate is detached, as in the authors' code, but each step r_i, computed
    from w = grad_x log p_t with ``create_graph=True``, stays a function of the parameters, so a
    loss on the result back-propagates through the attack (second-order terms included), as in
    Matyasko & Chau (2018, section 4, Algorithm 1). No box constraint and no step clipping
    (training form; the result may leave [0, 1]).

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float (treated as a constant); usually in [0, 1], but not required, so
            that the cycle-consistency attack can start from an earlier unrolled result.
        targets: (N,) int64 target classes (e.g. ``closest_target``).
        confidence: C in (0, 1), a number or a (N,) tensor (treated as a constant).
        steps: number of unrolled iterations (the paper: 5).   overshoot: >= 0 (the code: 0.05).
    Returns:
        (N, C, H, W) adversarial images (not detached: a function of the model's parameters).
    Raises:
        ValueError: x not a floating (N, ...) tensor, bad targets, confidence, steps or overshoot.
        RuntimeError: inside ``torch.inference_mode``.
    """
    if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2):
        raise ValueError(f"x must be a floating (N, ...) tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    n = x.shape[0]
    _check_targets(targets, n)
    c = _confidence(confidence, n, x)
    check_positive_int(steps, "steps")
    scale = 1.0 + check_number(overshoot, "overshoot", 0.0)
    require_grad_mode()
    x = x.detach()
    r = torch.zeros_like(x)
    go = torch.ones(n, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        for _ in range(steps):
            xi = (x + scale * r).detach().requires_grad_(True)
            log_p = F.log_softmax(model(xi), dim=1)
            log_pt = log_p.gather(1, targets[:, None]).squeeze(1)
            go = go * straight_through_indicator(c - log_pt.exp())
            (w,) = torch.autograd.grad(log_pt.sum(), xi, create_graph=True)
            w_norm = _view(torch.sqrt(_EPS + w.flatten(1).pow(2).sum(dim=1)), x)
            f = _view((log_pt - torch.log(c)).abs(), x)
            r = r + _view(go, x) * (math.sqrt(_EPS) + f / w_norm) * w / w_norm
    return x + scale * r


def high_confidence(model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None = None, confidence=None,
                    labels: torch.Tensor | None = None, steps: int = 500, max_step: float | None = 0.1,
                    overshoot: float = 0.02, box: bool = True) -> torch.Tensor:
    """Eq. 7's attack as the test-time loop of Matyasko & Chau (2018, section 5).

    Per sample: starting from r = 0, while the target t is not predicted with p_t >= C and fewer
    than ``steps`` iterations have run, add eq. 7's step r_i (see the module docstring) computed
    at x_adv = x + (1 + overshoot) * r, its L2 norm clipped to ``max_step``; with ``box`` the
    perturbation is then projected so that x_adv stays in [0, 1]. Samples whose ``labels``
    already equal their target are returned unchanged. Only the still-active samples are
    forwarded.

    Defaults are the paper's evaluation settings: 500 iterations, step norm clipped to 0.1,
    overshoot 0.02, labels = the model's prediction on x, t = ``closest_target``, C = the model's
    confidence (max softmax probability) on x.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float32 in [0, 1].
        targets: (N,) int64 target classes; None: ``closest_target(model, x, labels)``.
        confidence: C in (0, 1), a number or (N,) tensor; None: the clean confidence max_k p_k(x).
        labels: (N,) int64 starting classes; None: the model's prediction on x.
        steps: maximum iterations.   max_step: L2 clip of each step (pixel scale), None: no clip.
        overshoot: >= 0.   box: project onto [0, 1] after each step.
    Returns:
        (N, C, H, W) adversarial images, a new detached tensor (in [0, 1] when ``box``).
    Raises:
        ValueError: bad x, labels, targets, confidence, steps, max_step or overshoot.
        RuntimeError: inside ``torch.inference_mode``.
    """
    check_images(x)
    n = x.shape[0]
    check_positive_int(steps, "steps")
    scale = 1.0 + check_number(overshoot, "overshoot", 0.0)
    if max_step is not None:
        max_step = check_number(max_step, "max_step", 0.0, strict=True)
    if labels is not None:
        check_labels(labels, n, "labels")
    require_grad_mode()
    x = x.detach()
    if n == 0:
        return x.clone()
    with torch.no_grad():
        probs = F.softmax(model(x), dim=1)
    if labels is None:
        labels = probs.argmax(dim=1)
    if targets is None:
        targets = closest_target(model, x, labels)
    _check_targets(targets, n, probs.shape[1])
    c = _confidence(probs.amax(dim=1) if confidence is None else confidence, n, x)

    r = torch.zeros_like(x)
    active = (targets != labels).nonzero().squeeze(1)
    for it in range(steps + 1):
        if active.numel() == 0:
            break
        xa = (x[active] + scale * r[active]).requires_grad_(True)
        ta, ca = targets[active], c[active]
        with torch.enable_grad():
            log_p = F.log_softmax(model(xa), dim=1)
            log_pt = log_p.gather(1, ta[:, None]).squeeze(1)
            (w,) = torch.autograd.grad(log_pt.sum(), xa)
        log_pt = log_pt.detach()
        done = (log_p.detach().argmax(dim=1) == ta) & (log_pt.exp() >= ca)
        keep = ~done
        if it == steps or not bool(keep.any()):
            break
        active, w, log_pt, ca = active[keep], w[keep], log_pt[keep], ca[keep]
        w_norm = _view(torch.sqrt(_EPS + w.flatten(1).pow(2).sum(dim=1)), w)
        f = _view((log_pt - torch.log(ca)).abs(), w)
        step = (math.sqrt(_EPS) + f / w_norm) * w / w_norm
        if max_step is not None:
            norm = _view(step.flatten(1).norm(dim=1), step)
            step = step * (max_step / norm.clamp_min(1e-12)).clamp(max=1.0)
        r_new = r[active] + step
        if box:
            r_new = ((x[active] + scale * r_new).clamp(0.0, 1.0) - x[active]) / scale
        r[active] = r_new
    x_adv = x + scale * r
    return x_adv.clamp(0.0, 1.0) if box else x_adv


__all__ = ["closest_target", "straight_through_indicator", "high_confidence_unrolled", "high_confidence"]
