"""An Inception CNN for MNIST sized to the parameter count that paper 000 publishes (no code is public).

Paper 000 (OpenReview dBJpBmn5MH, section 3) classifies MNIST with "a deep neural network based on
inception CNN architecture (Szegedy et al., 2015, 2016)" of 5,984,810 free parameters; its
appendix (Listing 1) shows only the totals of a torchinfo summary for one 1x28x28 image:
"Total mult-adds (M): 28.79", "Forward/backward pass size (MB): 0.93", "Params size (MB): 23.94"
(= 5,984,810 float32). No architecture is published, so ``InceptionMnist`` is our design:

- GoogLeNet's (Szegedy et al. 2015, "Going deeper with convolutions", Figure 2b) Inception module:
  four parallel branches, 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool (stride 1) -> 1x1, each
  conv followed by a ReLU, concatenated along channels. As in that paper there is no
  BatchNorm (convs have biases), so "Non-trainable params: 0" holds with no buffers either.
- Every module has the branch proportions of GoogLeNet's inception (3a) (64 | 96 -> 128 |
  16 -> 32 | 32, i.e. 2x | 3x -> 4x | x/2 -> x | x, output 8x) with x = 14, 16 at 14x14 and
  x = 20, 22 at 7x7.
- A dense ReLU layer of ``DEFAULT_HIDDEN`` = 668 units on the flattened 176x7x7 map holds 96 %
  of the parameters: 28.79 M mult-adds with 6 M parameters means most weights are used once per
  image, i.e. sit in a dense layer after the downsampling.

How the count was matched: the paper publishes only the count. With two modules at 14x14 and
two at 7x7, we searched the stem width (8 to 64, multiples of 4) and the modules' x (even,
non-decreasing, 4 to 40 at 14x14, up to 48 at 7x7) for the designs whose count is EXACTLY
5,984,810 for an integer hidden width (18 such designs), and took the one nearest to both of the paper's other two totals
(mult-adds and forward/backward size). At the defaults (width 1):

- trainable parameters 5,984,810 = the paper's, exactly (216,620 in the convs, 5,768,190 dense);
- mult-adds 26,778,026 (``mult_adds``: conv and linear weights only) = 0.930 x the paper's
  28.79 M (26,898,215 = 0.934 x with biases counted the way current torchinfo counts them);
- torchinfo's forward/backward pass size (every parametrised layer's output, float32, x2)
  0.96 MB vs the paper's 0.93 MB.

``width`` scales every conv channel count (rounded half up, at least 1; the dense width stays
``hidden``) for the cheaper CPU profiles: width 0.5 has 2,942,501 parameters and 8.23 M
mult-adds (conv channels halved, the flattened map 88x7x7).

Initialisation: Kaiming-normal (He et al. 2015, fan_in, ReLU gain) conv and linear weights, zero
biases. Without BatchNorm, PyTorch's default initialisation shrinks the signal through the ~10
layers and trains markedly slower (AdamW 1e-3, 2 epochs on 2,000 MNIST images at width 0.5:
48 % test accuracy with the default, 93 % with Kaiming).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .pooling import MaxPool2d

# Paper 000's published values (appendix, Listing 1: the torchinfo summary for one 1x28x28 image).
PAPER_PARAMETERS = 5_984_810
PAPER_MULT_ADDS = 28.79e6

STEM_CHANNELS = 36
# Branch widths of the four Inception modules at width 1: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5,
# pool proj) = GoogLeNet 3a's proportions (2x, 3x, 4x, x/2, x, x) with x = 14, 16 (14x14), 20, 22 (7x7).
INCEPTION_SPECS = ((28, 42, 56, 7, 14, 14), (32, 48, 64, 8, 16, 16),
                   (40, 60, 80, 10, 20, 20), (44, 66, 88, 11, 22, 22))
# The dense width that makes the default count equal PAPER_PARAMETERS exactly (our choice, see above).
DEFAULT_HIDDEN = 668


def _conv_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    """k x k conv ('same' padding, stride 1, with bias) followed by ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU())


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_in, ReLU gain) conv and linear weights, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InceptionModule(nn.Module):
    """GoogLeNet's Inception module (Szegedy et al. 2015, Figure 2b), conv + ReLU in every branch.

    Branches: ``branch1`` 1x1 conv; ``branch2`` 1x1 reduce -> 3x3; ``branch3`` 1x1 reduce -> 5x5;
    ``branch4`` 3x3 max-pool (stride 1, padding 1) -> 1x1 projection. Their outputs are
    concatenated along channels: ``out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj``.

    Args:
        in_channels: C_in.   ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: branch widths (>= 1).
    Shapes: x (N, C_in, H, W) float32 -> (N, out_channels, H, W) float32 (spatial size kept).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = _conv_relu(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(_conv_relu(in_channels, ch3x3red, 1), _conv_relu(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(_conv_relu(in_channels, ch5x5red, 1), _conv_relu(ch5x5red, ch5x5, 5))
        self.branch4 = nn.Sequential(MaxPool2d(3, stride=1, padding=1), _conv_relu(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionMnist(nn.Module):
    """Inception CNN for MNIST with paper 000's parameter count (5,984,810 at the defaults).

    Layers (width 1; channels after each, spatial size in brackets):
        conv3x3 + ReLU -> 36 [28x28]; max-pool 3x3/2 -> [14x14];
        Inception (28 | 42->56 | 7->14 | 14) -> 112;  Inception (32 | 48->64 | 8->16 | 16) -> 128;
        max-pool 3x3/2 -> [7x7];
        Inception (40 | 60->80 | 10->20 | 20) -> 160; Inception (44 | 66->88 | 11->22 | 22) -> 176;
        flatten 8,624 -> dropout -> linear 668 + ReLU -> dropout -> linear K.
    The architecture is ours (the paper publishes none): the module is GoogLeNet's (Szegedy et al.
    2015), the widths were chosen so that the trainable count equals the paper's exactly (module
    docstring). Kaiming-normal (fan_in) weights, zero biases, drawn from the global RNG.

    Args:
        width: multiplier of every conv channel count (rounded half up, at least 1), > 0; width 0.5
            is a cheaper net for the CPU profiles. The dense width does not scale.
        num_classes: K >= 2.   in_channels: image channels >= 1 (1 for MNIST).
        hidden: dense layer width >= 1; None = ``DEFAULT_HIDDEN`` (668, which makes the width-1,
            K = 10, one-channel count exactly ``PAPER_PARAMETERS``).
        dropout: drop probability in [0, 1) before each linear layer (0 = no dropout).
    Shapes: x (N, in_channels, 28, 28) float32 in [0, 1] -> logits (N, K) float32.
    Raises:
        ValueError: width <= 0 or not finite, num_classes < 2, in_channels < 1, hidden not a
            positive int, dropout not in [0, 1).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 1, hidden: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < math.inf):
            raise ValueError(f"width must be a finite number > 0, got {width!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
        hidden = DEFAULT_HIDDEN if hidden is None else hidden
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int or None, got {hidden!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        def scaled(c: int) -> int:
            return max(1, int(math.floor(width * c + 0.5)))

        stem = scaled(STEM_CHANNELS)
        layers: list[nn.Module] = [_conv_relu(in_channels, stem, 3), MaxPool2d(3, stride=2, padding=1)]
        cin = stem
        for i, spec in enumerate(INCEPTION_SPECS):
            if i == 2:
                layers.append(MaxPool2d(3, stride=2, padding=1))  # 14x14 -> 7x7
            module = InceptionModule(cin, *(scaled(c) for c in spec))
            layers.append(module)
            cin = module.out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * 7 * 7, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mult_adds(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28), bias: bool = False) -> int:
    """Multiply-accumulates of one forward pass, counted with forward hooks as torchinfo does.

    Conv layers (nn.Conv1d/2d/3d): weight elements x output positions x batch, i.e.
    out_elements * (in_channels / groups * prod(kernel_size)); nn.Linear: weight elements x
    output rows, i.e. in_features * out_features per sample. With ``bias=True`` also what current
    torchinfo (``LayerInfo.calculate_macs``) adds: conv bias x output positions x batch, linear
    bias x rows, and BatchNorm weight + bias x batch. Other layers count 0. The model is run once
    in eval mode under no_grad on zeros (its training flag is restored).

    Args:
        model: any nn.Module.   input_shape: the input tensor's shape, batch included (the count
            scales with the batch).   bias: count biases and BatchNorm affine parameters too.
    Returns:
        The count as an int (torchinfo's "Total mult-adds (M)" is this / 1e6).
    """
    total = 0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            positions = output.shape[0] * math.prod(output.shape[2:])
            total += module.weight.numel() * positions
            if bias and module.bias is not None:
                total += module.bias.numel() * positions
        elif isinstance(module, nn.Linear):
            rows = output.numel() // module.out_features
            total += module.weight.numel() * rows
            if bias and module.bias is not None:
                total += module.bias.numel() * rows
        elif bias and isinstance(module, nn.modules.batchnorm._BatchNorm):
            total += output.shape[0] * sum(p.numel() for p in module.parameters())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm))]
    param = next(model.parameters(), None)
    x = torch.zeros(input_shape, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


__all__ = ["InceptionMnist", "InceptionModule", "mult_adds", "PAPER_PARAMETERS", "PAPER_MULT_ADDS",
           "DEFAULT_HIDDEN", "STEM_CHANNELS", "INCEPTION_SPECS"]
