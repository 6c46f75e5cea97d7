"""Expectation over Transformation (Athalye et al. 2018) for models with a random forward pass."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.checks import check_positive_int

VECTORIZE_CHOICES = ("auto", True, False)
_KNOWN_MODULES = ("torch.nn.", "robust_utils.nn.")


def vectorizable(model: nn.Module) -> bool:
    """Whether ``EOT`` may draw the M samples in one vectorised call of ``model`` (infrastructure).

    True when every module of ``model`` is one of torch.nn's or robust_utils.nn's, whose
    randomness is drawn by torch's random functions (so ``torch.func.vmap(...,
    randomness="different")`` gives every draw its own numbers), and no module updates running
    statistics in this call (batch norm in training mode). A module defined elsewhere may draw
    its randomness in Python or keep state between calls, which vmap would share between the M
    draws: such a model is not vectorisable.
    """
    for m in model.modules():
        if not type(m).__module__.startswith(_KNOWN_MODULES):
            return False
        if m.training and getattr(m, "track_running_stats", False):
            return False
    return True


class EOT(nn.Module):
    """A model wrapper whose output is the log of the Monte-Carlo mean prediction over M forward passes.

    forward(x) = log( (1/M) sum_m softmax(model_m(x)) ), each of the M draws model_m an independent
    draw of the model's randomness (a stochastic layer samples new weights for every draw). Every
    attack of ``robust_utils.attacks`` then works unchanged on ``eot(model, M)``: its gradient is
    the gradient of the loss of the expected prediction E_w[p(y | x, w)], estimated with M samples.
    EOT (Athalye, Engstrom, Ilyas & Kwok 2018; used against randomised defenses by Athalye,
    Carlini & Wagner 2018, "stochastic gradients") averages over the randomness; the classic form
    averages the gradients of the per-draw loss, E_w[grad log p]; ours is grad log E_w[p], the
    loss of the averaged prediction. Both use M draws per gradient and agree as the draws
    concentrate.

    How the M draws are made (``vectorize``), infrastructure:
      - vectorised (``True``, or ``"auto"`` when ``vectorizable(model)``): one call of
        ``torch.func.vmap(model, randomness="different")`` over a sample axis of size M. An SDR or
        DropConnect layer draws ONE weight sample per forward call for the whole batch (Khan et
        al. 2019, Algorithm 2), so stacking M copies of the batch into one ordinary call would give
        all M copies the same draw; under vmap each of the M draws gets its own weights (and its
        own LWTA / PNI / dropout noise). The draws come from torch's global generator in another
        order than M separate calls, so the numbers differ from the loop's (same distribution).
        ``chunk_size`` draws at most that many samples at once (memory). A module's ``last_kl``
        afterwards holds the mean of its M draws' values.
      - the loop (``False``, or ``"auto"`` otherwise): M ordinary calls of the model, one after
        the other, as in the first version of this class.

    With M = 1 the output is log_softmax(model(x)) from one ordinary call: the same softmax, the
    same cross-entropy and the same logit differences as model(x), so every attack gives the same
    result as on the plain model for the same random draws.

    Args:
        model: maps x (N, C, H, W) in [0, 1] to logits (N, K).   samples: M >= 1.
        vectorize: "auto", True or False (see above).   chunk_size: None or an int >= 1.
    Shapes: x (N, C, H, W) float32 -> log-probabilities (N, K) float32 (valid logits).
    Raises:
        ValueError: samples < 1, an unknown vectorize, chunk_size < 1.
        RuntimeError: (forward) vmap failed on a module; the message says to pass vectorize=False.
    """

    def __init__(self, model: nn.Module, samples: int = 10, vectorize: bool | str = "auto",
                 chunk_size: int | None = None):
        super().__init__()
        if not (vectorize is True or vectorize is False or vectorize == "auto"):
            raise ValueError(f"vectorize must be 'auto', True or False, got {vectorize!r}")
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        self.model = model
        self.samples = check_positive_int(samples, "samples")
        self.vectorize, self.chunk_size = vectorize, chunk_size

    @property
    def vectorized(self) -> bool:
        """Whether the next forward pass draws the M samples in one vmap call (see the class docstring)."""
        if self.samples == 1:
            return False
        return vectorizable(self.model) if self.vectorize == "auto" else bool(self.vectorize)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The M draws' log-softmax outputs, (M, N, K) float32, each an independent draw."""
        if not self.vectorized:
            return torch.stack([torch.log_softmax(self.model(x), dim=1) for _ in range(self.samples)])
        return self._vmapped(x)

    def _vmapped(self, x: torch.Tensor) -> torch.Tensor:
        holders = [m for m in self.model.modules() if hasattr(m, "last_kl")]
        had_kl: list[bool] = []

        def draw(_: torch.Tensor):
            logp = torch.log_softmax(self.model(x), dim=1)
            had_kl[:] = [isinstance(m.last_kl, torch.Tensor) for m in holders]
            return logp, tuple(m.last_kl if has else logp.new_zeros(()) for m, has in zip(holders, had_kl))

        axis = torch.zeros(self.samples, device=x.device)
        try:
            logp, kls = torch.func.vmap(draw, randomness="different", chunk_size=self.chunk_size)(axis)
        except RuntimeError as exc:
            raise RuntimeError(f"EOT: drawing the {self.samples} samples with torch.func.vmap failed ({exc}); "
                               f"use eot(model, samples, vectorize=False) for M separate calls") from exc
        for m, has, kl in zip(holders, had_kl, kls):
            m.last_kl = kl.mean(0) if has else None  # the value set inside vmap cannot leave it
        return logp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.samples == 1:
            return torch.log_softmax(self.model(x), dim=1)
        return torch.logsumexp(self.log_probs(x), dim=0) - math.log(self.samples)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, vectorize={self.vectorize!r}"


def eot(model: nn.Module, samples: int = 10, vectorize: bool | str = "auto", chunk_size: int | None = None) -> EOT:
    """``EOT(model, samples, vectorize, chunk_size)``: attack ``eot(model, M)`` instead of ``model`` to
    average over M independent draws of its randomness."""
    return EOT(model, samples, vectorize, chunk_size)


__all__ = ["EOT", "eot", "vectorizable", "VECTORIZE_CHOICES"]
