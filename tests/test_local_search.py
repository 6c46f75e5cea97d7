"""Tests of robust_utils.attacks.local_search (LocSearchAdv, a black-box greedy local search).

On a small MLP trained on real MNIST (see conftest.py) the attack must fool most images; on
hand-made toy models it must use no gradients, change pixels only by the cyclic rule, probe
exactly the neighbourhoods of the pixels it selected, stop an image as soon as it is fooled,
leave misclassified images alone, be reproducible from its generator and validate first.
Every random draw is seeded, so the whole file is deterministic.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.attacks.local_search import cyclic_update, local_search


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(dim=1)


def cyclic_x(v, r=1.5):
    """One cyclic step in pixel space [0, 1], as the attack writes it."""
    return (cyclic_update(v - 0.5, r) + 0.5).clamp(0.0, 1.0)


def changed_locations(x_adv, x):
    """(N, H, W) bool: pixel locations where any channel differs."""
    return (x_adv != x).any(dim=1)


class Recorder(nn.Module):
    """Wraps a model; keeps a copy of every input it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x):
        self.calls.append(x.detach().clone())
        return self.model(x)


class LinearToy(nn.Module):
    """A fixed random linear model on (C, H, W) images (weights ``scale`` * N(0, 1)); class 0
    gets ``margin`` added to its logit."""

    def __init__(self, shape, k=3, margin=0.0, scale=1.0, seed=0):
        super().__init__()
        g = seeded(seed)
        self.w = nn.Parameter(scale * torch.randn(k, *shape, generator=g))
        self.margin = margin

    def forward(self, x):
        z = (x[:, None] * self.w).flatten(2).sum(dim=2)  # per-sample, independent of the batch
        return z + torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), z.shape[1]) * self.margin


class Threshold(nn.Module):
    """Class 1 as soon as any pixel exceeds 0.5, class 0 otherwise."""

    def forward(self, x):
        m = x.flatten(1).amax(dim=1)
        return torch.stack([torch.zeros_like(m), 10 * (m - 0.5)], dim=1)


class Forbidden(nn.Module):
    def forward(self, x):
        raise AssertionError("the model must not be called")


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def mlp(trained_mlp):
    return trained_mlp


@pytest.fixture(scope="module")
def correct(mlp, mnist_test, first_correct):
    """The first 100 test images the MLP classifies correctly."""
    return first_correct(mlp, *mnist_test)


# ------------------------------------------------------------------------------ on real MNIST

def test_fools_undefended_mlp_with_few_pixels(mlp, correct):
    x, y = correct
    x_adv = local_search(mlp, x, y, generator=seeded(0))
    fooled = predict(mlp, x_adv) != y
    # measured: 100% of 100 images, a median of ~16 changed pixels (of 784)
    assert fooled.float().mean() >= 0.8
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    n_changed = changed_locations(x_adv, x).flatten(1).sum(dim=1)
    assert n_changed[fooled].float().median() <= 40


def test_foolbox_18_lowest_rule_is_much_weaker(mlp, correct):
    """Foolbox 1.8 kept the t lowest probe scores (issue #237, fixed in PR #396)."""
    x, y = correct
    rate = {s: (predict(mlp, local_search(mlp, x, y, R=20, select=s, generator=seeded(0))) != y).float().mean()
            for s in ("highest", "lowest")}
    # measured: 1.00 vs 0.00
    assert rate["highest"] >= 0.8 and rate["lowest"] <= 0.3


def test_never_queries_gradients(mlp, correct):
    class NoGrad(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.n = model, 0

        def forward(self, x):
            assert not torch.is_grad_enabled()
            assert not x.requires_grad
            self.n += 1
            return self.model(x)

    x, y = correct
    x, y = x[:10], y[:10]
    wrapped = NoGrad(mlp)
    xg = x.clone().requires_grad_(True)
    grads = [None if q.grad is None else q.grad.clone() for q in mlp.parameters()]
    with torch.enable_grad():
        x_adv = local_search(wrapped, xg, y, R=3, generator=seeded(0))
    assert wrapped.n >= 3
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    for q, g in zip(mlp.parameters(), grads):  # fit leaves .grad set: it must not move
        assert (q.grad is None) if g is None else torch.equal(q.grad, g)


# ----------------------------------------------------------------------------- on toy models

def test_changes_pixels_only_by_thecyclic_update_rule():
    shape, t, R = (3, 6, 10), 3, 4
    model = LinearToy(shape, margin=20.0, scale=0.1)  # never fooled: every image runs all R rounds
    x = torch.rand(8, *shape, generator=seeded(1))
    y = torch.zeros(8, dtype=torch.long)
    x_adv = local_search(model, x, y, t=t, R=R, d=1, generator=seeded(2))
    n_loc = changed_locations(x_adv, x).flatten(1).sum(dim=1)
    assert torch.all(n_loc >= t) and torch.all(n_loc <= t * R)
    # every changed value is k cyclic steps from the original, 1 <= k <= R
    steps, v = [], x
    for _ in range(R):
        v = cyclic_x(v)
        steps.append(v)
    reachable = torch.stack([(s - x_adv).abs() <= 1e-6 for s in steps]).any(dim=0)
    changed = x_adv != x
    assert changed.sum() >= 8 * t
    assert torch.all(reachable[changed])


@pytest.mark.parametrize("select", ["highest", "lowest"])
def test_selects_by_probe_score_and_probes_the_neighbourhood(select):
    shape, t, d = (2, 6, 10), 2, 1
    # in-box changes move the logits by < 10: never fooled; probes (+-10) move them a lot
    model = Recorder(LinearToy(shape, k=3, margin=10.0, scale=0.1, seed=3))
    x = torch.rand(1, *shape, generator=seeded(4))
    y = torch.zeros(1, dtype=torch.long)
    local_search(model, x, y, t=t, d=d, R=2, generator=seeded(5), select=select)
    # calls: clean, probes round 1, check round 1, probes round 2, check round 2
    assert len(model.calls) == 5
    probes1, check1, probes2 = model.calls[1], model.calls[2], model.calls[3]

    def probe_locations(probes):
        out = (probes < 0) | (probes > 1)
        assert torch.all(out.flatten(1).sum(dim=1) == shape[0])  # one pixel, all its channels
        return [tuple(q) for q in out.any(dim=1).nonzero()[:, 1:].tolist()]

    loc1 = probe_locations(probes1)
    assert len(loc1) == int(0.1 * 6 * 10) == len(set(loc1))
    # probe values: 0.5 + p * sign(x - 0.5)
    sel = (probes1 < 0) | (probes1 > 1)
    assert torch.equal(probes1[sel], (0.5 + 10.0 * torch.sign(x.expand_as(probes1) - 0.5))[sel])
    # the t selected locations are those with the highest / lowest softmax score of y
    with torch.no_grad():
        score = model.model(probes1).softmax(dim=1)[:, 0]
    order = score.argsort(descending=(select == "highest"))[:t]
    expected = {loc1[i] for i in order.tolist()}
    chosen = {tuple(q) for q in changed_locations(check1, x)[0].nonzero().tolist()}
    assert chosen == expected
    # round 2 probes exactly the (2d+1) x (2d+1) neighbourhoods of the chosen pixels, clipped
    neigh = {(i + a, j + b) for i, j in chosen for a in range(-d, d + 1) for b in range(-d, d + 1)
             if 0 <= i + a < 6 and 0 <= j + b < 10}
    loc2 = probe_locations(probes2)
    assert len(loc2) == len(set(loc2)) and set(loc2) == neigh


def test_initial_candidates_and_per_round_cap(mlp, correct):
    x, y = correct
    x, y = x[:4], y[:4]
    rec = Recorder(mlp)
    local_search(rec, x, y, R=3, generator=seeded(0), batch_size=100_000)
    sizes = [len(c) for c in rec.calls]
    assert sizes[0] == 4 and sizes[1] == 4 * 78  # int(0.1 * 784) locations per image
    probe_sizes = sizes[3::2]
    n_active = sizes[2::2]
    assert all(s <= 128 * n for s, n in zip(probe_sizes, n_active))


def test_misclassified_unchanged_and_early_stop():
    t = 5
    x = 0.16 * torch.rand(6, 1, 12, 12, generator=seeded(0))  # u < -1/3: one cyclic step lands above 0.5
    x[0, 0, 3, 4] = 0.9  # misclassified at the start
    y = torch.zeros(6, dtype=torch.long)
    rec = Recorder(Threshold())
    x_adv = local_search(rec, x, y, t=t, R=10, generator=seeded(1), batch_size=100_000)
    assert torch.equal(x_adv[0], x[0])
    assert torch.all(predict(Threshold(), x_adv[1:]) == 1)
    n_loc = changed_locations(x_adv, x).flatten(1).sum(dim=1)
    assert n_loc.tolist() == [0] + [t] * 5  # fooled in round 1: exactly t pixels, no more rounds
    changed = x_adv != x
    assert torch.equal(x_adv[changed], cyclic_x(x)[changed])  # one cyclic step
    assert len(rec.calls) == 3 and len(rec.calls[1]) == 5 * int(0.1 * 144)  # the misfit is not probed


def test_reproducible_and_chunking_invariant():
    shape = (1, 8, 8)
    model = LinearToy(shape, k=4, seed=7)
    x = torch.rand(6, *shape, generator=seeded(8))
    y = predict(model, x)
    a = local_search(model, x, y, R=6, generator=seeded(9))
    b = local_search(model, x, y, R=6, generator=seeded(9))
    c = local_search(model, x, y, R=6, generator=seeded(9), batch_size=7)
    other = local_search(model, x, y, R=6, generator=seeded(10))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, other)
    assert not torch.equal(a, x)


def test_contract_mode_input_dtype():
    shape = (1, 8, 8)
    model = LinearToy(shape, k=4, seed=7).double().train()
    x = torch.rand(5, *shape, generator=seeded(8), dtype=torch.float64)
    y = predict(model, x)
    x0 = x.clone()
    x_adv = local_search(model, x, y, R=3, generator=seeded(0))
    assert model.training
    assert torch.equal(x, x0)
    assert x_adv.dtype == torch.float64 and x_adv.shape == x.shape and x_adv.data_ptr() != x.data_ptr()
    with torch.inference_mode():
        x_inf = local_search(model, x, y, R=3, generator=seeded(0))
    assert torch.equal(x_inf, x_adv)
    empty = local_search(Forbidden(), x[:0], y[:0])
    assert empty.shape == (0, *shape)


@pytest.mark.parametrize("kwargs", [
    dict(r=2.5), dict(r=-0.1), dict(r=float("nan")), dict(p=0.0), dict(p=-1.0), dict(d=-1), dict(d=1.5),
    dict(t=0), dict(t=2.0), dict(R=0), dict(max_candidates=0), dict(batch_size=0), dict(select="median"),
    dict(generator=0),
])
def test_bad_arguments_raise_before_the_model_is_called(kwargs):
    x = torch.rand(2, 1, 8, 8, generator=seeded(0))
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError):
        local_search(Forbidden(), x, y, **kwargs)


@pytest.mark.parametrize("x, y", [
    (torch.rand(2, 8, 8), torch.zeros(2, dtype=torch.long)),  # 3-dim
    (torch.rand(2, 1, 8, 8) + 1, torch.zeros(2, dtype=torch.long)),  # outside [0, 1]
    (torch.randint(0, 2, (2, 1, 8, 8)), torch.zeros(2, dtype=torch.long)),  # not float
    (torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.int32)),  # labels not int64
    (torch.rand(2, 1, 8, 8), torch.zeros(3, dtype=torch.long)),  # wrong length
])
def test_bad_inputs_raise_before_the_model_is_called(x, y):
    with pytest.raises(ValueError):
        local_search(Forbidden(), x, y)


@pytest.mark.parametrize("u, r, expected", [
    (-0.5, 1.5, 0.25), (0.5, 1.5, -0.25), (0.2, 1.5, 0.3), (0.4, 1.5, -0.4), (-0.4, 1.5, 0.4),
    (0.3, 1.5, 0.45), (0.5, 2.0, 0.0), (-0.5, 2.0, 0.0), (0.37, 1.0, 0.37), (0.37, 0.0, 0.0), (0.0, 1.5, 0.0),
])
def testcyclic_update_wrap_hand_values(u, r, expected):
    out = cyclic_update(torch.tensor([u], dtype=torch.float64), r)
    assert abs(out.item() - expected) < 1e-12
    assert -0.5 <= out.item() <= 0.5
