"""Is a model's forward pass random? One definition for the whole companion.

A model is *random* when two forward passes of the same input, in its current train/eval mode,
can give different outputs: a stochastic layer that draws weights (SDR, DropConnect), a PNI layer
with its noise on, a stochastic LWTA activation, an IBP-gated layer in training, or dropout in
training. Such a model must be attacked through EOT and its accuracy measured over fresh passes
(Athalye, Carlini & Wagner 2018; AutoAttack's rand version, Croce & Hein 2020).

``random_layers`` reads the layer types; ``is_random`` adds a behavioural probe, as AutoAttack's
own check does (two passes of the same batch compared), so that a random module this file does
not know is caught too.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import StochasticLinear
from .lwta import LWTA, IBPConv2d, IBPLinear
from .pni import pni_layers


def random_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that draw randomness in their current mode (empty: none known).

    SDR and DropConnect layers with ``stochastic`` on; PNI layers with ``noise_enabled``; LWTA
    activations in "stochastic" mode; IBP-gated layers and ``nn.Dropout`` in train mode.
    """
    out: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, StochasticLinear) and m.stochastic:
            out.append(m)
        elif isinstance(m, LWTA) and m.mode == "stochastic":
            out.append(m)
        elif isinstance(m, (IBPLinear, IBPConv2d, nn.Dropout, nn.Dropout2d)) and m.training:
            out.append(m)
    out += [m for m in pni_layers(model) if m.noise_enabled]
    return out


def is_random(model: nn.Module, x: torch.Tensor | None = None, tol: float = 0.0) -> bool:
    """True when the model's forward pass is random in its current mode.

    Random if a known random layer is active (``random_layers``), or, with a probe batch ``x``, if
    two forward passes of x differ by more than ``tol`` in any logit (AutoAttack's check compares
    two passes the same way). The model's train/eval mode is left as it is.

    Args:
        model: maps x -> logits (N, K).   x: optional probe batch (N, C, H, W) float32 in [0, 1].
        tol: the largest absolute logit difference still counted as deterministic (>= 0; kernels
            that are not bitwise reproducible need a small one).
    Raises:
        ValueError: tol < 0.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if random_layers(model):
        return True
    if x is None:
        return False
    with torch.inference_mode():
        return bool((model(x) - model(x)).abs().max() > tol)


__all__ = ["random_layers", "is_random"]
