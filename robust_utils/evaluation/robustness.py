"""Accuracy under attack: running an attack in batches, budgets, eps grids, and the training monitor
of Picot et al.'s Figure 1.

Attacks need gradients and run outside ``torch.inference_mode``, batch by batch; the adversarial
images are then classified under it. Nothing here changes the model's train/eval mode.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import pandas as pd
import torch
from torch import nn

from ..attacks.grad import input_gradient
from ..attacks.protocols import FGSM, FixedBudgetAttack, attack_fn
from ..core import store
from ..core.checks import check_eps, check_images, check_labels, check_positive_int
from ..core.losses import get_loss
from ..nn.randomness import is_random
from .metrics import StochasticAccuracy, accuracy, predict, stochastic_accuracy

Attack = FixedBudgetAttack


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


def adversarial_examples_by_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                                eps_grid: Sequence[float], batch_size: int = 500) -> dict[float, torch.Tensor]:
    """``{eps: adversarial_examples(model, x, y, attack, eps, batch_size)}`` for every eps of the grid.

    For an ``attacks.FGSM`` on a model in eval mode whose forward pass is not random
    (``nn.randomness.is_random`` without a probe: no known random layer active), the sign of the
    loss gradient is computed once per batch and scaled to every eps: x_adv(eps) = clip_[0,1](x +
    eps * sign(grad)) (Goodfellow et al. 2015, eq. 3), bitwise what one call per eps gives, with one
    backward pass instead of one per eps. Any other attack, a random model (one draw per eps, as
    separate calls make) or a model with a module in train mode (batch norm would update its
    statistics once per call) is run once per eps.

    Args:
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.   eps_grid: budgets in pixel units of
            [0, 1] (Linf for FGSM; eps = 0 maps to x itself).   batch_size: images per attack batch.
    Returns:
        {eps: (N, C, H, W) float32 in [0, 1]} in the order of the grid.
    Raises:
        ValueError: bad x, y, batch_size, or an eps of the grid out of range (checked before any work).
    """
    return dict(_by_eps(model, x, y, attack, eps_grid, batch_size))


def _by_eps(model, x, y, attack, eps_grid, batch_size) -> Iterator[tuple[float, torch.Tensor]]:
    """(eps, x_adv) for each eps of the grid, lazily: an attack that is run per eps runs only when
    its item is taken, so a caller that classifies each x_adv before taking the next one draws a
    random model's randomness in the same order as one call per eps."""
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    grid = [check_eps(e, "inf") if isinstance(attack, FGSM) else float(e) for e in eps_grid]
    shared = isinstance(attack, FGSM) and not is_random(model) and not any(m.training for m in model.modules())
    if not shared or sum(e > 0 for e in grid) < 2:
        for e in grid:
            yield e, adversarial_examples(model, x, y, attack, e, batch_size)
        return
    loss_fn = get_loss(attack.loss, **attack.loss_kwargs)
    direction = torch.cat([input_gradient(model, xb, yb, loss_fn)[1].sign()
                           for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
    for e in grid:
        yield e, (x if e == 0 else (x.detach() + e * direction).clamp_(0.0, 1.0))


def correct_by_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps_grid: Sequence[float],
                   batch_size: int = 500, norm: str = "inf", passes: int = 1) -> dict[float, torch.Tensor]:
    """Per-example correctness under ``attack`` at every eps of the grid (eps = 0: the clean images),
    the input of paired claims (``evaluation.claims.paired_claim``) and of ``worst_case.WorstCase``.

    Args:
        attack: ``(model, x, y, eps) -> x_adv``, e.g. ``attacks.FGSM()``.   eps_grid: budgets in pixel
            units of [0, 1] (Linf unless norm="2").   passes: forward passes that classify each
            adversarial image (> 1 for a random model: fresh draws, never the attack's own).
    Returns:
        {eps: (N,) float32 in [0, 1]}: 0/1 for one pass, else the fraction of passes correct.
    Raises:
        ValueError: an eps out of range (the whole grid is checked before any attack runs), passes < 1.
    """
    grid = [check_eps(e, norm) for e in eps_grid]
    check_positive_int(passes, "passes")
    out = {}
    for e, x_adv in _by_eps(model, x, y, attack, grid, batch_size):
        out[e] = torch.stack([predict(model, x_adv) == y for _ in range(passes)]).float().mean(0)
    return out


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps_grid: Sequence[float],
                    batch_size: int = 500, norm: str = "inf") -> dict[float, float]:
    """Accuracy under ``attack`` at every eps of the grid (eps = 0: clean accuracy): the mean of
    ``correct_by_eps``.

    Args:
        attack: ``(model, x, y, eps) -> x_adv``, e.g. ``attack_fn("fgsm")``.
        eps_grid: budgets in pixel units of [0, 1] (Linf unless norm="2").
    Returns:
        {eps: accuracy in [0, 1]} in the order of the grid.
    Raises:
        ValueError: an eps out of range (checked for the whole grid before any attack runs).
    """
    return {e: c.mean().item() for e, c in correct_by_eps(model, x, y, attack, eps_grid, batch_size, norm).items()}


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
        return {"monitor": "robust_accuracy", "data": store.tensor_digest(self.x, self.y), "eps": self.eps_grid,
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
            for e, x_adv in _by_eps(model, x, y, attack, grid, batch_size):
                acc = clean if e == 0 else accuracy(model, x_adv, y)
                rows.append({"model": m_name, "attack": a_name, "eps": e, "accuracy": acc})
    return pd.DataFrame(rows)


__all__ = ["run_attack", "within_budget", "attack_accuracy", "adversarial_examples", "adversarial_examples_by_eps",
           "correct_by_eps", "robust_accuracy", "accuracy_table", "RobustAccuracyMonitor"]
