"""Parametric Noise Injection (PNI) on the weights: Rakin, He & Fan 2019 (CVPR), eq. 2-4 and 6-8.

Every forward pass of a PNI layer, in training *and* in eval mode (the authors' code has no
``self.training`` check, the authors' code, github.com/elliothe/CVPR_2019_PNI), draws fresh Gaussian noise eta ~ N(0, std(W)^2) of the
weight's shape and uses W + alpha * eta, with a learnable noise scale alpha. ``pni_noise(model,
False)`` switches the noise off (the alpha = 0 network), e.g. to attack a noise-free surrogate
and transfer the result (PNI Table 2 "test without").
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_number
from ..core.switch import temporarily

PNI_MODES = ("layer", "channel", "element")


class _NoDecayParameter(nn.Parameter):
    """An nn.Parameter flagged ``no_weight_decay = True`` (a class attribute, so that the flag
    survives ``copy.deepcopy``, which drops attributes set on a plain Parameter)."""

    no_weight_decay = True


class _PNI:
    """The noise scale alpha and the noisy weight shared by ``PNIConv2d`` and ``PNILinear``."""

    def _init_alpha(self, noise: str, alpha_init: float, channel_shape: tuple[int, ...]) -> None:
        w = self.weight
        if w.numel() < 2:
            raise ValueError("PNI needs at least 2 weights to estimate their standard deviation")
        shape = {"layer": (1,), "channel": channel_shape, "element": tuple(w.shape)}[noise]
        self.noise, self.noise_enabled = noise, True
        self.alpha = _NoDecayParameter(torch.full(shape, alpha_init, device=w.device, dtype=w.dtype))
        self.alpha.no_weight_decay = True  # also as an instance attribute: kept by torch.save / pickle

    def noisy_weight(self) -> torch.Tensor:
        """W + alpha * eta with eta ~ N(0, std(W)^2), drawn now (std: one detached scalar over all of
        W, Bessel-corrected as torch.std); W itself when ``noise_enabled`` is False."""
        if not self.noise_enabled:
            return self.weight
        with torch.no_grad():
            eta = torch.randn_like(self.weight) * self.weight.std()
        return self.weight + self.alpha * eta

    def _pni_repr(self) -> str:
        return f", noise={self.noise!r}, noise_enabled={self.noise_enabled}"


def _check_pni_args(noise: str, alpha_init: float) -> float:
    if noise not in PNI_MODES:
        raise ValueError(f"unknown PNI noise mode {noise!r}; valid: {', '.join(PNI_MODES)}")
    return check_number(alpha_init, "alpha_init", 0)


class PNIConv2d(_PNI, nn.Conv2d):
    """nn.Conv2d with Parametric Noise Injection on its weight (PNI-W; Rakin et al. 2019, eq. 2-4).

    Forward, at every call in train and eval mode (the authors' ``noise_Conv2d``, the authors' code, github.com/elliothe/CVPR_2019_PNI):
    under no_grad, std = weight.std() (one detached scalar for the layer) and
    eta ~ N(0, std^2) of the weight's shape; then w_noisy = weight + alpha * eta and
    y = conv2d(x, w_noisy). The noise is a constant for autograd, so dL/dalpha = sum of
    dL/dw_noisy * eta over the positions sharing an alpha (eq. 6-8) and dL/dweight = dL/dw_noisy.
    With ``noise_enabled = False`` (see ``pni_noise``) the layer is exactly nn.Conv2d.

    alpha (``noise``): "layer" one scalar, shape (1,) (the paper's default, PNI-W layer-wise);
    "channel" (out_channels, 1, 1, 1); "element" the weight's shape; every entry ``alpha_init``
    (0.25, "alpha_l = 0.25 as default initialization"). alpha carries ``no_weight_decay = True``:
    the authors exclude it from weight decay (the authors' code, github.com/elliothe/CVPR_2019_PNI), which is up to the optimiser's
    parameter groups (``robust_utils.train``); no other parameter has the flag.

    Args: those of nn.Conv2d, plus
        noise: one of ``PNI_MODES``.   alpha_init: initial alpha (>= 0).
    Shapes: x (N, in_channels, H, W) float -> (N, out_channels, H', W'), same dtype.
    Raises:
        ValueError: an unknown noise mode or a negative / non-finite alpha_init (before any work);
            a weight with fewer than 2 entries (its std is undefined).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 noise: str = "layer", alpha_init: float = 0.25):
        alpha_init = _check_pni_args(noise, alpha_init)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_alpha(noise, alpha_init, (out_channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._pni_repr()


class PNILinear(_PNI, nn.Linear):
    """nn.Linear with Parametric Noise Injection on its weight (the authors' ``noise_Linear``).

    As ``PNIConv2d`` (read it for the forward pass, the gradient and the weight-decay flag), with
    y = x w_noisy^T + b and a "channel" alpha of shape (out_features, 1).

    Args: those of nn.Linear, plus noise (one of ``PNI_MODES``) and alpha_init (>= 0).
    Shapes: x (N, in_features) float -> (N, out_features), same dtype.
    Raises:
        ValueError: an unknown noise mode or a negative / non-finite alpha_init (before any work);
            a weight with fewer than 2 entries.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 noise: str = "layer", alpha_init: float = 0.25):
        alpha_init = _check_pni_args(noise, alpha_init)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_alpha(noise, alpha_init, (out_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._pni_repr()


def pni_layers(model: nn.Module) -> list[PNIConv2d | PNILinear]:
    """Every PNI layer of a model, in ``model.modules()`` order (empty if none)."""
    return [m for m in model.modules() if isinstance(m, _PNI)]


def pni_alphas(model: nn.Module) -> dict[str, float]:
    """Module name -> mean alpha (a float) of every PNI layer, in order (cf. PNI Table 1)."""
    return {name: float(m.alpha.detach().mean()) for name, m in model.named_modules() if isinstance(m, _PNI)}


@contextlib.contextmanager
def pni_noise(model: nn.Module, enabled: bool):
    """Within the block, the weight noise of every PNI layer of ``model`` is on (``enabled``) or off.

    Off, every PNI layer is its plain nn.Conv2d / nn.Linear (the alpha = 0 network), e.g. to attack
    the noise-free surrogate and transfer (Athalye et al. 2018; Tramèr et al. 2020). The previous setting of each layer is
    restored on exit, even after an exception.

    Raises:
        ValueError: ``enabled`` not a bool, or a model without PNI layers (on entering the block).
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be a bool, got {enabled!r}")
    layers = pni_layers(model)
    if not layers:
        raise ValueError("pni_noise: the model has no PNI layer")
    with temporarily(layers, noise_enabled=enabled):
        yield model


__all__ = ["PNIConv2d", "PNILinear", "PNI_MODES", "pni_layers", "pni_alphas", "pni_noise"]
