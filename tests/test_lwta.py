"""Tests of the Local Winner-Takes-All activation and the IBP-gated layers (robust_utils.nn.lwta;
Panousis et al. 2019, 2021, and their released code github.com/konpanousis/Adversarial-LWTA-AutoAttack).

Each test asserts a property that a wrong implementation could fail: one winner per block that
passes its own value, the argmax in deterministic mode, winner frequencies softmax(h) at any
temperature, the exact Gumbel-softmax formula with the train / test temperature, the gradient
through the soft mask, hand-computed KL values, the override's restore, the thresholded eval
gates, the Kumaraswamy-Beta KL against exact values, and the summed KL of a model.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta, Kumaraswamy

from robust_utils.nn.lwta import (ACTIVATIONS, LWTA, LWTA_MODES, IBPConv2d, IBPLinear, kl_divergence,
                               kumaraswamy_beta_kl, lwta_modules, lwta_override, make_activation)


def _separated(n: int, blocks: int, units: int, *rest: int, gap: float = 20.0) -> torch.Tensor:
    """h (n, blocks * units, *rest) whose units differ by >= gap within each block (no zeros)."""
    g = torch.Generator().manual_seed(0)
    levels = torch.arange(1, units + 1, dtype=torch.float32) * gap - 2.5 * gap  # e.g. -30, -10, 10
    perm = torch.rand(n, blocks, units, *rest, generator=g).argsort(dim=2)
    return levels[perm].reshape(n, blocks * units, *rest)


def _blocks(h: torch.Tensor, units: int) -> torch.Tensor:
    return h.reshape(h.shape[0], h.shape[1] // units, units, *h.shape[2:])


# ---------------------------------------------------------------- the activation's modes

@pytest.mark.parametrize("shape", [(64, 12), (8, 12, 5, 5)])
def test_stochastic_at_low_temperature_has_one_winner_passing_its_value(shape):
    n, c, *rest = shape
    h = _separated(n, c // 3, 3, *rest)
    act = LWTA(units=3, temperature=1e-3).train()
    out = _blocks(act(h), 3)
    hb = _blocks(h, 3)
    assert bool(((out != 0).sum(2) == 1).all())  # exactly one non-zero unit per block
    winner = (out != 0).float().argmax(2, keepdim=True)
    assert torch.equal(out.gather(2, winner), hb.gather(2, winner))  # it passes h unchanged
    assert torch.equal(winner, hb.argmax(2, keepdim=True))  # gaps of 20 >> Gumbel noise: the max wins
    act.eval()  # test temperature 0.01: still one winner
    assert bool(((_blocks(act(h), 3) != 0).sum(2) == 1).all())


@pytest.mark.parametrize("shape", [(32, 8), (4, 8, 3, 3)])
def test_deterministic_mode_keeps_exactly_the_argmax(shape):
    torch.manual_seed(0)
    h = torch.randn(*shape)
    act = LWTA(units=4, mode="deterministic")
    out = act(h)
    ob, hb = _blocks(out, 4), _blocks(h, 4)
    assert bool(((ob != 0).sum(2) == 1).all())
    idx = hb.argmax(2, keepdim=True)
    assert torch.equal(ob.gather(2, idx), hb.gather(2, idx))
    assert torch.equal(out, act(h))  # no randomness
    assert act.last_kl.dim() == 0 and float(act.last_kl) == 0.0


def test_winner_frequencies_follow_softmax_h_at_any_temperature():
    torch.manual_seed(0)
    logits = torch.tensor([0.5, -0.3, 1.0])
    h = logits.repeat(20000, 1)
    p = F.softmax(logits, 0)
    for temp in (1.0, 0.3):
        mask = LWTA(units=3, temperature=temp).train()(h) / h
        freq = torch.bincount(mask.argmax(1), minlength=3).float() / len(h)
        torch.testing.assert_close(freq, p, atol=0.02, rtol=0)  # about 6 standard errors
    # ... and not softmax(h / T): hence the KL's posterior q = softmax(h)
    assert (freq - F.softmax(logits / 0.3, 0)).abs().max() > 0.1


def test_gumbel_softmax_formula_with_train_and_test_temperature():
    torch.manual_seed(1)
    h = torch.randn(5, 6, 2, 2)
    act = LWTA(units=2, temperature=0.9, test_temperature=0.2)
    for training, temp in ((True, 0.9), (False, 0.2)):
        act.train(training)
        torch.manual_seed(7)
        out = act(h)
        torch.manual_seed(7)
        hb = _blocks(h, 2)
        g = -torch.log(-torch.log(torch.rand_like(hb) + 1e-8) + 1e-8)
        expected = (hb * F.softmax((hb + g) / temp, dim=2)).reshape(h.shape)
        torch.testing.assert_close(out, expected)
    assert not torch.equal(act(h), act(h))  # sampled at test time too


def test_expected_mode_is_noise_free_softmax_surrogate():
    torch.manual_seed(2)
    h = torch.randn(4, 6)
    act = LWTA(units=3, mode="expected", temperature=0.5, test_temperature=2.0)
    for training, temp in ((True, 0.5), (False, 2.0)):
        act.train(training)
        hb = _blocks(h, 3)
        torch.testing.assert_close(act(h), (hb * F.softmax(hb / temp, 2)).reshape(h.shape))
        assert torch.equal(act(h), act(h)) and float(act.last_kl) == 0.0


def test_gradient_flows_through_the_stochastic_mask():
    torch.manual_seed(3)
    h = torch.randn(3, 4, requires_grad=True)
    act = LWTA(units=2, temperature=1.0).train()
    torch.manual_seed(5)
    act(h).sum().backward()
    torch.manual_seed(5)
    hb = _blocks(h.detach(), 2)
    m = F.softmax(hb - torch.log(-torch.log(torch.rand_like(hb) + 1e-8) + 1e-8), dim=2)
    # d/dh_i sum_j h_j m_j = m_i + m_i (h_i - sum_j h_j m_j) / T: the second term is the mask's
    expected = m + m * (hb - (hb * m).sum(2, keepdim=True))
    torch.testing.assert_close(h.grad, expected.reshape(3, 4))
    assert (h.grad - m.reshape(3, 4)).abs().max() > 1e-3  # not the detached-mask gradient


# ---------------------------------------------------------------- the winners' KL

def test_kl_is_zero_for_a_uniform_mask_and_positive_otherwise():
    act = LWTA(units=2)
    for h in (torch.zeros(3, 4), torch.tensor([[1.5, 1.5, -2.0, -2.0]]), torch.full((2, 4, 3, 3), 7.0)):
        act(h)
        torch.testing.assert_close(act.last_kl, torch.tensor(0.0), atol=1e-6, rtol=0)
    act(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert float(act.last_kl) > 0


def test_kl_equals_hand_computed_value():
    # one block [1, 0] per sample (the other block uniform): KL = sum_u q_u log(2 q_u), q = softmax
    q1 = math.e / (1 + math.e)
    kl_block = q1 * math.log(2 * q1) + (1 - q1) * math.log(2 * (1 - q1))
    act = LWTA(units=2).eval()  # the KL does not depend on the temperature or the mode's noise
    act(torch.tensor([[1.0, 0.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]]))
    assert float(act.last_kl) == pytest.approx(kl_block / 2, abs=1e-6)  # averaged over the batch
    h = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 3)  # 6 spatial positions
    act(h)
    assert float(act.last_kl) == pytest.approx(6 * kl_block, abs=1e-5)  # summed over positions
    u4 = LWTA(units=4)
    u4(torch.tensor([[0.0, 0.0, 0.0, math.log(5.0)]]))  # q = (1, 1, 1, 5) / 8
    q = torch.tensor([1.0, 1.0, 1.0, 5.0]) / 8
    assert float(u4.last_kl) == pytest.approx(float((q * torch.log(4 * q)).sum()), abs=1e-6)


def test_kl_carries_gradient_to_h():
    h = torch.tensor([[2.0, -1.0]], requires_grad=True)
    act = LWTA(units=2)
    act(h)
    act.last_kl.backward()
    assert h.grad[0, 0] > 0 > h.grad[0, 1]  # the KL pulls the units together


# ---------------------------------------------------------------- override, factory, errors

def _lwta_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), LWTA(units=2), nn.Linear(6, 4), LWTA(units=2, test_temperature=0.05))


def test_lwta_override_changes_behaviour_and_restores():
    net = _lwta_net().eval()
    x = torch.randn(16, 4)
    with lwta_override(net, mode="deterministic") as m:
        assert m is net and all(a.mode == "deterministic" for a in lwta_modules(net))
        assert torch.equal(net(x), net(x))
    assert [(a.mode, a.temperature, a.test_temperature) for a in lwta_modules(net)] == [
        ("stochastic", 0.67, 0.01), ("stochastic", 0.67, 0.05)]
    with lwta_override(net, mode="expected", temperature=0.67):  # eval mode, training temperature
        h = net[0](x)
        out = net[1](h)
        hb = _blocks(h, 2)
        torch.testing.assert_close(out, (hb * F.softmax(hb / 0.67, 2)).reshape(h.shape))
    with pytest.raises(RuntimeError, match="boom"):
        with lwta_override(net, mode="deterministic", temperature=2.0):
            raise RuntimeError("boom")
    assert [(a.mode, a.temperature, a.test_temperature) for a in lwta_modules(net)] == [
        ("stochastic", 0.67, 0.01), ("stochastic", 0.67, 0.05)]


def test_lwta_override_errors_change_nothing():
    net = _lwta_net()
    for kwargs in ({"mode": "hard"}, {"temperature": 0.0}, {"temperature": -1.0}):
        with pytest.raises(ValueError):
            with lwta_override(net, **kwargs):
                pass
    assert all(a.mode == "stochastic" and a.temperature == 0.67 for a in lwta_modules(net))
    with pytest.raises(ValueError, match="no LWTA"):
        with lwta_override(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), mode="expected"):
            pass


def test_make_activation_and_argument_errors():
    assert ACTIVATIONS == ("relu", "lwta", "stochastic_lwta") and "expected" in LWTA_MODES
    assert type(make_activation("relu")) is nn.ReLU
    det, sto = make_activation("lwta", units=4), make_activation("stochastic_lwta", temperature=0.5)
    assert (det.mode, det.units) == ("deterministic", 4) and (sto.mode, sto.temperature) == ("stochastic", 0.5)
    assert "units=4, mode='deterministic', temperature=0.67, test_temperature=0.01" in repr(det)
    with pytest.raises(ValueError, match="relu, lwta, stochastic_lwta"):
        make_activation("swish")
    with pytest.raises(ValueError, match="bad arguments"):
        make_activation("relu", units=2)
    for kwargs in ({"units": 1}, {"units": 2.0}, {"mode": "soft"}, {"temperature": 0}, {"test_temperature": -1}):
        with pytest.raises(ValueError):
            LWTA(**kwargs)
    with pytest.raises(ValueError, match=r"C=5.*U=2"):
        LWTA(units=2)(torch.zeros(1, 5, 3, 3))
    with pytest.raises(ValueError):
        LWTA()(torch.zeros(4))


# ---------------------------------------------------------------- IBP layers

def test_ibp_eval_gates_are_thresholded_sigmoid_and_deterministic():
    torch.manual_seed(0)
    layer = IBPLinear(5, 3)
    assert layer.t_pi.shape == (3, 5) and layer.conc1.shape == (3,)
    assert 4 <= float(layer.t_pi.detach().min()) and float(layer.t_pi.detach().max()) <= 5  # U(4, 5) dense init
    with torch.no_grad():
        layer.t_pi.copy_(torch.linspace(-8, 3, 15).view(3, 5))  # sigmoid from 3e-4 to 0.95
    q = torch.sigmoid(layer.t_pi.detach())
    assert bool((q < 0.01).any()) and bool((q > 0.01).any())
    layer.eval()
    z = layer.gates()
    assert torch.equal(z, torch.where(q > 0.01, q, torch.zeros_like(q)))
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight * z, layer.bias))
    assert torch.equal(layer(x), layer(x))


def test_ibp_training_gates_are_binary_concrete_samples():
    torch.manual_seed(1)
    layer = IBPConv2d(2, 4, 3, padding=1, temperature=0.5).train()
    assert layer.t_pi.shape == (4, 2, 1, 1)
    assert 0.1 <= float(layer.t_pi.detach().min()) and float(layer.t_pi.detach().max()) <= 5  # U(0.1, 5) conv init
    x = torch.randn(2, 2, 5, 5)
    torch.manual_seed(9)
    out = layer(x)
    torch.manual_seed(9)
    u = torch.rand_like(layer.t_pi)
    z = torch.sigmoid((torch.log(u + 1e-8) - torch.log(1 - u + 1e-8) + layer.t_pi) / 0.5)
    torch.testing.assert_close(out, F.conv2d(x, layer.weight * z, layer.bias, padding=1))
    assert not torch.equal(layer(x), layer(x))


def test_ibp_kl_positive_in_training_zero_in_eval_and_differentiable():
    for layer in (IBPLinear(6, 4), IBPConv2d(3, 4, 3)):
        x = torch.randn(2, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 6, 6)
        assert layer.last_kl is None
        layer.train()
        layer(x)
        kl = layer.last_kl
        assert kl.requires_grad
        assert kl.dim() == 0 and math.isfinite(kl.item()) and kl.item() > 0
        kl.backward()
        for p in (layer.t_pi, layer.conc1, layer.conc0):
            assert p.grad is not None and float(p.grad.abs().sum()) > 0
        layer.eval()
        layer(x)
        assert float(layer.last_kl) == 0.0


def test_ibp_kl_is_sticks_kl_plus_full_bernoulli_kl():
    torch.manual_seed(6)
    layer = IBPLinear(4, 3)
    with torch.no_grad():
        layer.t_pi.copy_(torch.linspace(-3, 3, 12).view(3, 4))
        layer.conc1.copy_(torch.tensor([3.0, 1.0, 0.5]))
    torch.manual_seed(8)
    kl = layer.ibp_kl()
    torch.manual_seed(8)
    pi = layer.stick_probabilities().detach()  # the same single draw of the sticks
    a, b = F.softplus(layer.conc1.detach()), F.softplus(layer.conc0.detach())
    q = torch.sigmoid(layer.t_pi.detach())
    bern = torch.distributions.kl_divergence(torch.distributions.Bernoulli(probs=q),
                                             torch.distributions.Bernoulli(probs=pi.view(3, 1).expand(3, 4)))
    sticks = kumaraswamy_beta_kl(a, b)  # against Beta(1, 1): checked on exact values below
    assert float(bern.sum()) > 1.0  # the (1 - q) half of the Bernoulli KL matters here
    torch.testing.assert_close(kl.detach(), sticks.sum() + bern.sum(), rtol=1e-4, atol=1e-4)


def test_ibp_with_open_gates_equals_the_plain_layer_in_eval():
    torch.manual_seed(2)
    lin, conv = IBPLinear(7, 3), IBPConv2d(3, 5, 3, stride=2, padding=1, bias=False)
    plain_lin, plain_conv = nn.Linear(7, 3), nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False)
    plain_lin.load_state_dict({k: v for k, v in lin.state_dict().items() if k in ("weight", "bias")})
    plain_conv.weight.data.copy_(conv.weight.data)
    for layer in (lin, conv):
        with torch.no_grad():
            layer.t_pi.fill_(50.0)  # sigmoid(50) == 1 in float32
        layer.eval()
    x, xc = torch.randn(4, 7), torch.randn(2, 3, 8, 8)
    assert torch.equal(lin(x), plain_lin(x))
    assert torch.equal(conv(xc), plain_conv(xc))


def test_ibp_constructor_errors_and_repr():
    for kwargs in ({"temperature": 0.0}, {"threshold": 1.0}, {"threshold": -0.1}):
        with pytest.raises(ValueError):
            IBPLinear(3, 2, **kwargs)
        with pytest.raises(ValueError):
            IBPConv2d(3, 2, 3, **kwargs)
    assert "temperature=0.67, threshold=0.01" in repr(IBPConv2d(3, 2, 3))


def test_stick_probabilities_are_cumulative_kumaraswamy_products():
    torch.manual_seed(3)
    layer = IBPConv2d(1, 2, 1)  # conc1 = 2, conc0 = 0.5453 for both sticks
    a, b = F.softplus(torch.tensor(2.0)), F.softplus(torch.tensor(0.5453))
    pi = torch.stack([layer.stick_probabilities().detach() for _ in range(4000)])
    mean_v = Kumaraswamy(a, b).mean
    assert float(pi[:, 0].mean()) == pytest.approx(float(mean_v), abs=0.015)
    assert float(pi[:, 1].mean()) == pytest.approx(float(mean_v) ** 2, abs=0.015)  # independent sticks
    assert bool((pi[:, 1] <= pi[:, 0]).all())


def test_kumaraswamy_beta_kl_against_exact_values():
    # Kumaraswamy(a, 1) is Beta(a, 1): the Beta-Beta KL is exact
    a = torch.tensor([0.5, 1.5, 4.0], dtype=torch.float64)
    one = torch.ones_like(a)
    exact = torch.distributions.kl_divergence(Beta(a, one), Beta(one, one))
    torch.testing.assert_close(kumaraswamy_beta_kl(a, one), exact)
    exact2 = torch.distributions.kl_divergence(Beta(a, one), Beta(2 * one, one))
    torch.testing.assert_close(kumaraswamy_beta_kl(a, one, alpha=2.0), exact2)
    # beta != 1 needs the series: 10 terms (Nalisnick & Smyth) fall short, many converge
    exact3 = torch.distributions.kl_divergence(Beta(a, one), Beta(one, 2 * one))
    assert float((exact3 - kumaraswamy_beta_kl(a, one, beta=2.0)).min()) > 0.01
    torch.testing.assert_close(kumaraswamy_beta_kl(a, one, beta=2.0, terms=10_000), exact3, atol=2e-3, rtol=0)
    # b != 1 against a Monte Carlo estimate
    torch.manual_seed(4)
    q = Kumaraswamy(torch.tensor(0.7), torch.tensor(3.0))
    v = q.sample((200_000,)).clamp(1e-6, 1 - 1e-6)
    mc = float((q.log_prob(v) - Beta(torch.tensor(1.0), torch.tensor(1.0)).log_prob(v)).mean())
    assert float(kumaraswamy_beta_kl(torch.tensor(0.7), torch.tensor(3.0))) == pytest.approx(mc, abs=0.01)


# ---------------------------------------------------------------- the model's KL

def test_kl_divergence_sums_every_module_of_the_last_forward():
    torch.manual_seed(5)
    model = nn.Sequential(IBPLinear(6, 8), LWTA(units=2), IBPLinear(8, 4), LWTA(units=2, mode="deterministic"))
    assert float(kl_divergence(model)) == 0.0  # no forward yet
    model.train()
    model(torch.randn(3, 6))
    parts = [model[0].last_kl, model[1].last_kl, model[2].last_kl]
    assert all(p.item() > 0 for p in parts) and float(model[3].last_kl) == 0.0
    total = kl_divergence(model)
    assert total.dim() == 0
    torch.testing.assert_close(total, sum(parts))
    total.backward()
    assert model[0].t_pi.grad is not None
    model.eval()
    model(torch.randn(3, 6))  # IBP KL is zero in eval; the stochastic LWTA's is not
    torch.testing.assert_close(kl_divergence(model), model[1].last_kl)
    assert float(kl_divergence(nn.ReLU())) == 0.0
