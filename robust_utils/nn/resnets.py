"""Residual networks for CIFAR-sized input (N, 3, 32, 32): WideResNet and the CIFAR ResNet.

Both take the activation and the kind of their conv/linear layers as arguments, so that one
definition serves every model of notebook 03:

- ``activation``: "relu", "lwta" (deterministic Local Winner-Takes-All) or "stochastic_lwta"
  (Panousis et al. 2021: every ReLU of the WideResNet replaced by a block of U = 2 competing
  units, the authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack); see ``robust_utils.lwta``.
- ``layer``: "plain" (nn.Conv2d / nn.Linear), "pni" (Parametric Noise Injection on every conv and
  the final linear layer, Rakin et al. 2019, the authors' code, github.com/elliothe/CVPR_2019_PNI; ``robust_utils.pni``) or "ibp" (the
  IBP-gated layers of the first Stochastic-LWTA release, ``robust_utils.lwta``).

Inputs are pixels in [0, 1]; with ``normalize=True`` the first layer subtracts the CIFAR-10
channel means and divides by the standard deviations (``CIFAR10_MEAN``, ``CIFAR10_STD``), so that
attacks still work in pixel space.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .lwta import IBPConv2d, IBPLinear, make_activation
from .pni import PNIConv2d, PNILinear

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LAYER_KINDS = ("plain", "pni", "ibp")
_CONV = {"plain": nn.Conv2d, "pni": PNIConv2d, "ibp": IBPConv2d}
_LINEAR = {"plain": nn.Linear, "pni": PNILinear, "ibp": IBPLinear}


class Normalize(nn.Module):
    """(x - mean) / std per channel: x (N, C, H, W) float in [0, 1] -> same shape (not trainable)."""

    def __init__(self, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _factories(activation: str, layer: str, layer_kwargs: dict | None, activation_kwargs: dict | None):
    if layer not in LAYER_KINDS:
        raise ValueError(f"unknown layer kind {layer!r}; valid: {', '.join(LAYER_KINDS)}")
    make_activation(activation, **(activation_kwargs or {}))  # validates the name and arguments now
    lk, ak = dict(layer_kwargs or {}), dict(activation_kwargs or {})

    def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
        return _CONV[layer](cin, cout, k, stride=stride, padding=k // 2, bias=False, **lk)

    def linear(cin: int, cout: int) -> nn.Module:
        return _LINEAR[layer](cin, cout, **lk)

    def act() -> nn.Module:
        return make_activation(activation, **ak)

    return conv, linear, act


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out), BN weight 1 / bias 0, linear bias 0 (as both reference codes)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------- WideResNet


class _WideBlock(nn.Module):
    """Pre-activation basic block: BN-act-conv3x3-BN-act-conv3x3, plus the identity or a 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int, conv: Callable, act: Callable):
        super().__init__()
        self.bn1, self.act1, self.conv1 = nn.BatchNorm2d(cin), act(), conv(cin, cout, 3, stride)
        self.bn2, self.act2, self.conv2 = nn.BatchNorm2d(cout), act(), conv(cout, cout, 3, 1)
        self.shortcut = None if (cin == cout and stride == 1) else conv(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.bn1(x))
        y = self.conv2(self.act2(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-d-k (Zagoruyko & Komodakis 2016, Table 1; the variant of Madry et al. / TRADES used by
    the Stochastic-LWTA code, github.com/konpanousis/Adversarial-LWTA-AutoAttack): a 3x3 conv to 16 channels, three groups of
    n = (d - 4) / 6 pre-activation basic blocks with 16k, 32k and 64k channels (strides 1, 2, 2),
    then BN, the activation, global average pooling and a linear layer.

    WRN-34-1 (d = 34, k = 1; 5 blocks per group) is the report's model; WRN-28-10 and WRN-34-10
    are the common large ones. ``parameter_count(depth, widen_factor)`` gives the closed form.

    Args:
        depth: d with (d - 4) % 6 == 0 and d >= 10.   widen_factor: k >= 1.
        num_classes: K.   activation: "relu", "lwta" or "stochastic_lwta" (``lwta.ACTIVATIONS``).
        layer: "plain", "pni" or "ibp" (``LAYER_KINDS``): the kind of every conv and the final linear.
        normalize: subtract CIFAR-10's channel mean and divide by its std first.
        activation_kwargs / layer_kwargs: passed to the activation / layer constructors (e.g.
            {"units": 2, "temperature": 0.67} or {"noise": "channel"}).
    Shapes: x (N, 3, 32, 32) float32 in [0, 1] -> logits (N, K) float32.
    Raises:
        ValueError: a bad depth, widen factor, activation or layer kind.
    """

    def __init__(self, depth: int = 34, widen_factor: int = 1, num_classes: int = 10, activation: str = "relu",
                 layer: str = "plain", normalize: bool = False, activation_kwargs: dict | None = None,
                 layer_kwargs: dict | None = None):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be an int >= 10 with (depth - 4) % 6 == 0, got {depth!r}")
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive int, got {widen_factor!r}")
        conv, linear, act = _factories(activation, layer, layer_kwargs, activation_kwargs)
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.normalize = Normalize() if normalize else nn.Identity()
        self.conv1 = conv(3, widths[0], 3)
        blocks = []
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1],
                                         stride if i == 0 else 1, conv, act))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.act = nn.BatchNorm2d(widths[3]), act()
        self.fc = linear(widths[3], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv1(self.normalize(x)))
        h = F.adaptive_avg_pool2d(self.act(self.bn(h)), 1).flatten(1)
        return self.fc(h)

    @staticmethod
    def parameter_count(depth: int, widen_factor: int, num_classes: int = 10) -> int:
        """Trainable parameters of the plain WRN-depth-widen_factor, in closed form: 3x3 convs
        (c_in * c_out * 9), 1x1 shortcut convs where the width changes, two BN parameters per
        channel, and the linear layer."""
        n, w = (depth - 4) // 6, [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        total = 3 * 16 * 9
        for g in range(3):
            for i in range(n):
                cin, cout = (w[g] if i == 0 else w[g + 1]), w[g + 1]
                total += 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9
                if i == 0 and (cin != cout or g > 0):  # the 1x1 shortcut conv
                    total += cin * cout
        return total + 2 * w[3] + w[3] * num_classes + num_classes


# ------------------------------------------------------------------------------- CIFAR ResNet


class _ResBlock(nn.Module):
    """He et al.'s CIFAR basic block: conv-BN-act-conv-BN, plus the option-A shortcut, then act."""

    def __init__(self, cin: int, cout: int, stride: int, conv: Callable, act: Callable):
        super().__init__()
        self.conv1, self.bn1, self.act1 = conv(cin, cout, 3, stride), nn.BatchNorm2d(cout), act()
        self.conv2, self.bn2, self.act2 = conv(cout, cout, 3, 1), nn.BatchNorm2d(cout), act()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:  # option A: parameter-free, zero channels split evenly on both sides
            s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.act2(y + s)


class CifarResNet(nn.Module):
    """ResNet-d for CIFAR-10 (He et al. 2016, section 4.2): a 3x3 conv to 16w channels, three stages
    of n = (d - 2) / 6 basic blocks with 16w, 32w and 64w channels (strides 1, 2, 2) and the
    parameter-free option-A shortcut, global average pooling, a linear layer. ResNet-20/32/44/56
    (w = 1) and the widened ResNet-20 (w = 1.5, 2, 4) are PNI's models (Rakin et al. 2019,
    Table 3); ResNet-20 has 269,722 parameters.

    Args:
        depth: d with (d - 2) % 6 == 0 and d >= 8.   width: channel multiplier w > 0 (16w must be
            an integer).   Other arguments as ``WideResNet``.
    Shapes: x (N, 3, 32, 32) float32 in [0, 1] -> logits (N, K) float32.
    Raises:
        ValueError: a bad depth or width, activation or layer kind.
    """

    def __init__(self, depth: int = 20, width: float = 1, num_classes: int = 10, activation: str = "relu",
                 layer: str = "plain", normalize: bool = False, activation_kwargs: dict | None = None,
                 layer_kwargs: dict | None = None):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet depth must be an int >= 8 with (depth - 2) % 6 == 0, got {depth!r}")
        if not isinstance(width, (int, float)) or width <= 0 or float(16 * width) != int(16 * width):
            raise ValueError(f"width must be > 0 with 16 * width an integer, got {width!r}")
        conv, linear, act = _factories(activation, layer, layer_kwargs, activation_kwargs)
        n = (depth - 2) // 6
        widths = [int(16 * width), int(32 * width), int(64 * width)]
        self.normalize = Normalize() if normalize else nn.Identity()
        self.conv1, self.bn1, self.act1 = conv(3, widths[0], 3), nn.BatchNorm2d(widths[0]), act()
        blocks, cin = [], widths[0]
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                blocks.append(_ResBlock(cin, widths[g], stride if i == 0 else 1, conv, act))
                cin = widths[g]
        self.blocks = nn.Sequential(*blocks)
        self.fc = linear(widths[2], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.act1(self.bn1(self.conv1(self.normalize(x)))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


__all__ = ["WideResNet", "CifarResNet", "Normalize", "CIFAR10_MEAN", "CIFAR10_STD", "LAYER_KINDS"]
