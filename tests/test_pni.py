"""Tests of Parametric Noise Injection (robust_utils.nn.pni; Rakin, He & Fan 2019, and their code
github.com/elliothe/CVPR_2019_PNI).

Each test asserts a property that a wrong implementation could fail: alpha = 0 or the noise
switched off gives exactly the plain layer, fresh noise at every call in train and eval mode,
alpha's gradient equal to sum(dL/dw_noisy * eta) for every alpha shape, the noise scale
alpha * std(W) with a layer-wise std, the weight-decay flag on alpha only (and kept by copies).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.nn.pni import PNI_MODES, PNIConv2d, PNILinear, pni_alphas, pni_layers, pni_noise


def _pair(kind: str, noise: str = "layer", alpha_init: float = 0.25):
    """A PNI layer, the plain torch layer with the same weights, and an input."""
    torch.manual_seed(0)
    if kind == "conv":
        pni = PNIConv2d(3, 4, 3, stride=2, padding=1, noise=noise, alpha_init=alpha_init)
        plain, x = nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 7, 7)
    else:
        pni = PNILinear(6, 5, noise=noise, alpha_init=alpha_init)
        plain, x = nn.Linear(6, 5), torch.randn(4, 6)
    plain.load_state_dict({k: v for k, v in pni.state_dict().items() if k != "alpha"})
    return pni, plain, x


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_alpha_zero_equals_the_plain_layer_exactly(kind):
    pni, plain, x = _pair(kind, alpha_init=0.0)
    for mode in (True, False):
        pni.train(mode)
        assert torch.equal(pni(x), plain(x))


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_noise_is_resampled_every_call_in_train_and_eval(kind):
    pni, plain, x = _pair(kind)
    for mode in (True, False):
        pni.train(mode)
        a, b = pni(x), pni(x)
        assert not torch.equal(a, b) and not torch.equal(a, plain(x))


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("noise", PNI_MODES)
def test_alpha_gradient_is_the_sum_of_dl_dw_times_eta(kind, noise):
    pni, plain, x = _pair(kind, noise=noise)
    with torch.no_grad():  # distinct alphas so that a broadcasting mistake shows
        pni.alpha.copy_(torch.rand(pni.alpha.shape) + 0.1)
    torch.manual_seed(11)
    y = pni(x)
    torch.manual_seed(11)
    eta = torch.randn_like(pni.weight) * pni.weight.detach().std()  # the draw the layer made
    g = torch.randn_like(y)
    (y * g).sum().backward()

    w_noisy = (pni.weight + pni.alpha * eta).detach().requires_grad_()
    y_ref = plain._conv_forward(x, w_noisy, plain.bias) if kind == "conv" else F.linear(x, w_noisy, plain.bias)
    torch.testing.assert_close(y, y_ref)
    (dl_dw,) = torch.autograd.grad((y_ref * g).sum(), w_noisy)
    expected = {"layer": (dl_dw * eta).sum().view(1),
                "channel": (dl_dw * eta).sum(dim=tuple(range(1, eta.dim())), keepdim=True),
                "element": dl_dw * eta}[noise]
    assert pni.alpha.grad.shape == pni.alpha.shape
    torch.testing.assert_close(pni.alpha.grad, expected)
    assert float(pni.alpha.grad.abs().sum()) > 0
    torch.testing.assert_close(pni.weight.grad, dl_dw)  # the noise is a constant for autograd


def test_noise_scale_is_alpha_times_the_layerwise_weight_std():
    torch.manual_seed(1)
    layer = PNIConv2d(32, 32, 3, noise="channel")
    with torch.no_grad():
        layer.weight.mul_(torch.linspace(0.5, 2.0, 32).view(-1, 1, 1, 1))  # channels of different scales
        layer.alpha.copy_(torch.linspace(0.1, 1.0, 32).view(-1, 1, 1, 1))
    noise = torch.stack([(layer.noisy_weight() - layer.weight).detach() for _ in range(20)])
    ratio = noise.std(dim=(0, 2, 3, 4)) / (layer.alpha.detach().flatten() * layer.weight.detach().std())
    torch.testing.assert_close(ratio, torch.ones(32), atol=0.1, rtol=0)  # 5,760 draws per channel
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.02)
    assert abs(float(noise.mean())) < 0.01 * float(layer.weight.detach().std())


def test_pni_noise_switch_is_deterministic_plain_and_restores():
    pni, plain, x = _pair("conv")
    model = nn.Sequential(pni, nn.Flatten(), PNILinear(64, 3))  # conv: (N, 4, 4, 4)
    with pni_noise(model, False) as m:
        assert m is model
        assert torch.equal(pni(x), plain(x)) and torch.equal(model(x), model(x))
    assert all(layer.noise_enabled for layer in pni_layers(model))
    assert not torch.equal(pni(x), pni(x))
    model[2].noise_enabled = False  # each layer's own setting comes back
    with pytest.raises(RuntimeError, match="boom"):
        with pni_noise(model, True):
            assert model[2].noise_enabled
            raise RuntimeError("boom")
    assert [layer.noise_enabled for layer in pni_layers(model)] == [True, False]
    with pytest.raises(ValueError, match="no PNI layer"):
        with pni_noise(nn.Sequential(nn.Linear(2, 2)), False):
            pass
    with pytest.raises(ValueError):
        with pni_noise(model, 0):
            pass


def test_no_weight_decay_flag_on_alpha_only_and_kept_by_copies():
    model = nn.Sequential(PNIConv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), PNILinear(4, 2, noise="element"))
    for m in (model, copy.deepcopy(model)):
        flagged = {n for n, p in m.named_parameters() if getattr(p, "no_weight_decay", False)}
        assert flagged == {"0.alpha", "3.alpha"}
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded[0].alpha.no_weight_decay is True and not hasattr(loaded[0].weight, "no_weight_decay")


def test_alpha_shapes_init_and_errors():
    conv = {n: PNIConv2d(3, 8, 3, noise=n) for n in PNI_MODES}
    lin = {n: PNILinear(5, 7, noise=n, alpha_init=0.1) for n in PNI_MODES}
    assert [tuple(conv[n].alpha.shape) for n in PNI_MODES] == [(1,), (8, 1, 1, 1), (8, 3, 3, 3)]
    assert [tuple(lin[n].alpha.shape) for n in PNI_MODES] == [(1,), (7, 1), (7, 5)]
    assert all(bool((m.alpha == 0.25).all()) for m in conv.values())
    assert all(bool((m.alpha == 0.1).all()) for m in lin.values())
    assert "noise='channel'" in repr(conv["channel"])
    for kwargs in ({"noise": "kernel"}, {"alpha_init": -0.1}, {"alpha_init": float("nan")}):
        with pytest.raises(ValueError):
            PNIConv2d(3, 8, 3, **kwargs)
        with pytest.raises(ValueError):
            PNILinear(5, 7, **kwargs)
    with pytest.raises(ValueError, match="at least 2 weights"):
        PNILinear(1, 1)


def test_pni_layers_and_alphas_table():
    model = nn.Sequential(PNIConv2d(3, 4, 3, noise="channel"), nn.ReLU(), nn.Flatten(), PNILinear(4, 2))
    with torch.no_grad():
        model[0].alpha.copy_(torch.tensor([0.1, 0.2, 0.3, 0.6]).view(-1, 1, 1, 1))
    assert pni_layers(model) == [model[0], model[3]]
    assert pni_alphas(model) == pytest.approx({"0": 0.3, "3": 0.25})
    assert pni_layers(nn.Linear(2, 2)) == [] and pni_alphas(nn.Linear(2, 2)) == {}


def test_alpha_learns_by_gradient_descent():
    """One SGD step moves alpha by -lr * dL/dalpha (it is an ordinary trainable parameter)."""
    pni, _, x = _pair("linear")
    opt = torch.optim.SGD(pni.parameters(), lr=0.1)
    before = pni.alpha.detach().clone()
    F.cross_entropy(pni(x), torch.tensor([0, 1, 2, 3])).backward()
    grad = pni.alpha.grad.clone()
    opt.step()
    torch.testing.assert_close(pni.alpha.detach(), before - 0.1 * grad)
