"""robust_utils.resnets: WideResNet and the CIFAR ResNet (parameter counts against the standard
formula and published values, activations and layer kinds, shapes, option-A shortcuts)."""

import pytest
import torch
from torch import nn

from robust_utils.nn import lwta, pni
from robust_utils.nn.models import build_model
from robust_utils.nn.resnets import CifarResNet, Normalize, WideResNet


def wrn_formula(depth: int, k: int, classes: int = 10) -> int:
    """Zagoruyko & Komodakis's WRN-d-k counted by hand: conv 3->16; per group g (widths 16k, 32k,
    64k), n = (d-4)/6 blocks of BN + 3x3 conv + BN + 3x3 conv, a 1x1 shortcut conv in the first
    block of a group whose width or stride changes; final BN and the linear layer."""
    n = (depth - 4) // 6
    widths = [16 * k, 32 * k, 64 * k]
    total, cin = 3 * 16 * 9, 16
    for g, cout in enumerate(widths):
        for i in range(n):
            c_in = cin if i == 0 else cout
            total += 2 * c_in + 9 * c_in * cout + 2 * cout + 9 * cout * cout
            if i == 0 and (c_in != cout or g > 0):
                total += c_in * cout
        cin = cout
    return total + 2 * widths[-1] + widths[-1] * classes + classes


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth, k", [(34, 1), (28, 10), (16, 4), (10, 1)])
def test_wideresnet_parameter_count_matches_the_standard_formula(depth, k):
    model = WideResNet(depth, k)
    assert n_params(model) == wrn_formula(depth, k) == WideResNet.parameter_count(depth, k)


def test_published_parameter_counts():
    # WRN-28-10 (36.5M, Zagoruyko & Komodakis Table 4) as RobustBench/TRADES count it; ResNet-20
    # with option-A shortcuts: 0.27M (He et al. 2016, Table 6).
    assert n_params(WideResNet(28, 10)) == 36_479_194
    assert n_params(CifarResNet(20)) == 269_722


@pytest.mark.parametrize("activation", lwta.ACTIVATIONS)
@pytest.mark.parametrize("layer", ["plain", "pni", "ibp"])
def test_every_activation_and_layer_kind_runs(activation, layer):
    model = build_model("wide_resnet", seed=0, device="cpu", depth=10, activation=activation, layer=layer)
    out = model(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, lwta.LWTA))]
    assert len(acts) == 2 * 1 * 3 + 1  # two per block, one block per group at depth 10, plus the final one
    if activation != "relu":
        assert all(isinstance(a, lwta.LWTA) for a in acts)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if layer == "pni":
        assert len(pni.pni_layers(model)) == len(convs) + 1  # every conv and the final linear layer
    if layer == "ibp":
        assert all(isinstance(c, lwta.IBPConv2d) for c in convs) and isinstance(model.fc, lwta.IBPLinear)


def test_stochastic_lwta_wideresnet_is_random_in_eval_and_deterministic_lwta_is_not():
    x = torch.rand(2, 3, 32, 32)
    s = build_model("wide_resnet", seed=0, device="cpu", depth=10, activation="stochastic_lwta").eval()
    d = build_model("wide_resnet", seed=0, device="cpu", depth=10, activation="lwta").eval()
    with torch.no_grad():
        assert not torch.equal(s(x), s(x))
        assert torch.equal(d(x), d(x))


def test_cifar_resnet_option_a_shortcut_and_widths():
    model = CifarResNet(20, width=2)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model.fc.in_features == 128
    # option A has no shortcut parameters: every conv is a 3x3 conv of a block or the stem
    assert all(m.kernel_size == (3, 3) for m in model.modules() if isinstance(m, nn.Conv2d))
    pni_net = CifarResNet(20, layer="pni")
    assert len(pni.pni_layers(pni_net)) == 20  # PNI's Table 1: 19 convs and the FC layer of ResNet-20


def test_normalize_layer_and_bad_arguments():
    x = torch.rand(2, 3, 4, 4)
    norm = Normalize()
    assert torch.allclose(norm(x) * norm.std + norm.mean, x, atol=1e-6)
    assert isinstance(WideResNet(10, normalize=True).normalize, Normalize)
    with pytest.raises(ValueError, match="depth must be an int >= 10 with"):
        WideResNet(12)
    with pytest.raises(ValueError, match="widen_factor"):
        WideResNet(10, 0)
    with pytest.raises(ValueError, match="unknown layer kind 'bayes'"):
        WideResNet(10, layer="bayes")
    with pytest.raises(ValueError, match="unknown activation"):
        WideResNet(10, activation="gelu")
    with pytest.raises(ValueError, match="CifarResNet depth"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="width"):
        CifarResNet(20, width=0.01)
