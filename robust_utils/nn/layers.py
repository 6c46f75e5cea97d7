"""Stochastic linear layers: the Stochastic Delta Rule (SDR) layer and DropConnect.

Both draw their weights afresh in every forward call, in training *and* at inference (as Khan et
al. 2019 do: "we compute the forward pass of our model using weights sampled from the learned
parameter distributions"), independently of ``model.train()`` / ``model.eval()``; one draw is
shared by the whole batch of that call (Algorithm 2, line 6: "sample batch parameter weights").
``mean_network(model)`` switches every such layer of a model to its mean weights (the
deterministic network), e.g. to attack it and transfer the result.

The training rules that are not plain gradient descent (SDR-decay's sigma update and decay, the
variance thresholds of Algorithm 3 and their schedule) live in ``robust_utils.sdr``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..core.switch import temporarily

SDR_RULES = ("decay", "learnable")


class StochasticLinear(nn.Module):
    """Base of the stochastic linear layers: ``stochastic=True`` samples, False uses the mean weights."""

    stochastic: bool = True

    def mean_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def sample_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.sample_weight() if self.stochastic else self.mean_weight()
        return F.linear(x, w, b)


def _linear_init(out_features: int, in_features: int, bias: bool) -> tuple[nn.Parameter, nn.Parameter | None]:
    """Weights and bias initialised exactly as ``nn.Linear`` does (Kaiming-uniform, a = sqrt(5))."""
    ref = nn.Linear(in_features, out_features, bias=bias)
    return nn.Parameter(ref.weight.detach().clone()), (nn.Parameter(ref.bias.detach().clone()) if bias else None)


class SDRLinear(StochasticLinear):
    """Linear layer with Gaussian weights and biases w ~ N(mu, sigma^2) (Khan et al. 2019, section 4.1).

    Forward: w = mu + sigma * e, e ~ N(0, I) drawn once per call (the reparameterisation of
    Figure 2), y = x w^T + b, with b drawn the same way. ``sigma`` is the standard deviation; the
    paper calls the quantity it clamps (Algorithm 3) a "variance" but writes it sigma, and so do we.

    Two training rules (``rule``):
      - "learnable" (SDR-Learnable, section 4.3): mu and sigma are both ``nn.Parameter``s; the
        gradient reaches sigma through w = mu + sigma * e (dL/dsigma = dL/dw * e).
      - "decay" (SDR-decay, Algorithm 2): only mu is a parameter; sigma is a buffer. Because
        dw/dmu = 1, mu.grad is the gradient at the sampled weight, dL/dw, so a plain SGD step is
        eq. 1's mu <- mu - alpha dL/dw; ``sdr.SDRDecay`` then applies sigma <- sigma + beta |dL/dw|
        and the decay sigma <- zeta sigma.

    Initialisation: mu as ``nn.Linear``; sigma = ``sigma_init`` for every weight and bias, by
    default "halved Xavier", 0.5 * sqrt(2 / (fan_in + fan_out)) (Frazier-Logue & Hanson's SDR
    code initialises sigma at half a Xavier scale; Khan et al. do not say).

    Args:
        in_features, out_features: sizes.   bias: learn a (stochastic) bias.
        rule: "learnable" or "decay".   sigma_init: initial sigma (>= 0), or None for halved Xavier.
    Shapes: x (N, in_features) float32 -> (N, out_features) float32.
    Raises:
        ValueError: unknown rule, negative sigma_init.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rule: str = "learnable",
                 sigma_init: float | None = None):
        super().__init__()
        if rule not in SDR_RULES:
            raise ValueError(f"unknown SDR rule {rule!r}; valid: {', '.join(SDR_RULES)}")
        if sigma_init is None:
            sigma_init = 0.5 * math.sqrt(2.0 / (in_features + out_features))
        if not sigma_init >= 0:
            raise ValueError(f"sigma_init must be >= 0, got {sigma_init}")
        self.in_features, self.out_features, self.rule = in_features, out_features, rule
        self.weight_mu, self.bias_mu = _linear_init(out_features, in_features, bias)
        w_sigma = torch.full((out_features, in_features), float(sigma_init))
        b_sigma = torch.full((out_features,), float(sigma_init)) if bias else None
        if rule == "learnable":
            self.weight_sigma = nn.Parameter(w_sigma)
            self.bias_sigma = nn.Parameter(b_sigma) if bias else None
        else:
            self.register_buffer("weight_sigma", w_sigma)
            self.register_buffer("bias_sigma", b_sigma)

    def pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(mu, sigma) for the weight and, if present, the bias."""
        yield self.weight_mu, self.weight_sigma
        if self.bias_mu is not None:
            yield self.bias_mu, self.bias_sigma

    def mean_weight(self):
        return self.weight_mu, self.bias_mu

    def sample_weight(self):
        w = self.weight_mu + self.weight_sigma * torch.randn_like(self.weight_mu)
        b = None if self.bias_mu is None else self.bias_mu + self.bias_sigma * torch.randn_like(self.bias_mu)
        return w, b

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule!r}"


class DropConnectLinear(StochasticLinear):
    """Linear layer whose weights are dropped independently with probability p (Wan et al. 2013).

    Forward: w = W * m / (1 - p) with m ~ Bernoulli(1 - p) elementwise, drawn once per call; the
    bias is never dropped. Our choices, which the paper (Khan et al. 2019, section 5: "DropConnect
    (p = 0.2)") does not specify: the mask is sampled at inference too (the comparison is between
    non-deterministic models), and the kept weights are scaled by 1 / (1 - p) ("inverted"
    DropConnect), so the mean network is W itself (Wan et al. instead train unscaled and use a
    Gaussian moment-matching approximation at inference).

    Args:
        in_features, out_features: sizes.   p: drop probability in [0, 1).   bias: learn a bias.
    Shapes: x (N, in_features) float32 -> (N, out_features) float32.
    Raises:
        ValueError: p outside [0, 1).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.2):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"DropConnect p must lie in [0, 1), got {p}")
        self.in_features, self.out_features, self.p = in_features, out_features, float(p)
        self.weight, self.bias = _linear_init(out_features, in_features, bias)

    def mean_weight(self):
        return self.weight, self.bias

    def sample_weight(self):
        # out of place (torch.vmap can batch it; same random numbers as empty_like(W).bernoulli_(1 - p))
        keep = torch.bernoulli(self.weight.detach(), 1.0 - self.p)
        return self.weight * keep / (1.0 - self.p), self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, p={self.p}"


LINEAR_LAYERS = ("linear", "sdr-decay", "sdr-learnable", "dropconnect", "pni")


def make_linear(kind: str, in_features: int, out_features: int, **kwargs) -> nn.Module:
    """A linear layer by kind: "linear" (nn.Linear), "sdr-decay", "sdr-learnable", "dropconnect" or
    "pni" (``pni.PNILinear``, Rakin et al. 2019's trainable noise on the weights).

    kwargs go to the layer (``sigma_init`` for SDR, ``p`` for DropConnect, ``noise`` and
    ``alpha_init`` for PNI).
    Raises:
        ValueError: unknown kind or argument.
    """
    try:
        if kind == "linear":
            return nn.Linear(in_features, out_features, **kwargs)
        if kind in ("sdr-decay", "sdr-learnable"):
            return SDRLinear(in_features, out_features, rule=kind.split("-")[1], **kwargs)
        if kind == "dropconnect":
            return DropConnectLinear(in_features, out_features, **kwargs)
        if kind == "pni":
            from .pni import PNILinear

            return PNILinear(in_features, out_features, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for a {kind!r} layer: {e}") from None
    raise ValueError(f"unknown linear layer {kind!r}; valid: {', '.join(LINEAR_LAYERS)}")


def stochastic_layers(model: nn.Module) -> list[StochasticLinear]:
    """Every stochastic layer of a model (empty for a deterministic one)."""
    return [m for m in model.modules() if isinstance(m, StochasticLinear)]


def sdr_layers(model: nn.Module) -> list[SDRLinear]:
    """Every SDR layer of a model."""
    return [m for m in model.modules() if isinstance(m, SDRLinear)]


@contextlib.contextmanager
def mean_network(model: nn.Module):
    """Within the block, every stochastic layer of ``model`` uses its mean weights (deterministic).

    The previous setting of each layer is restored on exit, even after an exception.
    """
    with temporarily(stochastic_layers(model), stochastic=False):
        yield model


def mean_sigma(model: nn.Module) -> float:
    """The mean sigma over every weight and bias of the model's SDR layers (nan if it has none)."""
    sig = [s.detach().flatten() for m in sdr_layers(model) for _, s in m.pairs()]
    return float(torch.cat(sig).mean()) if sig else math.nan


__all__ = ["StochasticLinear", "SDRLinear", "DropConnectLinear", "SDR_RULES", "LINEAR_LAYERS", "make_linear",
           "stochastic_layers", "sdr_layers", "mean_network", "mean_sigma"]
