"""Models by name. Each maps x (N, C, H, W) float32 in [0, 1] to logits (N, K).

MNIST-sized models are defined here and in ``robust_utils.inception`` (the Inception-style CNN
of paper 000); the CIFAR-sized residual networks (WideResNet, the CIFAR ResNet) in
``robust_utils.resnets``.

Normalisation, where a model wants it, is its own first layer, so every attack works in the
pixel space [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import make_linear
from .pooling import MaxPool2d
from .lwta import make_activation
from .inception import InceptionMnist
from .resnets import CifarResNet, WideResNet
from ..core.runtime import resolve_device


class MLP(nn.Module):
    """Fully connected ReLU network: flatten -> widths... -> num_classes.

    With ``layer`` other than "linear", every linear layer (the output layer included) is a
    stochastic layer of ``robust_utils.layers``: Khan et al. (2019, section 5) use the
    784-100-100-100-10 MLP in four variants, "linear" (vanilla), "sdr-decay", "sdr-learnable"
    and "dropconnect" (their SDR-Learnable has "learnable parameter distributions for weights
    and biases", i.e. in every layer).

    Args:
        in_features: input size after flattening (784 for MNIST).
        widths: hidden layer widths, e.g. (100, 100, 100) for Khan et al.'s 784-100-100-100-10.
        num_classes: K.   layer: one of ``layers.LINEAR_LAYERS``.
        layer_kwargs: arguments of the layer (``sigma_init`` for SDR, ``p`` for DropConnect).
        activation: one of ``lwta.ACTIVATIONS`` ("relu", "lwta", "stochastic_lwta"); the LWTA
            kinds need widths divisible by their ``units``.   activation_kwargs: its arguments.
    Shapes: x (N, C, H, W) or (N, in_features) float32 -> logits (N, K) float32.
    Raises:
        ValueError: unknown layer or activation, or a bad argument of either.
    """

    def __init__(self, in_features: int = 784, widths: Sequence[int] = (100, 100, 100), num_classes: int = 10,
                 layer: str = "linear", layer_kwargs: dict | None = None, activation: str = "relu",
                 activation_kwargs: dict | None = None):
        super().__init__()
        kw = dict(layer_kwargs or {})
        act_kw = dict(activation_kwargs or {})
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for w in widths:
            layers += [make_linear(layer, prev, w, **kw), make_activation(activation, **act_kw)]
            prev = w
        layers.append(make_linear(layer, prev, num_classes, **kw))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MnistCNN(nn.Module):
    """Two convolutional layers, each followed by 2x2 max pooling, then two fully connected layers.

    The MNIST network of Picot et al. (Appendix C). The paper does not give the widths; the
    defaults (5x5 convolutions with 32 and 64 channels, 'same' padding, a 1024-unit hidden layer)
    are the classic TensorFlow MNIST tutorial network of that architecture (also Madry et al.'s
    MNIST model). Smaller widths are parameters for the CPU profiles.

    Args:
        channels: (c1, c2) convolution channels.   hidden: fully connected width.
        kernel_size: convolution kernel.   in_channels, image_size, num_classes: input geometry and K.
    Shapes: x (N, in_channels, image_size, image_size) float32 -> logits (N, K) float32.
    """

    def __init__(self, channels: Sequence[int] = (32, 64), hidden: int = 1024, kernel_size: int = 5,
                 in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        pad = kernel_size // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size, padding=pad), nn.ReLU(), MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size, padding=pad), nn.ReLU(), MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5-style CNN: conv5-ReLU-pool2, conv5-ReLU-pool2, fully connected ReLU layers, K logits.

    The defaults are the classic LeNet-5 (LeCun et al. 1998) for 28x28 inputs:
    conv5(6, pad 2)-pool-conv5(16)-pool-120-84-K. Matyasko & Chau (2018) call "LeNet-5" the
    network of their code: ``LeNet5(channels=(32, 64), hidden=(512,), first_padding=0)``
    (conv5(32, valid)-pool-conv5(64, valid)-pool-512-K).

    Args:
        in_channels: image channels.   num_classes: K.   channels: the two convolutions' widths.
        hidden: widths of the fully connected hidden layers.   first_padding: padding of conv 1.
        image_size: input side (28 for MNIST).
    Shapes: x (N, in_channels, image_size, image_size) float32 -> logits (N, K) float32.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (6, 16),
                 hidden: Sequence[int] = (120, 84), first_padding: int = 2, image_size: int = 28):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=first_padding), nn.ReLU(), MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), MaxPool2d(2),
        )
        side = ((image_size + 2 * first_padding - 4) // 2 - 4) // 2
        layers: list[nn.Module] = [nn.Flatten()]
        prev = c2 * side * side
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS = {"mlp": MLP, "mnist_cnn": MnistCNN, "lenet5": LeNet5, "inception_mnist": InceptionMnist,
          "wide_resnet": WideResNet, "cifar_resnet": CifarResNet}


def build_model(name: str, seed: int, device: str | torch.device = "auto", **kwargs) -> nn.Module:
    """Build a model by name with seed-determined initial weights, on ``device``.

    The global RNG state is left as it was (the initialisation uses a forked RNG).

    Args:
        name: a key of ``MODELS``: "mlp", "mnist_cnn", "lenet5", "inception_mnist", "wide_resnet",
            "cifar_resnet".
        seed: initialisation seed.
        device: "auto", "cpu", "cuda" or a torch.device.   kwargs: the model's constructor arguments.
    Raises:
        ValueError: unknown name or constructor argument.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = MODELS[name](**kwargs)
        except TypeError as e:
            raise ValueError(f"bad arguments for model {name!r}: {e}") from None
    return model.to(dev)
