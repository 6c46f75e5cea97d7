"""The negative ELBO of a network with stochastic LWTA layers (Panousis et al. 2021, eq. 9; the
student report's section 4 loss), as a training objective (contract: ``training.objective``)."""

from __future__ import annotations

import torch
from torch import nn

from ..core.losses import cross_entropy
from ..nn.lwta import kl_divergence
from ..training.objective import ObjectiveBase, check_hyper, check_objective_inputs


# ----------------------------------------------------------------------------------------------
# The ELBO of Stochastic LWTA


class ELBO(ObjectiveBase):
    """Negative ELBO of a network with stochastic LWTA (and optionally IBP) layers (Panousis et al.
    2021, eq. 9; the report's section 4 loss):

        loss = base(model, x, y) + kl_weight * sum_layers KL(q || p),

    where ``base`` is cross-entropy on the clean batch (``base=None``) or another objective (e.g.
    PGD adversarial training: the Stochastic-LWTA paper trains with PGD examples), and the KL terms
    are those of the base's *last* forward pass (``lwta.kl_divergence``: winner indicators vs the
    uniform prior, IBP gates and sticks vs their priors). kl_weight = 1e-3 is the authors' scale
    (their code divides the batch-mean KL by 1000, the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack; their released training script
    leaves the KL out, i.e. kl_weight = 0).

    Args:
        base: an objective, or None for cross-entropy.   kl_weight: >= 0, finite.
    Call:
        obj(model, x, y) -> 0-dim loss, nats. ``end_epoch`` reports the mean KL term ("kl").
    Raises:
        ValueError: a bad kl_weight or a base without ``cache_key``.
    """

    name = "elbo"
    _params = ("kl_weight",)

    def __init__(self, base: ObjectiveBase | None = None, kl_weight: float = 1e-3) -> None:
        if base is not None and not hasattr(base, "cache_key"):
            raise ValueError(f"base objective {base!r} has no cache_key()")
        self.base = base
        self.kl_weight = check_hyper(kl_weight, "kl_weight", positive=False)
        self._kl_sum, self._batches = 0.0, 0

    def cache_key(self) -> dict:
        return {**super().cache_key(), "base": None if self.base is None else self.base.cache_key()}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        loss = cross_entropy(model(x), y) if self.base is None else self.base(model, x, y)
        kl = kl_divergence(model)
        self._kl_sum += float(kl.detach())
        self._batches += 1
        return loss + self.kl_weight * kl

    def _reset(self) -> None:
        self._kl_sum, self._batches = 0.0, 0
        if hasattr(self.base, "reset"):
            self.base.reset()

    def state_dict(self) -> dict:
        """The base objective's state (e.g. PGD-AT's epochs done), for an exact resume of ``fit``."""
        return {"base": self.base.state_dict() if hasattr(self.base, "state_dict") else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("base") is not None and hasattr(self.base, "load_state_dict"):
            self.base.load_state_dict(state["base"])

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """{"kl": mean KL term of the epoch's batches} plus the base objective's metrics."""
        out = dict(self.base.end_epoch(epoch)) if hasattr(self.base, "end_epoch") else {}
        out["kl"] = self._kl_sum / max(self._batches, 1)
        self._kl_sum, self._batches = 0.0, 0
        return out

    def __repr__(self) -> str:
        return f"ELBO(base={self.base!r}, kl_weight={self.kl_weight!r})"


__all__ = ["ELBO"]
