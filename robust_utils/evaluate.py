"""Clean and robust accuracy, accuracy-vs-eps grids, confusion matrices and rho_adv (minimal perturbations).

Predictions run under ``torch.inference_mode``; attacks need gradients and run outside it,
batch by batch. Nothing here changes the model's train/eval mode.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from torch import nn

from . import attacks, cache
from ._checks import check_eps, check_images, check_labels, check_positive_int
from .losses import get_loss

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels argmax_k logits, (N,) int64, computed in batches under inference_mode."""
    check_positive_int(batch_size, "batch_size")
    with torch.inference_mode():
        return torch.cat([model(xb).argmax(1) for xb in x.split(batch_size)]) if len(x) else torch.empty(0, dtype=torch.int64)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Clean accuracy in [0, 1]: the fraction of x classified as y.

    Args:
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    return (predict(model, x, batch_size) == y).float().mean().item()


@dataclass(frozen=True)
class StochasticAccuracy:
    """Accuracy of a model with a random forward pass, measured over K passes.

    Attributes:
        mean: mean over the K passes of the single-pass accuracy (the expected accuracy of one
            prediction, which is how Khan et al. 2019 use their model: "a single pass").
        all_passes: fraction of the samples classified correctly in every one of the K passes.
        per_pass: the K single-pass accuracies.   se: their standard error (0 for K = 1).
    """

    mean: float
    all_passes: float
    per_pass: tuple[float, ...]
    se: float


def stochastic_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int = 10,
                        batch_size: int = 1000) -> StochasticAccuracy:
    """Accuracy as the mean over ``passes`` stochastic forward passes, and as "correct in all passes".

    Each pass predicts the whole set in batches of ``batch_size`` (a stochastic layer draws new
    weights in every forward call, so every batch of every pass sees a fresh draw). For a
    deterministic model every pass gives the same number and ``all_passes == mean``.

    Args:
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.   passes: K >= 1.
    Raises:
        ValueError: bad x, y, passes or batch_size.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(passes, "passes")
    correct = torch.stack([predict(model, x, batch_size) == y for _ in range(passes)])  # (K, N) bool
    per_pass = correct.float().mean(dim=1)
    se = float(per_pass.std() / passes**0.5) if passes > 1 else 0.0
    return StochasticAccuracy(float(per_pass.mean()), float(correct.all(dim=0).float().mean()),
                              tuple(per_pass.tolist()), se)


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, batch_size: int = 200) -> torch.Tensor:
    """``attack(model, xb, yb) -> xb_adv`` over x in batches of ``batch_size``; returns x_adv (N, C, H, W).

    Raises:
        ValueError: bad x, y or batch_size.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    return torch.cat([attack(model, xb, yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def within_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str = "2") -> torch.Tensor:
    """x_adv where ||x_adv - x||_norm <= eps (per sample), x elsewhere: turns a minimal-perturbation
    attack (CW-L2, DeepFool) into a budgeted one, so that "accuracy under CW at L2 eps" counts a
    sample as robust when CW needed more than eps to fool it.

    Args:
        x, x_adv: (N, C, H, W) float in [0, 1].   eps: budget >= 0, pixel units.   norm: "2" or "inf".
    Raises:
        ValueError: shape mismatch, a bad eps or norm.
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv differ in shape: {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    eps = check_eps(eps, norm)
    d = (x_adv - x).flatten(1)
    dist = d.norm(dim=1) if norm == "2" else d.abs().amax(dim=1)
    keep = (dist <= eps).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x_adv, x)


def attack_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, passes: int = 1,
                    batch_size: int = 200) -> StochasticAccuracy:
    """Accuracy of ``model`` on ``run_attack(model, x, y, attack)``, over ``passes`` stochastic passes.

    For a random model the attack sees one draw of the randomness per forward call (unless it
    attacks ``attacks.eot(model, M)``), and the adversarial images are then classified ``passes``
    times with fresh draws (``stochastic_accuracy``).

    Args:
        attack: ``(model, xb, yb) -> xb_adv``, e.g. ``lambda m, x, y: attacks.pgd(m, x, y, 8/255, 2/255, 20)``.
    Raises:
        ValueError: bad x, y, passes or batch_size.
    """
    return stochastic_accuracy(model, run_attack(model, x, y, attack, batch_size), y, passes, batch_size)


def attack_fn(name: str, loss: str = "ce", loss_kwargs: dict | None = None, **kwargs) -> Attack:
    """An attack ``(model, x, y, eps) -> x_adv`` by name, for the eps-grid helpers.

    Args:
        name: "fgsm" or "pgd" (the eps-bounded attacks).
        loss: the loss the attack ascends, by name ("ce", "hr"); loss_kwargs: its arguments (e.g. alpha).
        kwargs: the attack's other arguments. For "pgd": steps (default 40), norm ("inf"),
            restarts (1), random_start (True), and alpha; without alpha the step is
            ``2.5 * eps / steps`` (Madry et al. 2018).
    Raises:
        ValueError: unknown name or loss.
    """
    loss_fn = get_loss(loss, **(loss_kwargs or {}))
    if name == "fgsm":
        return functools.partial(_fgsm, loss_fn=loss_fn, **kwargs)
    if name == "pgd":
        return functools.partial(_pgd, loss_fn=loss_fn, **kwargs)
    raise ValueError(f"unknown eps-bounded attack {name!r}; valid: fgsm, pgd")


def _fgsm(model, x, y, eps, loss_fn, **kw):
    return attacks.fgsm(model, x, y, eps, loss_fn=loss_fn, **kw)


def _pgd(model, x, y, eps, loss_fn, steps=40, alpha=None, **kw):
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    if eps == 0:
        return x.clone()
    return attacks.pgd(model, x, y, eps, alpha, steps, loss_fn=loss_fn, **kw)


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps: float,
                         batch_size: int = 500) -> torch.Tensor:
    """Run ``attack`` batch by batch; returns x_adv (N, C, H, W) in [0, 1].

    With a batch-level loss (the HR loss) the result depends on ``batch_size``.
    """
    if eps == 0:
        check_images(x)
        check_labels(y, x.shape[0])
        check_positive_int(batch_size, "batch_size")
        return x
    return run_attack(model, x, y, lambda m, xb, yb: attack(m, xb, yb, eps), batch_size)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps_grid: Sequence[float],
                    batch_size: int = 500, norm: str = "inf") -> dict[float, float]:
    """Accuracy under ``attack`` at every eps of the grid (eps = 0: clean accuracy).

    Args:
        attack: ``(model, x, y, eps) -> x_adv``, e.g. ``attack_fn("fgsm")``.
        eps_grid: budgets in pixel units of [0, 1] (Linf unless norm="2").
    Returns:
        {eps: accuracy in [0, 1]} in the order of the grid.
    Raises:
        ValueError: an eps out of range (checked for the whole grid before any attack runs).
    """
    grid = [check_eps(e, norm) for e in eps_grid]
    return {e: accuracy(model, adversarial_examples(model, x, y, attack, e, batch_size), y) for e in grid}


@dataclass(frozen=True)
class MinimalPerturbation:
    """Per-sample outcome of a minimal-perturbation attack (DeepFool, CW-L2, eq. 7's attack).

    Attributes (N = number of test points, all CPU tensors):
        distance: (N,) float32, ||x_adv - x||_2 in pixel units of [0, 1]; 0 for points already
            misclassified (they are not attacked).
        ratio: (N,) float32, distance / ||x||_2, the summand of rho_adv (eq. 8).
        fooled: (N,) bool, misclassified at the start or x_adv misclassified.
        x_adv: (N, C, H, W) float32 adversarial images (x itself for misclassified points).
    """

    distance: torch.Tensor
    ratio: torch.Tensor
    fooled: torch.Tensor
    x_adv: torch.Tensor = field(repr=False)

    @property
    def rho_adv(self) -> float:
        """rho_adv = mean over all N points of ||r||_2 / ||x||_2 (Matyasko & Chau 2018, eq. 8)."""
        return self.ratio.mean().item()

    @property
    def success_rate(self) -> float:
        """Share of the N points that end misclassified (1.0 for a complete minimal attack)."""
        return self.fooled.float().mean().item()

    def robust_accuracy(self, eps: float) -> float:
        """Accuracy within an L2 budget: the share of points neither misclassified nor fooled by
        a perturbation of L2 norm <= eps (pixel units of [0, 1])."""
        eps = check_eps(eps, "2")
        return (~(self.fooled & (self.distance <= eps))).float().mean().item()


def minimal_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable,
                         batch_size: int = 500) -> MinimalPerturbation:
    """Run a minimal-perturbation attack and measure its L2 perturbations (for rho_adv, eq. 8).

    Convention (the authors' code, NOTES.md section D): points that the model already
    misclassifies are not attacked and contribute ||r|| = 0; the rho_adv mean is over all N
    points. Points the attack fails to fool keep the perturbation it returned (reported through
    ``fooled`` / ``success_rate``, so that a weak attack is visible).

    Args:
        model: maps x -> logits (N, K).   x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        attack: ``(model, x, y) -> x_adv`` with no budget, e.g.
            ``lambda m, x, y: attacks.deepfool(m, x, y, steps=500, max_step=0.1)``.
        batch_size: samples per attack call.
    Returns:
        MinimalPerturbation (its ``rho_adv`` is eq. 8).
    Raises:
        ValueError: bad x, y or batch_size (before any attack runs).
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    correct = predict(model, x) == y
    x_adv = x.detach().clone()
    idx = correct.nonzero().squeeze(1)
    for part in idx.split(batch_size):
        x_adv[part] = attack(model, x[part], y[part]).detach()
    fooled = predict(model, x_adv) != y
    distance = (x_adv - x).flatten(1).norm(dim=1)
    distance[~correct] = 0.0
    ratio = distance / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return MinimalPerturbation(distance.cpu(), ratio.cpu(), fooled.cpu(), x_adv.cpu())


def rho_adv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, batch_size: int = 500) -> float:
    """rho_adv(A_f) = 1/|D| sum_x ||r(x)||_2 / ||x||_2 (Matyasko & Chau 2018, eq. 8).

    ``minimal_perturbation(model, x, y, attack, batch_size).rho_adv``: see there for shapes, the
    convention for misclassified points (r = 0) and the errors raised.
    """
    return minimal_perturbation(model, x, y, attack, batch_size).rho_adv


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> np.ndarray:
    """Column-normalised confusion matrix C[y_hat, y] = p(Y_hat = y_hat | Y = y) (Picot et al., section 3).

    Rows are the predicted class, columns the true class, as in the paper; each column sums to 1
    (a class absent from y_true gives a zero column).

    Returns:
        (K, K) float64 numpy array.
    """
    c = _sk_confusion_matrix(y_true.cpu().numpy(), y_pred.cpu().numpy(), labels=list(range(num_classes)))
    col = c.sum(axis=1, keepdims=True)
    rows_true = np.divide(c, col, out=np.zeros_like(c, dtype=np.float64), where=col > 0)
    return rows_true.T


def identity_gap(c: np.ndarray) -> float:
    """||I_K - C||_F, the Frobenius distance of a confusion matrix from perfect classification."""
    return float(np.linalg.norm(np.eye(c.shape[0]) - c, ord="fro"))


class RobustAccuracyMonitor:
    """Training callback: accuracy on a validation set at each eps of a grid (Picot et al., Figure 1).

    Args:
        x, y: validation images (N, C, H, W) float32 in [0, 1] and labels (N,) int64.
        eps_grid: budgets (0 gives clean accuracy).   attack: attack name for ``attack_fn``.
        loss: the loss the attack ascends.   batch_size: attack batch size.
    Returns (when called): {"val_acc@eps=<eps>": accuracy} for every eps.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps_grid: Sequence[float], attack: str = "fgsm",
                 loss: str = "ce", loss_kwargs: dict | None = None, batch_size: int = 500):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.eps_grid = [check_eps(e) for e in eps_grid]
        self.attack_name, self.loss, self.loss_kwargs = attack, loss, dict(loss_kwargs or {})
        self.attack = attack_fn(attack, loss=loss, loss_kwargs=self.loss_kwargs)

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        acc = robust_accuracy(model, self.x, self.y, self.attack, self.eps_grid, self.batch_size)
        return {f"val_acc@eps={e:g}": a for e, a in acc.items()}

    def cache_key(self) -> dict:
        return {"monitor": "robust_accuracy", "data": cache.tensor_digest(self.x, self.y), "eps": self.eps_grid,
                "attack": self.attack_name, "loss": self.loss, "loss_kwargs": self.loss_kwargs,
                "batch_size": self.batch_size}


def accuracy_table(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, attacks_by_name: dict[str, Attack],
                   eps_grid: Sequence[float], batch_size: int = 500) -> pd.DataFrame:
    """Accuracy of every model under every attack at every eps, as a long DataFrame.

    Args:
        models: {model label: model}.   attacks_by_name: {attack label: ``(model, x, y, eps) -> x_adv``}.
        eps_grid: budgets (eps = 0 is clean accuracy, computed once per model and repeated).
    Returns:
        DataFrame with columns model, attack, eps, accuracy (one row per combination).
    """
    grid = [check_eps(e) for e in eps_grid]
    rows = []
    for m_name, model in models.items():
        clean = accuracy(model, x, y) if 0.0 in grid else None
        for a_name, attack in attacks_by_name.items():
            for e in grid:
                acc = clean if e == 0 else accuracy(model, adversarial_examples(model, x, y, attack, e, batch_size), y)
                rows.append({"model": m_name, "attack": a_name, "eps": e, "accuracy": acc})
    return pd.DataFrame(rows)


def _binomial_se(a: float, b: float, n: int) -> float:
    return math.sqrt(max(a * (1 - a), 0.0) / n + max(b * (1 - b), 0.0) / n)


def sanity_checks(sweep: Mapping[float, float], n: int, single_step: tuple[str, float], iterative: tuple[str, float],
                  white_box: tuple[str, float] | None = None, black_box: tuple[str, float] | None = None,
                  transfer: tuple[str, float] | None = None, zero_tol: float = 0.05, z: float = 2.0) -> pd.DataFrame:
    """The basic sanity checks of an evaluation (from the checklist of Carlini et al. 2019, "On
    evaluating adversarial robustness"), applied to measured accuracies. A failed check means the attack,
    not the defense, is the likely culprit (gradient masking, too few steps, a bug).

    Checks (each with a slack of z binomial standard errors for two accuracies on n points):
      1. accuracy never rises as eps grows (the ``sweep`` of the strongest attack);
      2. the largest eps of the sweep drives accuracy to ~0 (<= ``zero_tol``);
      3. the iterative attack is at least as strong as the single-step one (accuracy <=);
      4. white-box is at least as strong as black-box;
      5. white-box is at least as strong as the transfer attack (e.g. from the mean network).
    Checks 4-5 are skipped when their numbers are not given.

    Args:
        sweep: {eps: accuracy in [0, 1]}.   n: test points behind each accuracy.
        single_step, iterative, white_box, black_box, transfer: (label, accuracy) pairs.
    Returns:
        DataFrame with columns check, passed (bool), evidence (str, rounded numbers).
    Raises:
        ValueError: empty sweep, n < 1.
    """
    if not sweep:
        raise ValueError("sweep must hold at least one (eps, accuracy) pair")
    check_positive_int(n, "n")
    eps = sorted(sweep)
    acc = [sweep[e] for e in eps]
    rows = []
    rises = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1)
             if acc[i + 1] > acc[i] + z * _binomial_se(acc[i], acc[i + 1], n)]
    rows.append({"check": "accuracy never rises as eps grows", "passed": not rises,
                 "evidence": ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(eps, acc))
                 + (f"; rises between eps {rises}" if rises else "")})
    rows.append({"check": f"the largest eps ({eps[-1]:g}) drives accuracy to ~0 (<= {zero_tol:g})",
                 "passed": acc[-1] <= zero_tol, "evidence": f"accuracy {acc[-1]:.3f}"})

    def stronger(a: tuple[str, float], b: tuple[str, float]) -> dict:
        ok = a[1] <= b[1] + z * _binomial_se(a[1], b[1], n)
        return {"check": f"{a[0]} is at least as strong as {b[0]}", "passed": ok,
                "evidence": f"accuracy {a[1]:.3f} vs {b[1]:.3f}"}

    rows.append(stronger(iterative, single_step))
    if white_box is not None and black_box is not None:
        rows.append(stronger(white_box, black_box))
    if white_box is not None and transfer is not None:
        rows.append(stronger(white_box, transfer))
    return pd.DataFrame(rows, columns=["check", "passed", "evidence"])


def audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", **kwargs):
    """The gradient-masking audit, ``robust_utils.audit.audit`` (same arguments, same result)."""
    from .audit import audit as _audit

    return _audit(model, x, y, eps, norm, **kwargs)
