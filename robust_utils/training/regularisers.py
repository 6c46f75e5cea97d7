"""Regularised training: virtual adversarial training (Miyato et al., ICLR 2016) and margin
maximisation (Matyasko & Chau, IJCNN 2017), the baselines of Matyasko & Chau 2018's Table 1.
The contract of every objective is in ``training.objective``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.grad import require_grad_mode
from ..core.checks import check_images, check_positive_int
from ..core.losses import cross_entropy
from .objective import ObjectiveBase, check_hyper, check_objective_inputs


# ----------------------------------------------------------------------------------------------
# Virtual adversarial training


def _kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p || q) = sum_k p_k (log p_k - log q_k), p = softmax(p_logits), from log_softmax.

    Args: p_logits, q_logits: (N, K) float.   Returns: (N,) float, nats.
    """
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=1))).sum(dim=1)


def _l2_normalize(v: torch.Tensor) -> torch.Tensor:
    """v / ||v||_2 per sample (dim 0 is the batch); rescaled by max |v| first so tiny v do not underflow.

    A sample with v = 0 stays 0.
    """
    tiny = torch.finfo(v.dtype).tiny
    flat = v.flatten(1)
    flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(tiny)
    return flat.view_as(v)


def virtual_adversarial_perturbation(model: nn.Module, x: torch.Tensor, eps: float = 2.0, xi: float = 1e-6,
                                     power_iterations: int = 1,
                                     clean_logits: torch.Tensor | None = None) -> torch.Tensor:
    """The virtual adversarial perturbation r_vadv of Miyato et al. (ICLR 2016, eqs. 4-5, section 3.2).

    r_vadv ~ argmax_{||r||_2 <= eps} KL(p(.|x) || p(.|x + r)), p = softmax(model(.)), approximated
    by the power iteration on the Hessian of the KL at r = 0 with finite differences:
    d ~ N(0, I) (torch's global RNG); ``power_iterations`` times: d <- grad_d KL(p(x) || p(x + xi d/||d||)),
    p(x) held constant; r = eps d / ||d||. Norms are per-sample L2 norms over (C, H, W). A sample
    whose gradient is exactly 0 keeps its previous direction.

    Note on precision: in float32, a step xi = 1e-6 (Miyato's value) changes the logits by about
    1e-6, close to float32 rounding, so the direction found is noisy; in float64 it is accurate.

    Args:
        model: maps x -> logits (N, K); its mode is left as set.   x: (N, C, H, W) float in [0, 1].
        eps: L2 radius in pixel units of [0, 1] (> 0).   xi: finite-difference step (> 0).
        power_iterations: >= 1.
        clean_logits: model(x), (N, K), if already computed (treated as constant); else computed
            here without gradient.
    Returns:
        r: (N, C, H, W) detached, x's dtype and device, ||r_i||_2 = eps for every sample. x + r is
        *not* clipped to [0, 1] (Miyato et al. do not clip), so it may leave the pixel box.
    Raises:
        ValueError: bad x, eps, xi or power_iterations.
        RuntimeError: called inside ``torch.inference_mode``.
    """
    check_images(x)
    eps = check_hyper(eps, "eps", positive=True)
    xi = check_hyper(xi, "xi", positive=True)
    check_positive_int(power_iterations, "power_iterations")
    require_grad_mode()
    x = x.detach()
    with torch.enable_grad():
        if clean_logits is None:
            with torch.no_grad():
                clean_logits = model(x)
        clean_logits = clean_logits.detach()
        d = _l2_normalize(torch.randn_like(x))
        for _ in range(power_iterations):
            step = (xi * d).requires_grad_(True)
            kl = _kl_from_logits(clean_logits, model(x + step)).sum()
            (g,) = torch.autograd.grad(kl, step)
            g = _l2_normalize(g.detach())
            zero = g.flatten(1).abs().amax(dim=1) == 0
            d = torch.where(zero.view(-1, *([1] * (x.dim() - 1))), d, g)
    return eps * d


class VirtualAdversarialTraining(ObjectiveBase):
    """Virtual adversarial training (Miyato et al., ICLR 2016, "Distributional smoothing with
    virtual adversarial training", eq. 5 with the power iteration of section 3.2).

        loss = CE(f(x), y) + weight * 1/N sum_i KL(p(.|x_i) || p(.|x_i + r_vadv,i)),

    p(.|x) = softmax(f(x)) treated as a constant (detached), r_vadv from
    ``virtual_adversarial_perturbation`` (detached, per-sample L2 norm eps, one random start drawn
    from torch's global RNG). x + r_vadv is *not* clipped to [0, 1], as in Miyato et al.
    Costs 2 + power_iterations forward passes.

    Args:
        eps: L2 radius in pixel units of [0, 1], > 0 and finite (2.0 is Miyato's MNIST value).
        xi: finite-difference step of the power iteration, > 0.   power_iterations: int >= 1.
        weight: >= 0, finite.
    Call:
        obj(model, x, y): x (N, C, H, W) float in [0, 1], y (N,) int64 -> 0-dim float loss, nats.
    Raises:
        ValueError: bad hyper-parameters (in ``__init__``); bad x or y (at the call).
        RuntimeError: called inside ``torch.inference_mode``.
    """

    name = "vat"
    _params = ("eps", "xi", "power_iterations", "weight")

    def __init__(self, eps: float = 2.0, xi: float = 1e-6, power_iterations: int = 1, weight: float = 1.0) -> None:
        self.eps = check_hyper(eps, "eps", positive=True)
        self.xi = check_hyper(xi, "xi", positive=True)
        self.power_iterations = check_positive_int(power_iterations, "power_iterations")
        self.weight = check_hyper(weight, "weight", positive=False)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        logits = model(x)
        loss = cross_entropy(logits, y)
        if self.weight == 0:
            return loss
        r = virtual_adversarial_perturbation(model, x, self.eps, self.xi, self.power_iterations, logits)
        kl = _kl_from_logits(logits.detach(), model(x + r)).mean()
        return loss + self.weight * kl


# ----------------------------------------------------------------------------------------------
# Margin maximization


def multiclass_hinge(logits: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Per-sample multiclass hinge loss max(0, delta + max_{j != y} z_j - z_y) (Lasagne's
    ``multiclass_hinge_loss``, as used by Matyasko & Chau 2017).

    Args:
        logits: (N, K) float, K >= 2.   y: (N,) int64 in [0, K).   delta: margin, default 1.
    Returns:
        (N,) float, >= 0, in logit units.
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return F.relu(delta + others.amax(dim=1) - z_y)


def _margin_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge (N,), sensitivity (N,)) from one forward pass; see ``margin_sensitivity``."""
    x_in = x.detach().requires_grad_(True)
    z = model(x_in)
    k_classes = z.shape[1]
    grads = torch.stack([torch.autograd.grad(z[:, k].sum(), x_in, retain_graph=True)[0].flatten(1)
                         for k in range(k_classes)], dim=1)  # (N, K, D), no graph
    with torch.no_grad():
        g_y = grads[torch.arange(len(y)), y]  # (N, D)
        l = (grads - g_y[:, None]).pow(2).sum(dim=2).argmax(dim=1)  # (N,)
    z_y = z.gather(1, y[:, None]).squeeze(1)
    z_l = z.gather(1, l[:, None]).squeeze(1)
    (g,) = torch.autograd.grad((z_y - z_l).sum(), x_in, create_graph=True)
    return multiclass_hinge(z, y), g.flatten(1).pow(2).sum(dim=1)


def margin_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin sensitivity max_k ||grad_x z_y - grad_x z_k||_2^2 (Matyasko & Chau 2017).

    l = argmax_k ||grad_x z_k - grad_x z_y||^2 over all classes (k = y gives 0) is chosen without
    gradient; then ||grad_x (z_y - z_l)||^2 is taken with ``create_graph=True`` so it
    back-propagates to the weights (double backprop). The input gradients are batched: K
    backward passes of ``z[:, k].sum()`` w.r.t. x, then one of ``(z_y - z_l).sum()``; summing over
    the batch is exact only when samples do not interact (no batch norm in train mode, no batch
    level layers).

    Args:
        model: maps x -> logits (N, K); mode left as set.   x: (N, C, H, W) float in [0, 1].
        y: (N,) int64.
    Returns:
        (N,) float >= 0, squared L2 norm in (logit / pixel)^2 units, with a graph to the parameters.
    Raises:
        ValueError: bad x or y.   RuntimeError: inside ``torch.inference_mode``.
    """
    check_objective_inputs(x, y)
    with torch.enable_grad():
        return _margin_terms(model, x, y)[1]


class MarginMaximization(ObjectiveBase):
    """Margin maximization (Matyasko & Chau, IJCNN 2017, "Margin maximization for robust
    classification using deep learning", as in their public code):

        loss = 1/N sum_i hinge_i + lam * 1/N sum_i sensitivity_i,

    hinge_i = max(0, 1 + max_{j != y_i} z_j - z_{y_i}) (``multiclass_hinge``, z = logits) and
    sensitivity_i = max_k ||grad_x z_{y_i} - grad_x z_k||_2^2 (``margin_sensitivity``; double
    backprop, batched over samples, exact for models without batch norm). Costs one forward
    pass, K + 1 input gradients and a second-order backward.

    Args:
        lam: weight of the sensitivity, >= 0 and finite.
    Call:
        obj(model, x, y): x (N, C, H, W) float in [0, 1], y (N,) int64 -> 0-dim float loss.
        Under ``torch.no_grad`` the input gradients are still taken and the loss is returned detached.
    Raises:
        ValueError: bad lam (in ``__init__``); bad x or y (at the call).
        RuntimeError: called inside ``torch.inference_mode``.
    """

    name = "margin"
    _params = ("lam",)

    def __init__(self, lam: float = 0.1) -> None:
        self.lam = check_hyper(lam, "lam", positive=False)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        grad_mode = torch.is_grad_enabled()
        with torch.enable_grad():
            hinge, sensitivity = _margin_terms(model, x, y)
            loss = hinge.mean() + self.lam * sensitivity.mean()
        return loss if grad_mode else loss.detach()


__all__ = ["virtual_adversarial_perturbation", "VirtualAdversarialTraining", "multiclass_hinge", "margin_sensitivity",
           "MarginMaximization"]
