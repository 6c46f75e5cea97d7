"""Tests of the stochastic layers, the SDR training rules, EOT, Foolbox's FGSM search and the
evaluation of random models (Khan et al. 2019; robust_utils.layers, .sdr, .attacks, .evaluate).

Each test asserts a property that a wrong implementation could fail: SDR-decay's update on a
hand-computed step, the reparameterisation gradient reaching sigma, Algorithm 3's clamp after
every step, the threshold schedule, sampling at inference and the mean switch, EOT with M = 1
equal to the plain attack, EOT's vectorised M draws independent (the variance of the estimate
falls as 1/M; the draws have the distribution of the loop's), and the smallest-eps search
stopping at the first success.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.methods import sdr
from scipy import stats

from robust_utils.attacks import deepfool, eot, fgsm, fgsm_smallest_eps, foolbox_eps_grid, pgd
from robust_utils.attacks.eot import vectorizable
from robust_utils.evaluation import stochastic_accuracy
from robust_utils.nn.layers import DropConnectLinear, SDRLinear, make_linear, mean_network, mean_sigma
from robust_utils.nn.models import build_model
from robust_utils.training import fit


@pytest.fixture(scope="module")
def sdr_mlp(mnist_train):
    """A small SDR-Learnable MLP trained for 2 epochs on 2,000 images (about a second)."""
    x, y = mnist_train
    model = build_model("mlp", seed=0, device="cpu", widths=(64, 64), layer="sdr-learnable")
    fit(model, x, y, optimizer={"name": "sgd", "lr": 0.1}, epochs=2, batch_size=50, seed=0,
        cache_enabled=False, progress=False)
    return model.eval()


# ---------------------------------------------------------------- SDR-decay (Algorithm 2, eq. 1)

def test_sdr_decay_step_matches_hand_computed_update():
    layer = SDRLinear(2, 1, rule="decay")
    with torch.no_grad():
        layer.weight_mu.copy_(torch.tensor([[0.5, -1.0]]))
        layer.bias_mu.fill_(0.25)
        layer.weight_sigma.copy_(torch.tensor([[0.1, 0.2]]))
        layer.bias_sigma.fill_(0.3)
    x, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0]])
    alpha, beta, zeta = 0.1, 0.05, 0.7

    torch.manual_seed(3)
    e_w, e_b = torch.randn(1, 2), torch.randn(1)  # the draws the layer will make (same order)
    w = torch.tensor([[0.5, -1.0]]) + torch.tensor([[0.1, 0.2]]) * e_w
    b = 0.25 + 0.3 * e_b
    resid = (x @ w.T + b - target).item()  # L = resid^2: dL/dw = 2 resid x, dL/db = 2 resid
    g_w, g_b = 2 * resid * x, torch.tensor([2 * resid])

    torch.manual_seed(3)
    opt = torch.optim.SGD(layer.parameters(), lr=alpha)
    ((layer(x) - target) ** 2).sum().backward()
    opt.step()
    hook = sdr.SDRDecay(beta=beta, zeta=zeta, tau=2)
    hook.after_step(1, 1, nn.Sequential(layer))  # batch 1: no decay
    torch.testing.assert_close(layer.weight_mu.detach(), torch.tensor([[0.5, -1.0]]) - alpha * g_w)
    torch.testing.assert_close(layer.bias_mu.detach(), 0.25 - alpha * g_b)
    torch.testing.assert_close(layer.weight_sigma, torch.tensor([[0.1, 0.2]]) + beta * g_w.abs())
    torch.testing.assert_close(layer.bias_sigma, 0.3 + beta * g_b.abs())

    sigma_before = layer.weight_sigma.clone()
    hook.after_step(1, 2, nn.Sequential(layer))  # batch 2 = tau: sigma += beta |g| then *= zeta
    torch.testing.assert_close(layer.weight_sigma, zeta * (sigma_before + beta * g_w.abs()))


def test_sdr_decay_sigma_is_not_a_parameter_and_hook_needs_decay_layers():
    layer = SDRLinear(4, 3, rule="decay")
    assert {n for n, _ in layer.named_parameters()} == {"weight_mu", "bias_mu"}
    assert "weight_sigma" in dict(layer.named_buffers())
    with pytest.raises(ValueError, match="rule 'decay'"):
        sdr.SDRDecay().after_step(1, 1, nn.Sequential(SDRLinear(4, 3, rule="learnable")))
    for bad in ({"zeta": 0.0}, {"zeta": 1.5}, {"beta": -1.0}, {"tau": 0}):
        with pytest.raises(ValueError):
            sdr.SDRDecay(**bad)


# ---------------------------------------------------------------- SDR-Learnable (section 4.3)

def test_sdr_learnable_gradient_reaches_sigma_through_reparameterisation():
    layer = SDRLinear(3, 2, rule="learnable")
    x = torch.tensor([[1.0, -2.0, 0.5]])
    torch.manual_seed(1)
    e_w = torch.randn(2, 3)
    torch.manual_seed(1)
    layer(x).sum().backward()
    # L = sum_j (x . w_j + b_j): dL/dw_j = x, so dL/dsigma = x * e and dL/dmu = x
    torch.testing.assert_close(layer.weight_sigma.grad, x.expand(2, 3) * e_w)
    torch.testing.assert_close(layer.weight_mu.grad, x.expand(2, 3))
    assert layer.bias_sigma.grad.abs().sum() > 0


def test_variance_clamp_holds_after_every_step(mnist_train):
    x, y = mnist_train
    model = build_model("mlp", seed=0, device="cpu", widths=(32,), layer="sdr-learnable",
                        layer_kwargs={"sigma_init": 0.5})
    schedule = sdr.VarianceSchedule(x[:200], y[:200], low=0.02, high=0.03)
    seen = []

    class Check:
        def after_step(self, epoch, batch, m):
            sig = torch.cat([s.detach().flatten() for layer in m.net if isinstance(layer, SDRLinear)
                             for _, s in layer.pairs()])
            seen.append((float(sig.min()), float(sig.max())))

        def __call__(self, epoch, m):
            return {}

    fit(model, x[:500], y[:500], optimizer={"name": "sgd", "lr": 0.5}, epochs=2, batch_size=50,
        callbacks=[schedule, Check()], cache_enabled=False, progress=False)
    assert len(seen) == 20
    assert all(0.02 - 1e-7 <= lo and hi <= 0.03 + 1e-7 for lo, hi in seen)
    assert min(hi for _, hi in seen) > 0.029  # a sigma initialised at 0.5 is held at the top


def test_variance_schedule_raises_on_plateau_at_most_every_k_epochs(monkeypatch, mnist_test):
    accs = iter([0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7])

    class Fake:
        def __init__(self, a):
            self.mean = a

    monkeypatch.setattr(sdr, "stochastic_accuracy", lambda *a, **k: Fake(next(accs)))
    x, y = mnist_test
    schedule = sdr.VarianceSchedule(x, y, low=0.0, high=1.0, step=0.05, every=2, tol=0.0)
    model = nn.Sequential(SDRLinear(4, 2))
    out = [schedule(e, model) for e in range(1, 8)]
    assert [o["raised"] for o in out] == [0, 0, 1, 0, 0, 1, 0]
    assert [o["sigma_low"] for o in out] == pytest.approx([0, 0, 0, 0.05, 0.05, 0.05, 0.1])
    assert out[-1]["sigma_high"] == pytest.approx(1.1)
    schedule.after_step(1, 1, model)  # a new training run starts from the initial thresholds
    assert (schedule.low, schedule.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        sdr.VarianceSchedule(x, y, low=0.5, high=0.1)


# ---------------------------------------------------------------- sampling at inference, mean switch

@pytest.mark.parametrize("kind", ["sdr-decay", "sdr-learnable", "dropconnect"])
def test_layer_samples_at_inference_and_mean_switch_is_deterministic(kind):
    torch.manual_seed(0)
    layer = make_linear(kind, 20, 5).eval()
    x = torch.rand(8, 20)
    with torch.no_grad():
        a, b = layer(x), layer(x)
        assert not torch.equal(a, b)  # eval mode still samples
        with mean_network(layer):
            m1, m2 = layer(x), layer(x)
        w, bias = layer.mean_weight()
        torch.testing.assert_close(m1, F.linear(x, w, bias))
        assert torch.equal(m1, m2)
        assert not torch.equal(layer(x), layer(x))  # restored on exit


def test_dropconnect_is_unbiased_around_the_mean_network():
    torch.manual_seed(0)
    layer = DropConnectLinear(30, 4, p=0.2)
    x = torch.rand(2, 30)
    with torch.no_grad():
        mean_out = torch.stack([layer(x) for _ in range(4000)]).mean(0)
        with mean_network(layer):
            det = layer(x)
    torch.testing.assert_close(mean_out, det, atol=0.02, rtol=0)
    with pytest.raises(ValueError):
        DropConnectLinear(3, 3, p=1.0)


def test_mlp_variants_have_stochastic_layers_everywhere():
    m = build_model("mlp", seed=0, device="cpu", layer="sdr-learnable")
    assert sum(isinstance(l, SDRLinear) for l in m.modules()) == 4
    assert 0 < mean_sigma(m) < 0.05
    assert math.isnan(mean_sigma(build_model("mlp", seed=0, device="cpu")))
    with pytest.raises(ValueError, match="unknown linear layer"):
        build_model("mlp", seed=0, device="cpu", layer="bayes")


# ---------------------------------------------------------------- evaluating a random model

class _Alternating(nn.Module):
    """Predicts class 0 on odd calls and class 1 on even calls (a maximally random model)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        logits = torch.zeros(x.shape[0], 2)
        logits[:, (self.calls + 1) % 2] = 1.0
        return logits


def test_stochastic_accuracy_mean_and_all_passes(trained_mlp, mnist_test):
    x, y = mnist_test
    det = stochastic_accuracy(trained_mlp, x, y, passes=3)
    assert det.mean == det.all_passes and det.se == 0.0 and len(set(det.per_pass)) == 1
    y0 = torch.zeros(10, dtype=torch.int64)
    rnd = stochastic_accuracy(_Alternating(), torch.rand(10, 1, 2, 2), y0, passes=4)
    assert rnd.per_pass == (1.0, 0.0, 1.0, 0.0) and rnd.mean == 0.5 and rnd.all_passes == 0.0


def test_eot_output_is_log_mean_probability():
    model = _Alternating()
    out = eot(model, samples=2)(torch.rand(3, 1, 2, 2))
    p = (F.softmax(torch.tensor([1.0, 0.0]), 0) + F.softmax(torch.tensor([0.0, 1.0]), 0)) / 2
    torch.testing.assert_close(out, p.log().expand(3, 2))
    with pytest.raises(ValueError):
        eot(model, samples=0)


def test_eot_with_one_sample_equals_the_plain_attack(sdr_mlp, mnist_test):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    for attack in (lambda m: fgsm(m, x, y, 0.1),
                   lambda m: pgd(m, x, y, 0.1, 0.01, 10, generator=torch.Generator().manual_seed(0)),
                   lambda m: deepfool(m, x, y, steps=20)):
        torch.manual_seed(7)
        plain = attack(sdr_mlp)
        torch.manual_seed(7)
        wrapped = attack(eot(sdr_mlp, samples=1))
        assert (plain - wrapped).abs().max() <= 1e-5


def test_eot_gradient_concentrates_with_more_samples(sdr_mlp, mnist_test):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    torch.manual_seed(0)
    ref = fgsm(eot(sdr_mlp, samples=200), x, y, 0.1)

    def agreement(m):
        return torch.stack([(fgsm(eot(sdr_mlp, samples=m), x, y, 0.1) == ref).float().mean()
                            for _ in range(3)]).mean()

    assert agreement(30) > agreement(1) + 0.02


def _tiny_sdr(sigma=1.0):
    """x (N, 2) -> SDRLinear(2, 2) logits with mu = 0 and sigma everywhere: each draw's logits are
    x w^T + b with w, b ~ N(0, sigma^2), so a draw of x = (1, 0) has logit difference ~ N(0, 4 sigma^2)."""
    layer = SDRLinear(2, 2, sigma_init=sigma)
    with torch.no_grad():
        layer.weight_mu.zero_()
        layer.bias_mu.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


def test_vectorised_eot_averages_m_independent_draws():
    """One vectorised call makes M draws that are pairwise different, have the distribution of M
    separate calls (two-sample KS test), and average out: the variance of the EOT estimate over
    repeated calls falls as 1 / M, which M copies of one draw would not do."""
    model = _tiny_sdr()
    x = torch.tensor([[[[1.0, 0.0]]]])
    wrapped = eot(model, samples=16)
    assert wrapped.vectorized
    torch.manual_seed(0)
    with torch.no_grad():
        draws = wrapped.log_probs(x)[:, 0, 0]  # (16,) log p_0 of each draw
        assert draws.unique().numel() == 16
        vec = eot(model, samples=2000).log_probs(x)[:, 0, 0]
        loop = eot(model, samples=2000, vectorize=False).log_probs(x)[:, 0, 0]
        single = torch.stack([eot(model, samples=1)(x)[0, 0] for _ in range(400)]).exp()
        mean16 = torch.stack([wrapped(x)[0, 0] for _ in range(400)]).exp()
    assert stats.ks_2samp(vec.numpy(), loop.numpy()).pvalue > 1e-3
    assert abs(float(torch.corrcoef(torch.stack([vec[:-1], vec[1:]]))[0, 1])) < 0.1  # successive draws uncorrelated
    ratio = single.var() / mean16.var()
    assert 8 < ratio < 32, ratio  # 16 for independent draws, 1 for copies of one draw


def test_vectorised_eot_keeps_draws_apart_in_chunks_and_for_every_random_layer():
    x = torch.rand(3, 1, 28, 28)
    for kw in (dict(layer="sdr-learnable"), dict(layer="dropconnect"), dict(layer="pni"),
               dict(activation="stochastic_lwta")):
        model = build_model("mlp", seed=0, device="cpu", widths=(32, 32), **kw).eval()
        for chunk in (None, 2):
            draws = eot(model, samples=5, chunk_size=chunk).log_probs(x)
            assert draws.shape == (5, 3, 10)
            assert all((draws[i] - draws[j]).abs().max() > 1e-6 for i in range(5) for j in range(i)), kw


def test_eot_vectorises_only_known_modules_and_never_batch_norm_in_training():
    mlp = build_model("mlp", seed=0, device="cpu", widths=(8,), layer="sdr-learnable")
    assert vectorizable(mlp) and eot(mlp, 4).vectorized
    assert not eot(mlp, 1).vectorized  # M = 1: one ordinary call
    assert not vectorizable(_Alternating())  # Python-level randomness: vmap would share it
    bn = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert not vectorizable(bn.train()) and vectorizable(bn.eval())
    with pytest.raises(RuntimeError, match="vectorize=False"):
        eot(bn.train(), 3, vectorize=True)(torch.rand(5, 1, 2, 2))
    for bad in dict(vectorize="yes"), dict(chunk_size=0):
        with pytest.raises(ValueError):
            eot(mlp, 4, **bad)


def test_vectorised_eot_leaves_a_usable_kl():
    from robust_utils.nn.lwta import kl_divergence

    model = build_model("mlp", seed=0, device="cpu", widths=(8, 8), activation="stochastic_lwta").eval()
    eot(model, 4)(torch.rand(2, 1, 28, 28))
    kl = kl_divergence(model)
    assert kl.dim() == 0 and torch.isfinite(kl) and kl > 0


def test_dropconnect_draws_the_numbers_of_the_in_place_mask():
    """The out-of-place mask (vmap-friendly) draws exactly the numbers of empty_like(W).bernoulli_(1 - p)."""
    layer = DropConnectLinear(30, 20, p=0.3)
    torch.manual_seed(4)
    w, _ = layer.sample_weight()
    torch.manual_seed(4)
    keep = torch.empty_like(layer.weight).bernoulli_(0.7)
    assert torch.equal(w, layer.weight * keep / 0.7)


# ---------------------------------------------------------------- Foolbox 1.x's FGSM search

def test_fgsm_smallest_eps_stops_at_first_success(trained_mlp, mnist_test):
    x, y = mnist_test
    grid = foolbox_eps_grid()
    assert len(grid) == 999 and grid[-1] == 1.0
    res = fgsm_smallest_eps(trained_mlp, x, y, refine=False)
    with torch.no_grad():
        clean_wrong = trained_mlp(x).argmax(1) != y
        assert bool((res.eps[clean_wrong] == 0).all()) and torch.equal(res.x_adv[clean_wrong], x[clean_wrong])
        assert bool(torch.isfinite(res.eps).all())  # eps up to 1 fools an undefended MLP everywhere
        found = res.eps > 0
        assert found.float().mean() > 0.8
        assert bool((trained_mlp(res.x_adv[found]).argmax(1) != y[found]).all())
        linf = (res.x_adv - x).flatten(1).abs().amax(1)
        assert bool((linf[found] <= res.eps[found] + 1e-6).all())
        # one grid step less does not fool (deterministic model: the search is exact)
        idx = torch.searchsorted(grid, res.eps[found])
        prev = torch.where(idx > 0, grid[(idx - 1).clamp_min(0)], torch.zeros_like(idx, dtype=torch.float32))
        direction = fgsm(trained_mlp, x[found], y[found], 1.0) - x[found]
        x_prev = (x[found] + prev.view(-1, 1, 1, 1) * direction.sign()).clamp(0, 1)
        assert bool((trained_mlp(x_prev).argmax(1) == y[found]).all())
    refined = fgsm_smallest_eps(trained_mlp, x, y, refine=True)
    assert bool((refined.eps <= res.eps).all())
    with pytest.raises(ValueError):
        fgsm_smallest_eps(trained_mlp, x, y, eps_grid=torch.tensor([0.2, 0.1]))


def test_sanity_checks_pass_and_fail_on_the_right_numbers():
    from robust_utils.evaluation import sanity_checks

    good = sanity_checks({0.0: 0.98, 0.1: 0.6, 0.3: 0.01}, n=1000, single_step=("FGSM", 0.5),
                         iterative=("PGD", 0.3), white_box=("PGD", 0.3), black_box=("LocalSearch", 0.7),
                         transfer=("transfer", 0.4))
    assert list(good["passed"]) == [True] * 5
    bad = sanity_checks({0.0: 0.98, 0.1: 0.6, 0.2: 0.8, 0.3: 0.3}, n=1000, single_step=("FGSM", 0.3),
                        iterative=("PGD", 0.5), white_box=("PGD", 0.5), black_box=("LocalSearch", 0.2),
                        transfer=("transfer", 0.1))
    assert list(bad["passed"]) == [False] * 5
    assert "0.1" in bad.loc[0, "evidence"] and "0.2" in bad.loc[0, "evidence"]
    # within the noise of 100 test points, a 0.02 rise is not a failure
    assert sanity_checks({0.0: 0.5, 0.1: 0.52}, n=100, single_step=("a", 0.5), iterative=("b", 0.51))["passed"][0]
    with pytest.raises(ValueError):
        sanity_checks({}, n=10, single_step=("a", 0.1), iterative=("b", 0.1))
