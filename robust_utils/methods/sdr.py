"""The training rules of the Stochastic Delta Rule beyond gradient descent (Khan et al. 2019).

    SDRDecay          Algorithm 2: sigma += beta |dL/dw| after every step, sigma *= zeta every tau batches.
    VarianceSchedule  Algorithm 3 (clamp every sigma into [low, high] after every step) and the
                      schedule of section 4.3 (both thresholds raised by ``step`` when the held-out
                      accuracy plateaus, at most once every ``every`` epochs).

Both are ``train.fit`` callbacks: their ``after_step(epoch, batch, model)`` runs after every
optimiser step (the parameters' ``.grad`` still hold that step's gradient), and calling them
after every epoch returns metrics for the training history.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import store
from ..core.checks import check_images, check_labels, check_positive_int
from ..evaluation.metrics import stochastic_accuracy
from ..nn.layers import mean_sigma, sdr_layers


class SDRDecay:
    """SDR-decay's sigma update (Khan et al. 2019, eq. 1 and Algorithm 2), as a ``fit`` callback.

    After each optimiser step on batch b (1-based within the epoch), for every SDR layer with
    rule "decay" and each (mu, sigma) pair:
        sigma <- sigma + beta * |dL/dw|          (eq. 1; dL/dw = mu.grad, the gradient at the sampled w)
        sigma <- zeta * sigma   if b % tau == 0  (Algorithm 2, line 9)
    The mean update of eq. 1, mu <- mu - alpha dL/dw, is the SGD step itself (optimiser "sgd", lr
    alpha, no momentum). Defaults: beta 0.05 and zeta 0.7 are Frazier-Logue & Hanson's; Khan et
    al. give no values, nor one for tau.

    Args:
        beta: >= 0, sigma's step size.   zeta: decay factor in (0, 1].   tau: decay every tau batches (>= 1).
    Returns (as an epoch callback): {"sigma_mean": the mean sigma of the model's SDR layers}.
    Raises:
        ValueError: bad beta, zeta or tau; at the first step, a model without SDR-decay layers.
    """

    def __init__(self, beta: float = 0.05, zeta: float = 0.7, tau: int = 100):
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0 < zeta <= 1:
            raise ValueError(f"zeta must lie in (0, 1], got {zeta}")
        self.beta, self.zeta, self.tau = float(beta), float(zeta), check_positive_int(tau, "tau")

    @torch.no_grad()
    def after_step(self, epoch: int, batch: int, model: nn.Module) -> None:
        """Apply eq. 1's sigma update and, every tau batches, the decay (in place)."""
        layers = [m for m in sdr_layers(model) if m.rule == "decay"]
        if not layers:
            raise ValueError("SDRDecay needs a model with SDR layers of rule 'decay'")
        decay = batch % self.tau == 0
        for m in layers:
            for mu, sigma in m.pairs():
                if mu.grad is not None:
                    sigma.add_(mu.grad.abs(), alpha=self.beta)
                if decay:
                    sigma.mul_(self.zeta)

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        return {"sigma_mean": mean_sigma(model)}

    def cache_key(self) -> dict:
        return {"hook": "sdr_decay", "beta": self.beta, "zeta": self.zeta, "tau": self.tau}


class VarianceSchedule:
    """Variance thresholds (Khan et al. 2019, Algorithm 3) and their schedule (section 4.3).

    After every optimiser step (``after_step``), every sigma of every SDR layer is clamped into
    [low, high]. After every epoch (calling it), the accuracy on a held-out set (x, y) is measured with
    ``passes`` stochastic forward passes; if it has plateaued, i.e. it is not above the best
    accuracy since the last raise by more than ``tol``, and at least ``every`` epochs have passed
    since the last raise (or the start), both thresholds are raised by ``step``. The paper starts at
    [0.0, 1.0], raises by 0.05 "at most once every five epochs", and measures "the test dataset";
    we measure a held-out split of the training set instead (the notebooks pass it), so the test
    set plays no part in training. "Plateau" is not defined further in the paper; ``tol`` is ours.

    Stopping rule (ours, optional): the paper raises the thresholds "to find a trade-off between
    task-specific performance and adversarial robustness" while "controlling the maximum variance"
    keeps the clean performance high, but gives no rule for when to stop; over 100 epochs the
    plateau rule alone keeps raising (about one raise every ``every`` epochs). With ``max_drop``,
    the schedule stops for good at the first plateau whose held-out accuracy lies more than
    ``max_drop`` below the best held-out accuracy reached before the first raise (the reference
    task performance): further raises would trade more clean accuracy than the paper accepts.

    Args:
        x, y: held-out images (N, C, H, W) float32 in [0, 1] and labels (N,) int64.
        low, high: initial thresholds, 0 <= low <= high.   step: raise per plateau (> 0).
        every: minimum epochs between raises (>= 1).   tol: plateau tolerance (accuracy, >= 0).
        passes: stochastic passes per accuracy measurement (>= 1).   batch_size: evaluation batch.
        max_drop: the stopping rule's accuracy margin in (0, 1], or None (never stop: the paper's
            schedule as written).
    Returns (as a callback): {"heldout_acc", "sigma_low", "sigma_high" (thresholds in force
        during the epoch), "sigma_mean" (at its end), "raised" (1.0 if raised after it), and with
        max_drop "stopped" (1.0 once the schedule has stopped)}.
    Raises:
        ValueError: bad arguments.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, low: float = 0.0, high: float = 1.0, step: float = 0.05,
                 every: int = 5, tol: float = 0.001, passes: int = 1, batch_size: int = 1000,
                 max_drop: float | None = None):
        check_images(x)
        check_labels(y, x.shape[0])
        if not 0 <= low <= high:
            raise ValueError(f"thresholds must satisfy 0 <= low <= high, got [{low}, {high}]")
        if not step > 0 or not tol >= 0:
            raise ValueError(f"step must be > 0 and tol >= 0, got step={step}, tol={tol}")
        self.x, self.y = x, y
        self.start = (float(low), float(high))
        self.low, self.high, self.step, self.tol = float(low), float(high), float(step), float(tol)
        self.every = check_positive_int(every, "every")
        self.passes = check_positive_int(passes, "passes")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if max_drop is not None and not 0 < max_drop <= 1:
            raise ValueError(f"max_drop must lie in (0, 1] or be None, got {max_drop!r}")
        self.max_drop = None if max_drop is None else float(max_drop)
        self._reset()

    def _reset(self) -> None:
        (self.low, self.high), self._best, self._since = self.start, -1.0, 0
        self._reference, self._stopped = -1.0, False

    @torch.no_grad()
    def after_step(self, epoch: int, batch: int, model: nn.Module) -> None:
        """Algorithm 3: clamp every sigma of the model's SDR layers into [low, high], in place.

        The first step of a training run (epoch 1, batch 1) resets the thresholds to their start,
        so one schedule object can serve several runs.
        """
        if epoch == 1 and batch == 1:
            self._reset()
        for m in sdr_layers(model):
            for _, sigma in m.pairs():
                sigma.clamp_(self.low, self.high)

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        acc = stochastic_accuracy(model, self.x, self.y, passes=self.passes, batch_size=self.batch_size).mean
        out = {"heldout_acc": acc, "sigma_low": self.low, "sigma_high": self.high, "sigma_mean": mean_sigma(model)}
        self._since += 1
        if self.low == self.start[0]:  # no raise yet: the reference task performance
            self._reference = max(self._reference, acc)
        plateau = acc <= self._best + self.tol
        if plateau and self.max_drop is not None and acc < self._reference - self.max_drop:
            self._stopped = True
        raised = plateau and self._since >= self.every and not self._stopped
        self._best = max(self._best, acc)
        if raised:
            self.low += self.step
            self.high += self.step
            self._best, self._since = -1.0, 0
        out["raised"] = float(raised)
        if self.max_drop is not None:
            out["stopped"] = float(self._stopped)
        return out

    def state_dict(self) -> dict:
        """The schedule's position (thresholds, plateau bookkeeping), for an exact resume of ``fit``."""
        return {"low": self.low, "high": self.high, "best": self._best, "since": self._since,
                "reference": self._reference, "stopped": self._stopped}

    def load_state_dict(self, state: dict) -> None:
        self.low, self.high, self._best, self._since = state["low"], state["high"], state["best"], state["since"]
        self._reference, self._stopped = state["reference"], state["stopped"]

    def cache_key(self) -> dict:
        return {"hook": "variance_schedule", "data": store.tensor_digest(self.x, self.y), "start": self.start,
                "step": self.step, "every": self.every, "tol": self.tol, "passes": self.passes,
                "batch_size": self.batch_size, **({} if self.max_drop is None else {"max_drop": self.max_drop})}


__all__ = ["SDRDecay", "VarianceSchedule"]
