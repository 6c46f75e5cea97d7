"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016), multi-class L2 version (Algorithm 2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.checks import check_number, check_positive_int
from .grad import check_batch, require_grad_mode

_TINY = 1e-12


def deepfool(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 50, overshoot: float = 0.02,
             num_classes: int | None = None, max_step: float | None = None,
             return_success: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """DeepFool attack (Moosavi-Dezfooli et al. 2016, Algorithm 2: multi-class, L2).

    At each step, for every sample still classified as y, the logits Z are linearised at the
    current iterate: f_k = Z_k - Z_y and w_k = grad_x f_k for the candidate classes k != y; the
    closest linearised boundary l = argmin_k |f_k| / ||w_k||_2 is crossed with the step
    r_i = (|f_l| / ||w_l||_2 + 1e-4 / ||w_l||_2) * w_l / ||w_l||_2, accumulated into r_total; the next iterate is
    x_adv = clip_[0,1](x + (1 + overshoot) * r_total). A sample stops as soon as its prediction
    differs from y (the reference label is the true y, so samples misclassified at the start are
    returned unchanged). Only the still-active samples are forwarded and updated (the host learns
    their number once per step: one synchronisation, which sizes the next batch); the gradients of
    all candidate classes come from one batched backward pass (``is_grads_batched``; batched over
    the active samples too, so a model whose samples interact, e.g. batch norm in train mode, gets
    the batch-coupled linearisation). Of equally close boundaries the first candidate is taken.

    ``max_step`` clips the linearised distance |f_l| / ||w_l||_2 of each step (L2, pixel scale),
    as Matyasko & Chau (2018, section 5) do "to improve the accuracy of DeepFool" (0.1 with up
    to 500 steps, in their code ``clip_dist``); None (default) is the original DeepFool.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as the caller set it.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64 true labels.
        steps: maximum number of linearisation steps per sample.
        overshoot: >= 0; the accumulated perturbation is scaled by (1 + overshoot).
        num_classes: candidate classes per sample: the ``num_classes`` classes other than y with
            the highest clean logits (at most K - 1 are used); None: all K - 1 other classes.
        max_step: > 0, the largest L2 length of one step; None: no clip.
        return_success: also return the attack's own count of its successes.
    Returns:
        (N, C, H, W) adversarial images in [0, 1] (no budget: a minimal-perturbation attack;
        samples not fooled within ``steps`` get the last iterate); a new, detached tensor of x's
        dtype and device. With ``return_success``: (x_adv, success), success (N,) bool: the sample
        was misclassified by the forward pass the attack itself made on its last iterate (for a
        random model: on the attack's own draw, which is where it stopped).
    Raises:
        ValueError: steps < 1, overshoot < 0, num_classes < 1, max_step <= 0, x not a float tensor in [0, 1],
            y not int64 (N,).
        RuntimeError: called inside ``torch.inference_mode``.
    """
    check_batch(x, y)
    check_positive_int(steps, "steps")
    overshoot = check_number(overshoot, "overshoot", 0.0)
    if num_classes is not None:
        check_positive_int(num_classes, "num_classes")
    if max_step is not None:
        max_step = check_number(max_step, "max_step", 0.0, strict=True)
    require_grad_mode()
    x = x.detach()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if x.shape[0] == 0:
        return (x.clone(), success) if return_success else x.clone()

    x_adv = x.clone()
    r_total = torch.zeros_like(x)
    active = torch.arange(x.shape[0], device=x.device)  # indices of samples still classified as y
    candidates = None  # (N, m) candidate classes per sample, from the clean logits
    for it in range(steps + 1):
        xa = x_adv[active].clone().requires_grad_(True)
        ya = y[active]
        with torch.enable_grad():
            logits = model(xa)
        if candidates is None:
            k = logits.shape[1]
            m = k - 1 if num_classes is None else min(num_classes, k - 1)
            is_y = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, ya[:, None], True)
            candidates = logits.detach().masked_fill(is_y, -math.inf).topk(m, dim=1).indices
        still = logits.detach().argmax(dim=1) == ya
        success[active] = ~still
        keep = still.nonzero().squeeze(1)
        if it == steps or keep.numel() == 0:
            break
        cand = candidates[active[keep]]  # (n, m)
        best_f, best_w = _closest_boundary(logits, xa, ya, keep, cand)
        w_norm = best_w.flatten(1).norm(dim=1).clamp_min(_TINY)
        dist = best_f / w_norm
        if max_step is not None:
            dist = dist.clamp(max=max_step)
        step = ((dist + 1e-4 / w_norm) / w_norm).view(-1, *([1] * (x.dim() - 1))) * best_w
        active = active[keep]
        r_total[active] += step
        x_adv[active] = (x[active] + (1.0 + overshoot) * r_total[active]).clamp(0.0, 1.0)
    return (x_adv, success) if return_success else x_adv


def _closest_boundary(logits: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor, keep: torch.Tensor,
                      cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|f_l| and w_l of the closest linearised boundary l = argmin_k |f_k| / ||w_k||_2 (Algorithm 2,
    line 6) for the samples ``keep`` of the forwarded batch, with f_k = Z_k - Z_y and w_k = grad_x f_k
    for the candidate classes ``cand`` (n, m). The m gradients come from one batched backward pass.

    Returns:
        (best_f (n,), best_w (n, C, H, W)).
    """
    z_y = logits[keep].gather(1, ya[keep, None])  # (n, 1)
    f_all = logits[keep].gather(1, cand) - z_y  # (n, m): f_k = Z_k - Z_y < 0 while correct
    n, m = f_all.shape
    basis = torch.eye(m, dtype=f_all.dtype, device=f_all.device)[:, None, :].expand(m, n, m)
    (g,) = torch.autograd.grad(f_all, xa, grad_outputs=basis, is_grads_batched=True)  # (m, N_active, ...)
    w = g[:, keep]  # (m, n, C, H, W)
    f = f_all.detach().abs().T  # (m, n)
    ratio = f / w.flatten(2).norm(dim=2).clamp_min(_TINY)
    closest = ratio.argmin(dim=0)  # the first of equally close candidates, as a strict '<' scan
    rows = torch.arange(n, device=f.device)
    return f[closest, rows], w[closest, rows]
