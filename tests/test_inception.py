"""robust_utils.inception: InceptionMnist has paper 000's parameter count exactly, mult-adds near the
paper's, the right shapes and module widths, input checks, gradients; mult_adds counts by hand."""

import pytest
import torch
from torch import nn

from robust_utils.nn.inception import (DEFAULT_HIDDEN, INCEPTION_SPECS, PAPER_MULT_ADDS, PAPER_PARAMETERS,
                                    STEM_CHANNELS, InceptionMnist, InceptionModule, mult_adds)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hand_count(hidden: int = DEFAULT_HIDDEN, classes: int = 10) -> tuple[int, int]:
    """(parameters, mult-adds) of the width-1 net from the spec table, by hand: each conv has
    cin * cout * k * k weights and cout biases and does its weights' MACs at every output
    position (28x28 for the stem, 14x14 for modules 1-2, 7x7 for 3-4); then the two linear layers."""
    params, macs = 1 * STEM_CHANNELS * 9 + STEM_CHANNELS, 1 * STEM_CHANNELS * 9 * 28 * 28
    cin = STEM_CHANNELS
    for i, (b1, r3, b3, r5, b5, pp) in enumerate(INCEPTION_SPECS):
        positions = 14 * 14 if i < 2 else 7 * 7
        for ci, co, k in ((cin, b1, 1), (cin, r3, 1), (r3, b3, 3), (cin, r5, 1), (r5, b5, 5), (cin, pp, 1)):
            params += ci * co * k * k + co
            macs += ci * co * k * k * positions
        cin = b1 + b3 + b5 + pp
    flat = cin * 7 * 7
    params += flat * hidden + hidden + hidden * classes + classes
    macs += flat * hidden + hidden * classes
    return params, macs


def test_default_parameter_count_equals_the_papers_exactly():
    model = InceptionMnist()
    assert n_params(model) == PAPER_PARAMETERS == 5_984_810 == hand_count()[0]
    assert all(p.requires_grad for p in model.parameters())  # the paper: "Non-trainable params: 0"
    # the paper's "Params size (MB): 23.94" (float32)
    assert sum(p.numel() for p in model.parameters()) * 4 / 1e6 == pytest.approx(23.94, abs=0.005)


def test_mult_adds_of_a_tiny_model_equals_the_hand_count():
    # conv 2 -> 3 channels, 3x3, no padding: 6x6 -> 4x4; then linear 48 -> 5; batch 2.
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    conv = (2 * 3 * 4 * 4) * (2 * 3 * 3)   # output elements x (in_channels / groups x k x k) = 1728
    linear = 2 * (48 * 5)                  # rows x in x out = 480
    assert mult_adds(model, (2, 2, 6, 6)) == conv + linear == 2208
    # torchinfo's bias terms: conv bias x output positions x batch, linear bias x batch
    assert mult_adds(model, (2, 2, 6, 6), bias=True) == 2208 + 3 * 16 * 2 + 5 * 2
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)  # 6 x 5 x 5 outputs, 2 x 9 MACs each
    assert mult_adds(grouped, (1, 4, 5, 5)) == 6 * 25 * (2 * 9)
    model.train()
    mult_adds(model, (1, 2, 6, 6))
    assert model.training and not any(m._forward_hooks for m in model.modules())  # state restored


def test_inception_mult_adds_are_near_the_papers():
    model = InceptionMnist()
    macs = mult_adds(model)
    assert macs == hand_count()[1] == 26_778_026
    assert abs(macs / PAPER_MULT_ADDS - 1) < 0.30  # 0.930 x the paper's 28.79 M
    assert mult_adds(model, (4, 1, 28, 28)) == 4 * macs


def test_output_shape_and_dtype():
    model = InceptionMnist().eval()
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()
    three = InceptionMnist(num_classes=3, in_channels=3, hidden=32)
    assert three(torch.rand(2, 3, 28, 28)).shape == (2, 3)


def test_half_width_is_smaller_and_runs():
    full, half = InceptionMnist(), InceptionMnist(width=0.5)
    assert n_params(half) < n_params(full) and mult_adds(half) < mult_adds(full)
    assert half.features[0][0].out_channels == STEM_CHANNELS // 2
    assert half.classifier[2].out_features == DEFAULT_HIDDEN  # the dense width does not scale
    assert half(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    tiny = InceptionMnist(width=0.01)  # every conv rounds up to at least one channel
    assert min(m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)) == 1
    assert tiny(torch.rand(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_each_module_outputs_the_sum_of_its_branches(width):
    model = InceptionMnist(width=width).eval()
    modules = [m for m in model.modules() if isinstance(m, InceptionModule)]
    assert len(modules) == len(INCEPTION_SPECS) == 4
    seen = []
    handles = [m.register_forward_hook(lambda mod, i, o: seen.append((mod, o.shape))) for m in modules]
    with torch.no_grad():
        model(torch.rand(2, 1, 28, 28))
    for h in handles:
        h.remove()
    for (mod, shape), spec, side in zip(seen, INCEPTION_SPECS, (14, 14, 7, 7)):
        branch_out = [[c for c in b.modules() if isinstance(c, nn.Conv2d)][-1].out_channels
                      for b in (mod.branch1, mod.branch2, mod.branch3, mod.branch4)]
        assert shape == (2, mod.out_channels, side, side) and mod.out_channels == sum(branch_out)
        if width == 1.0:
            assert branch_out == [spec[0], spec[2], spec[4], spec[5]]


@pytest.mark.parametrize("kwargs", [
    {"width": 0}, {"width": -0.5}, {"width": float("nan")}, {"width": "1"},
    {"num_classes": 1}, {"num_classes": 2.0}, {"in_channels": 0},
    {"hidden": 0}, {"hidden": -3}, {"hidden": 12.5}, {"hidden": True},
    {"dropout": -0.1}, {"dropout": 1.0}, {"dropout": 1.5},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        InceptionMnist(**kwargs)


def test_training_gradient_reaches_the_first_conv():
    model = InceptionMnist(width=0.5, dropout=0.5).train()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    first = model.features[0][0]
    assert isinstance(first, nn.Conv2d) and first.in_channels == 1
    assert first.weight.grad is not None and torch.isfinite(first.weight.grad).all()
    assert first.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
