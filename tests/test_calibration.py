"""robust_utils.calibration: paper 000's EM soft labels (Algorithm 1) and regression weights (eq. 7, 8, 14)."""

import math

import pytest
import torch

from robust_utils.methods import calibration as cal


def _mixture(seed=0, n=40, d=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + 1.5, torch.randn(n, d, generator=g) - 1])
    y = torch.arange(3).repeat_interleave(n)
    return x, y


def _two_regimes():
    """Two classes separated on 10 low-noise features (std 0.05, gap 1) and not on 10 high-noise
    features (std 3): per-feature (diagonal) likelihoods separate them by hundreds of nats, the
    scalar one by about ||gap||^2 / (2 sum_d s_d) ~ 0.05 nats. Sample 0 (a class-1 point) is labelled 0."""
    g = torch.Generator().manual_seed(1)
    n = 50
    sep = torch.cat([torch.randn(2 * n, 10, generator=g) * 0.05, torch.randn(2 * n, 10, generator=g) * 3], 1)
    sep[:n, :10] += 1.0
    y = torch.cat([torch.ones(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)])
    y[0] = 0
    return sep, y


@pytest.mark.parametrize("variance", ["scalar", "diagonal"])
def test_tau_rows_are_probability_vectors(variance):
    x, y = _mixture()
    c = cal.em_calibrate(x, y, num_classes=3, variance=variance)
    assert c.tau.dtype == torch.float32 and c.tau.shape == (120, 3)
    assert (c.tau >= 0).all() and torch.allclose(c.tau.sum(1), torch.ones(120), atol=1e-6)
    assert c.converged and c.iterations == len(c.changes) >= 1
    assert c.means.shape == (3, 6) and c.variances.shape == ((3,) if variance == "scalar" else (3, 6))
    s = c.summary(y)
    assert s["mean_true_tau"] == pytest.approx(c.mean_true_tau(y)) and 0 <= s["mean_entropy"] <= math.log(3)


@pytest.mark.parametrize("variance", ["scalar", "diagonal"])
def test_m_step_divides_by_sum_tau_and_e_step_is_a_fixed_point(variance):
    # a 1/M M-step (the paper's typo) would shrink every mean by about 1/K
    x, y = _mixture()
    c = cal.em_calibrate(x, y, num_classes=3, variance=variance, tol=1e-9)
    tau, x64 = c.tau.double(), x.double()
    torch.testing.assert_close(c.means, tau.T @ x64 / tau.sum(0)[:, None], rtol=1e-5, atol=1e-5)
    d2 = (x64[:, None, :] - c.means[None]).pow(2)
    if variance == "scalar":
        torch.testing.assert_close(c.variances, (tau * d2.sum(2)).sum(0) / tau.sum(0), rtol=1e-5, atol=1e-5)
        log_g = -d2.sum(2) / (2 * c.variances)
    else:
        log_g = -0.5 * (d2 / c.variances + torch.log(2 * math.pi * c.variances)).sum(2)
    prior = cal.label_smoothing_targets(y, 3, 0.1).double()
    torch.testing.assert_close(tau, torch.softmax(prior.log() + log_g, 1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("variance", ["scalar", "diagonal"])
def test_equivariant_to_permuting_the_samples(variance):
    x, y = _mixture()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    a = cal.em_calibrate(x, y, num_classes=3, variance=variance)
    b = cal.em_calibrate(x[perm], y[perm], num_classes=3, variance=variance)
    torch.testing.assert_close(b.tau, a.tau[perm], rtol=0, atol=1e-6)
    torch.testing.assert_close(b.means, a.means, rtol=0, atol=1e-9)
    assert a.iterations == b.iterations


@pytest.mark.parametrize("variance", ["scalar", "diagonal"])
def test_identical_samples_give_exactly_the_prior(variance):
    x = torch.rand(1, 5).expand(12, 5).clone()
    y = torch.arange(12) % 4
    c = cal.em_calibrate(x, y, num_classes=4, prior=0.7, variance=variance)
    assert torch.equal(c.tau, cal.label_smoothing_targets(y, 4, mass=0.3))
    assert c.converged and c.iterations == 1


def test_mislabelled_point_flips_in_diagonal_mode_only():
    x, y = _two_regimes()
    diag = cal.em_calibrate(x, y, num_classes=2, variance="diagonal")
    scal = cal.em_calibrate(x, y, num_classes=2, variance="scalar")
    assert diag.flips(y) == 1 and diag.tau[0, 1] > 0.99          # moved to its true class
    assert diag.mean_entropy() < 0.01                             # near one-hot everywhere
    assert scal.flips(y) == 0 and abs(scal.tau[0, 0] - 0.9) < 0.02  # scalar: stays at the prior
    assert (scal.tau.max(1).values - 0.9).abs().max() < 0.02
    assert scal.mean_entropy() == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), abs=0.03)


def test_stops_below_tol_and_respects_max_iter():
    x, y = _mixture()
    c = cal.em_calibrate(x, y, num_classes=3, tol=1e-6)
    assert c.converged and c.changes[-1] < 1e-6 <= min(c.changes[:-1])
    assert c.changes == sorted(c.changes, reverse=True)
    loose = cal.em_calibrate(x, y, num_classes=3, tol=1e-2)
    assert loose.iterations < c.iterations and loose.changes == c.changes[:loose.iterations]
    short = cal.em_calibrate(x, y, num_classes=3, tol=1e-6, max_iter=2)
    assert short.iterations == 2 and not short.converged and short.changes == c.changes[:2]


def test_label_smoothing_targets():
    t = cal.label_smoothing_targets(torch.tensor([2, 0]), 5, mass=0.2)
    assert t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([[0.05, 0.05, 0.8, 0.05, 0.05], [0.8, 0.05, 0.05, 0.05, 0.05]]))
    assert torch.equal(cal.label_smoothing_targets(torch.tensor([1]), 3, mass=0.0), torch.tensor([[0.0, 1.0, 0.0]]))


def test_global_weights_hand_computed():
    # mean (0, 0) is a sample; sigma^2 = (1 + 1 + 0 + 4 + 4) / 4 = 2.5
    x = torch.tensor([[-1.0, 0], [1, 0], [0, 0], [0, 2], [0, -2]])
    w = cal.global_weights(x)
    e1, e4 = math.exp(-1 / 5), math.exp(-4 / 5)
    torch.testing.assert_close(w, torch.tensor([e1, e1, 1.0, e4, e4]))
    assert w[2] == 1.0 and w.dtype == torch.float32
    assert torch.equal(cal.global_weights(torch.ones(3, 2)), torch.ones(3))


def _clusters():
    a = torch.tensor([[-1.0, 0], [0, 0], [1, 0]])                                  # sigma^2 = 2/2
    b = torch.tensor([[0.0, -3], [0, -1], [0, 0], [0, 1], [0, 3]]) + 100           # sigma^2 = 20/4
    return torch.cat([a, b, torch.tensor([[-100.0, -100]])])                       # + a singleton


def test_cluster_weights_hand_computed_and_one_at_the_mean():
    r = cal.cluster_weights(_clusters(), clusters=3)
    lab = r.labels.tolist()
    assert len({*lab[:3]}) == len({*lab[3:8]}) == 1 and len({lab[0], lab[3], lab[8]}) == 3
    expected = [math.exp(-0.5), 1, math.exp(-0.5), math.exp(-0.9), math.exp(-0.1), 1, math.exp(-0.1),
                math.exp(-0.9), 1]
    torch.testing.assert_close(r.weights, torch.tensor(expected))
    assert r.weights[1] == r.weights[5] == r.weights[8] == 1.0                  # means and the singleton
    assert r.variances[lab[3]] == pytest.approx(5.0) and r.variances[lab[8]] == 0
    assert ((r.weights > 0) & (r.weights <= 1)).all()


def test_posterior_weights_at_most_one():
    x = _clusters()
    w = cal.posterior_weights(x, clusters=3)
    assert w.shape == (9,) and w.dtype == torch.float32 and ((w > 0) & (w <= 1)).all()
    # well-separated clusters: tau one-hot, sigma^2 the EM's weighted variance (/n): 2/3 and 20/5
    expected = [math.exp(-0.75), 1, math.exp(-0.75), math.exp(-9 / 8), math.exp(-1 / 8), 1, math.exp(-1 / 8),
                math.exp(-9 / 8), 1]
    torch.testing.assert_close(w, torch.tensor(expected))
    g = torch.Generator().manual_seed(0)
    w = cal.posterior_weights(torch.randn(60, 4, generator=g), clusters=4)   # overlapping clusters
    assert ((w > 0) & (w <= 1)).all() and w.max() < 1


def test_bad_arguments():
    x, y = _mixture()
    bad = [
        (dict(x=x[:, 0]), "floating"), (dict(x=x.long()), "floating"), (dict(y=y[:-1]), "int64"),
        (dict(y=y.float()), "int64"), (dict(y=y + 1), r"\[0, 3\)"), (dict(num_classes=1), "num_classes"),
        (dict(prior=1 / 3), "prior"), (dict(prior=1.0), "prior"), (dict(variance="full"), "unknown variance"),
        (dict(tol=0), "tol"), (dict(max_iter=0), "max_iter"), (dict(var_floor=0), "var_floor"),
        (dict(x=torch.full_like(x, float("nan"))), "finite"),
    ]
    for kwargs, match in bad:
        args = dict(x=x, y=y, num_classes=3) | kwargs
        with pytest.raises(ValueError, match=match):
            cal.em_calibrate(**args)
    with pytest.raises(ValueError, match="mass"):
        cal.label_smoothing_targets(y, 3, mass=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        cal.global_weights(x[:1])
    for clusters in (0, 121, 2.0):
        with pytest.raises(ValueError, match="clusters"):
            cal.cluster_weights(x, clusters)
    with pytest.raises(ValueError, match="tol"):
        cal.posterior_weights(x, 2, tol=-1)
    with pytest.raises(ValueError, match="int64"):
        cal.em_calibrate(x, y, num_classes=3).flips(y[:5])


def test_mnist_regimes(mnist_train):
    """2,000 real MNIST images, raw pixels. Scalar: ||x - mu_k||^2 ~ sigma_k^2 (~25-52) for every
    class, so the likelihood ratios are O(1) and tau stays near the prior (measured: mean true tau
    0.921, entropy 0.447 nats, 0 flips). Diagonal: per-pixel variances (floored at 1e-3) give gaps
    of hundreds of nats: tau is one-hot at the best-fitting diagonal Gaussian, a weak classifier on
    pixels (measured: mean true tau 0.591, entropy 0.0002 nats, 818 flips)."""
    x, y = mnist_train
    x = x.flatten(1)
    scalar = cal.em_calibrate(x, y, variance="scalar")
    diag = cal.em_calibrate(x, y, variance="diagonal")
    assert scalar.converged and diag.converged
    assert abs(scalar.mean_true_tau(y) - 0.9) < 0.1 and scalar.flips(y) < 20
    prior_entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1 / 9))
    assert abs(scalar.mean_entropy() - prior_entropy) < 0.2
    assert diag.mean_entropy() < 0.01 and (diag.tau.max(1).values > 0.99).float().mean() > 0.98
    assert diag.flips(y) > 200 and diag.mean_true_tau(y) < 0.8
