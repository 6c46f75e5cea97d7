"""The training-objective protocol that ``fit(objective=...)`` calls, its base class and shared checks.

An objective is a small object called as ``obj(model, x, y) -> 0-dim loss``, where the model maps
x (N, C, H, W) float in [0, 1] to logits (N, K) and y is (N,) int64; the training loop then calls
``loss.backward()``. Common contract: x and y are validated first; x is never modified in place;
the model's train/eval mode is left as the caller set it (a model in train mode draws fresh
dropout / noise at every forward pass, and updates batch-norm statistics at every one); the
parameters' ``.grad`` are written only by the caller's ``backward`` of the returned loss (inner
input gradients use ``torch.autograd.grad``). ``cache_key()`` gives a JSON-serialisable dict
{"name": ..., hyper-parameters}. ``reset()`` forgets everything counted in a previous training
(``fit`` calls it before the first epoch). Objectives need gradients: call them outside
``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from ..attacks.grad import require_grad_mode
from ..core.checks import check_images, check_labels, check_number

ATTACK_MODES = ("train", "eval")


class Objective(Protocol):
    """A training objective that needs the model itself, not only its logits (``fit(objective=...)``).

    ``objective(model, x, y)`` returns the 0-dim loss of one mini-batch (x (B, C, H, W) float32 in
    [0, 1], y (B,) int64), e.g. adversarial training (``training.adversarial``), VAT and margin
    maximisation (``training.regularisers``) or ``methods.critic.AdversaryCritic``.
    ``cache_key()`` returns a JSON-serialisable description of everything that determines it.
    Optional methods: ``reset()`` (called by ``fit`` before training: forget counters of an
    earlier training), ``end_epoch(epoch) -> dict[str, float]`` (metrics for the history, called
    after each epoch), ``state_dict()`` / ``load_state_dict(state)`` (state saved with the
    checkpoint, e.g. a critic network).
    """

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def cache_key(self) -> Any: ...


def check_hyper(value: float, name: str, positive: bool) -> float:
    """A finite float hyper-parameter, > 0 (``positive``) or >= 0.

    Raises:
        ValueError: not a finite number, or out of range (the message names ``name``).
    """
    return check_number(value, name, 0.0, strict=positive)


def check_objective_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """x (N, C, H, W) floating in [0, 1], y (N,) int64, and gradients available.

    Raises:
        ValueError: bad x or y.   RuntimeError: inside ``torch.inference_mode``.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    require_grad_mode()


@contextlib.contextmanager
def model_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run the block with the model in ``mode`` ("train": as the caller set it; "eval"), then restore its mode."""
    was_training = model.training
    if mode == "eval":
        model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ObjectiveBase:
    """Base class: ``cache_key`` and ``repr`` from the hyper-parameters listed in ``_params``; ``reset``
    calls ``_reset`` (subclasses with counters override ``_reset``)."""

    name: str = ""
    _params: tuple[str, ...] = ()

    def cache_key(self) -> dict:
        """{"name": name, hyper-parameter: value, ...}; JSON-serialisable (floats and ints)."""
        return {"name": self.name, **{p: getattr(self, p) for p in self._params}}

    def reset(self) -> None:
        """Forget what an earlier training counted (epochs done, mixture counts, KL sums)."""
        self._reset()

    def _reset(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{p}={getattr(self, p)!r}' for p in self._params)})"


__all__ = ["ATTACK_MODES", "Objective", "ObjectiveBase", "check_hyper", "check_objective_inputs", "model_mode"]
