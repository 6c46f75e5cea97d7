"""Training and attack losses.

Every loss maps ``(logits (N, K) float, y (N,) int64) -> scalar`` so that it can be used for
training (``train.fit``) and as the objective an attack ascends (``attacks.*(loss_fn=...)``).
Exception: "soft_ce" maps ``(logits (N, K), targets (N, K) float) -> scalar``; it is a training
loss, used as ``train.fit(..., loss="soft_ce", targets=tau)`` with per-sample soft targets
(``calibration.em_calibrate(...).tau`` or ``calibration.label_smoothing_targets``). Attack a
model trained with it with "ce" (the attacks pass int labels).

``weighted_mse`` (regression, paper 000 eq. 7/8/14) is not in the registry: it takes
(pred, target, weights), not logits.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .checks import check_labels, check_number

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
    (our derivation from eq. 4 with one-hot labels; the paper publishes no code). It is >= mean CE for alpha > 1 (Jensen) and tends to
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


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets: paper 000, eq. 9 / eq. 13.

    L = -(1/B) sum_i sum_k tau_ik log softmax(logits_i)_k. With one-hot targets it equals
    ``cross_entropy`` (F.cross_entropy): bit-identical per sample, the batch mean to float32 rounding
    (the two reductions sum in a different order). The targets are constants (detached).
    Registered as "soft_ce": ``get_loss("soft_ce")`` is a callable (logits, targets) -> loss, used
    by ``train.fit(..., loss="soft_ce", targets=tau)``.

    Args:
        logits: (B, K) float.
        targets: (B, K) float, rows >= 0 summing to 1 (within 1e-4), e.g.
            ``calibration.em_calibrate(...).tau`` or ``calibration.label_smoothing_targets``.
    Returns:
        0-dim float tensor, in nats (>= the mean entropy of the target rows).
    Raises:
        ValueError: logits not (B, K) floating; targets not floating of the same shape (e.g. int
            labels: use "ce"), negative, or rows not summing to 1.
    """
    if not (isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() == 2):
        raise ValueError(f"logits must be a floating (B, K) tensor, got {getattr(logits, 'shape', logits)!r}")
    if not (isinstance(targets, torch.Tensor) and targets.is_floating_point() and targets.shape == logits.shape):
        got = f"{tuple(targets.shape)} {targets.dtype}" if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"soft_ce needs float targets of the logits' shape {tuple(logits.shape)}, got {got} "
                         "(for int labels use 'ce' or calibration.label_smoothing_targets)")
    if targets.numel() and (targets.min() < 0 or (targets.sum(1) - 1).abs().max() > 1e-4):
        raise ValueError("targets must be probability vectors: rows >= 0 summing to 1 (within 1e-4)")
    return -(targets.detach() * F.log_softmax(logits, dim=1)).sum(1).mean()


def push_away_loss(logits: torch.Tensor, y: torch.Tensor, beta: float | None = None, eps: float = 1e-6) -> torch.Tensor:
    """The "push-away" loss of paper 000, eq. 6, made bounded: mean_i [CE_y - beta * sum_{k != y_i} CE_k].

    CE_y = -log p_{y_i} (as ``cross_entropy``) and CE_k = -log(p_k + eps), p = softmax(logits).
    Fixes of the paper's eq. 6 (stated because the literal equation cannot be used):
      * With CE_k = -log p_k the loss is unbounded below: p_k -> 0 sends -beta * CE_k to -inf, so
        training would chase p_k = 0 forever. The eps makes CE_k <= log(1/eps), hence
        L >= -beta (K - 1) log(1/eps) (about -1.38 for K = 10, eps = 1e-6, the default beta).
      * Its constraint 1 - (N - 1) beta = 1 forces beta = 0 (plain cross-entropy). We read it as
        the prior of Algorithm 1, 1 - (N - 1) beta = 0.9, i.e. beta = 0.1/(K - 1) (the prior's
        off-class mass), the default (beta=None).
      * Note that both terms decrease as p_y -> 1 (minimising -beta CE_k pushes p_k down), so the
        minimiser over p is still one-hot: unlike eq. 9 (``soft_cross_entropy``), eq. 6 does not
        put mass on the other classes; it only adds a push away from them (eq. 4-5).

    Args:
        logits: (B, K) float.   y: (B,) int64 in [0, K).
        beta: weight >= 0 of the off-class terms; None: 0.1/(K - 1). beta = 0 gives cross-entropy.
        eps: > 0, added to p_k inside the off-class logarithms.
    Returns:
        0-dim float tensor, in nats.
    Raises:
        ValueError: logits not (B, K) floating with K >= 2, y not int64 (B,), beta < 0, eps <= 0.
    """
    if not (isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() == 2
            and logits.shape[1] >= 2):
        raise ValueError(f"logits must be a floating (B, K >= 2) tensor, got {getattr(logits, 'shape', logits)!r}")
    check_labels(y, logits.shape[0])
    k = logits.shape[1]
    beta = 0.1 / (k - 1) if beta is None else check_number(beta, "beta", 0.0)
    eps = check_number(eps, "eps", 0.0, strict=True)
    log_p = F.log_softmax(logits, dim=1)
    on_label = F.one_hot(y, k).bool()
    ce_y = -log_p[on_label]
    ce_other = -torch.log(log_p.exp() + eps).masked_fill(on_label, 0.0).sum(1)
    return (ce_y - beta * ce_other).mean()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted squared error of paper 000's regression losses (eq. 7, 8, 14), normalised by the weights.

    L = sum_i w_i ||target_i - pred_i||^2 / sum_i w_i, with w from ``calibration.global_weights``
    (eq. 7), ``cluster_weights`` (eq. 8) or ``posterior_weights`` (eq. 14). The paper writes the
    per-sample loss w_i ||y - y_hat||^2; dividing by sum_i w_i keeps the scale of a plain MSE.
    weights=None means all w_i = 1: (1/B) sum_i ||target_i - pred_i||^2, i.e. F.mse_loss for (B,)
    inputs and T * F.mse_loss for (B, T) inputs (the squared norm is summed over the T outputs).

    Args:
        pred, target: (B,) or (B, T) float, the same shape.
        weights: (B,) float, >= 0, not all 0; or None.
    Returns:
        0-dim float tensor, in squared target units.
    Raises:
        ValueError: shapes differ or are not (B,) / (B, T); non-floating inputs; weights not (B,),
            negative, non-finite or summing to 0.
    """
    for name, t in (("pred", pred), ("target", target)):
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() in (1, 2)):
            raise ValueError(f"{name} must be a floating (B,) or (B, T) tensor, got {getattr(t, 'shape', t)!r}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    sq = (target - pred).pow(2)
    sq = sq.sum(1) if sq.dim() == 2 else sq
    if weights is None:
        return sq.mean()
    if not (isinstance(weights, torch.Tensor) and weights.is_floating_point() and weights.shape == sq.shape):
        raise ValueError(f"weights must be a floating ({sq.shape[0]},) tensor, got {getattr(weights, 'shape', weights)!r}")
    if not torch.isfinite(weights).all() or weights.min() < 0 or not weights.sum() > 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    return (weights * sq).sum() / weights.sum()


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float | None = None) -> torch.Tensor:
    """The logit margin that an attack ascends (Carlini & Wagner 2017, section V, their f_6 with the
    sign flipped; the "CW loss" of Madry et al.'s PGD): mean_i [max_{j != y_i} z_ij - z_iy_i],
    capped at ``kappa`` per sample if given (no gain beyond a margin of kappa logits).

    It reads logits, not probabilities, so a saturated or flattened softmax (which makes the
    cross-entropy gradient vanish) does not hide the direction to the boundary.

    Args:
        logits: (B, K) float.   y: (B,) int64.   kappa: cap in logit units, or None.
    Returns:
        0-dim float tensor (logit units).
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    margin = other - z_y
    if kappa is not None:
        margin = margin.clamp(max=kappa)
    return margin.mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"ce": cross_entropy, "hr": hr_loss, "soft_ce": soft_cross_entropy,
                                                  "push_away": push_away_loss, "cw_margin": cw_margin_loss}


def get_loss(name: str, **kwargs) -> LossFn:
    """A loss by name (a key of ``LOSSES``: "ce", "hr", "soft_ce", "push_away", "cw_margin"), keyword
    arguments bound.

    The result is called as loss(logits, y); for "soft_ce" as loss(logits, targets) with (N, K)
    soft targets (see ``soft_cross_entropy``). The first two parameters cannot be bound.

    Raises:
        ValueError: an unknown name or keyword.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[name]
    allowed = set(list(inspect.signature(fn).parameters)[2:])
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"unknown argument(s) {sorted(unknown)} for loss {name!r}; valid: {sorted(allowed)}")
    if not kwargs:
        return fn

    def bound(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(logits, y, **kwargs)

    bound.__name__ = f"{name}({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"
    return bound
