"""robust_utils.nn.pooling.MaxPool2d gives nn.MaxPool2d's numbers, bitwise, on every path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.nn import pooling
from robust_utils.nn.inception import InceptionMnist
from robust_utils.nn.models import LeNet5, MnistCNN

SPECS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=1, padding=1),
         dict(kernel_size=2, ceil_mode=True), dict(kernel_size=3, stride=2, dilation=2)]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(7, 5, 28, 28), (3, 16, 15, 13), (1, 1, 6, 6)])
def test_the_fast_path_equals_nn_maxpool2d_bitwise(spec, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    x[0, 0, :2, :2] = 0.5  # a tie inside one window
    ref = nn.MaxPool2d(**spec)(x)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            out = pooling.MaxPool2d(**spec)(x)
        assert out.shape == ref.shape and out.dtype == ref.dtype and out.is_contiguous()
        assert torch.equal(out, ref)


def test_the_gradient_path_is_nn_maxpool2d():
    """With autograd recording, the same values and the same gradient (ties routed the same way)."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(4, 3, 8, 8))  # many tied zeros
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(4, 3, 4, 4)
    nn.MaxPool2d(2)(a).backward(g)
    pooling.MaxPool2d(2)(b).backward(g)
    assert torch.equal(a.grad, b.grad)


def test_the_comparison_can_fail():
    """The equality above is strict: average pooling differs, and so would a result left in the
    channels-last element order (the mistake the fast path could make)."""
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        fast = pooling.MaxPool2d(2)(x)
    assert not torch.equal(fast, nn.AvgPool2d(2)(x))
    assert not torch.equal(fast, fast.permute(0, 2, 3, 1).reshape(fast.shape))


@pytest.mark.parametrize("build", [lambda: MnistCNN(channels=(8, 16), hidden=64),
                                   lambda: LeNet5(channels=(16, 32), hidden=(64,), first_padding=0),
                                   lambda: InceptionMnist(width=0.125)])
def test_models_give_the_same_logits_as_with_nn_maxpool2d(build):
    torch.manual_seed(0)
    model = build().eval()
    ref = build().eval()
    ref.load_state_dict(model.state_dict())
    for module in ref.modules():
        for name, child in module.named_children():
            if isinstance(child, pooling.MaxPool2d):
                setattr(module, name, nn.MaxPool2d(child.kernel_size, child.stride, child.padding))
    assert not any(isinstance(m, pooling.MaxPool2d) for m in ref.modules())
    assert any(isinstance(m, pooling.MaxPool2d) for m in model.modules())
    x = torch.rand(9, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))


def test_return_indices_is_refused():
    with pytest.raises(ValueError, match="indices"):
        pooling.MaxPool2d(2, return_indices=True)
