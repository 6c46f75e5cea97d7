"""Tests of robust_utils.attacks on a small LeNet-5 trained on real MNIST (see conftest.py).

Each test asserts a property that a wrong attack could fail: the budget and the box, strength
orderings between attacks, the restart rule, the CW margin, DeepFool's boundary crossing, and
the common contract (mode, parameter gradients, input left intact, validation first).
Every random start is seeded, so the whole file is deterministic.
"""

from __future__ import annotations

import copy

import pytest
import torch

from robust_utils.attacks import cw_l2, deepfool, fgsm, pgd
from robust_utils.attacks.grad import input_gradient
from robust_utils.core.losses import cross_entropy, hr_loss

TOL = 1e-6


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(dim=1)


def acc(model, x, y):
    return (predict(model, x) == y).float().mean().item()


def l2(delta):
    return delta.flatten(1).norm(dim=1)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch(mnist_test):
    """The first 200 of the 500 class-balanced test images."""
    x, y = mnist_test
    return x[:200], y[:200]


@pytest.fixture(scope="module")
def correct(trained_lenet, batch, first_correct):
    """The first 100 of those that trained_lenet classifies correctly."""
    return first_correct(trained_lenet, *batch)


# --------------------------------------------------------------------------------------- FGSM

def test_fgsm_moves_each_pixel_by_eps_within_box(trained_lenet, batch):
    x, y = batch
    eps = 0.1
    x_adv = fgsm(trained_lenet, x, y, eps)
    delta = x_adv - x
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert delta.abs().max() <= eps + TOL
    _, grad = input_gradient(trained_lenet, x, y, cross_entropy)
    target = x + eps * grad.sign()
    free = (grad != 0) & (target >= 0) & (target <= 1)  # pixels the box does not clip
    assert free.float().mean() > 0.2
    assert torch.allclose(delta[free].abs(), torch.full_like(delta[free], eps), atol=TOL)
    assert torch.all(delta[free].sign() == grad[free].sign())
    assert torch.all(delta[grad == 0] == 0)
    # clipped pixels end on the box boundary
    clipped = (grad != 0) & ~free
    assert torch.all((x_adv[clipped] == 0) | (x_adv[clipped] == 1))


def test_fgsm_eps_zero_returns_x(trained_lenet, batch):
    x, y = batch
    x_adv = fgsm(trained_lenet, x, y, 0.0)
    assert torch.equal(x_adv, x) and x_adv.data_ptr() != x.data_ptr()


def test_fgsm_lowers_accuracy(trained_lenet, batch):
    x, y = batch
    clean = acc(trained_lenet, x, y)
    assert clean > 0.85
    assert acc(trained_lenet, fgsm(trained_lenet, x, y, 0.2), y) < clean - 0.4


def test_fgsm_with_hr_loss(trained_lenet, batch):
    x, y = batch
    eps = 0.1
    a_ce = fgsm(trained_lenet, x, y, eps)
    a_hr = fgsm(trained_lenet, x, y, eps, loss_fn=hr_loss)
    assert (a_ce != a_hr).any()
    assert (a_hr - x).abs().max() <= eps + TOL
    assert a_hr.min() >= 0 and a_hr.max() <= 1


# ---------------------------------------------------------------------------------------- PGD

def test_pgd_linf_in_ball_and_at_least_as_strong_as_fgsm(trained_lenet, batch):
    x, y = batch
    eps = 0.1
    x_adv = pgd(trained_lenet, x, y, eps, alpha=0.01, steps=40, generator=seeded(0))
    assert (x_adv - x).abs().max() <= eps + TOL
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    acc_pgd = acc(trained_lenet, x_adv, y)
    acc_fgsm = acc(trained_lenet, fgsm(trained_lenet, x, y, eps), y)
    assert acc_pgd <= acc_fgsm
    assert acc_pgd < acc(trained_lenet, x, y) - 0.2


def test_pgd_more_restarts_never_weaker(trained_lenet, batch):
    x, y = batch
    kw = dict(eps=0.1, alpha=0.01, steps=10)
    a1 = pgd(trained_lenet, x, y, restarts=1, generator=seeded(3), **kw)
    a3 = pgd(trained_lenet, x, y, restarts=3, generator=seeded(3), **kw)
    fooled1 = predict(trained_lenet, a1) != y
    fooled3 = predict(trained_lenet, a3) != y
    assert 0 < fooled1.sum() < len(y)  # the comparison is not trivial
    assert torch.all(fooled3[fooled1])  # every sample fooled by restart 1 stays fooled ...
    assert torch.equal(a3[fooled1], a1[fooled1])  # ... by the same image (first success is kept)
    assert (a3 - x).abs().max() <= 0.1 + TOL
    assert acc(trained_lenet, a3, y) <= acc(trained_lenet, a1, y)


def test_pgd_restart_keeps_highest_ce_when_none_succeeds(trained_lenet, correct):
    """With a budget too small to fool anything, restarts keep the highest per-sample CE."""
    x, y = correct
    x, y = x[:40], y[:40]
    kw = dict(eps=0.002, alpha=0.001, steps=2)
    ce = lambda a: torch.nn.functional.cross_entropy(trained_lenet(a), y, reduction="none").detach()
    a1 = pgd(trained_lenet, x, y, restarts=1, generator=seeded(5), **kw)
    a4 = pgd(trained_lenet, x, y, restarts=4, generator=seeded(5), **kw)
    unfooled = (predict(trained_lenet, a4) == y) & (predict(trained_lenet, a1) == y)
    assert unfooled.sum() > 30
    assert torch.all(ce(a4)[unfooled] >= ce(a1)[unfooled] - 1e-6)
    assert (ce(a4)[unfooled] > ce(a1)[unfooled]).any()


def test_pgd_reproducible_with_seeded_generator(trained_lenet, batch):
    x, y = batch
    x, y = x[:50], y[:50]
    kw = dict(eps=0.1, alpha=0.02, steps=5)
    a = pgd(trained_lenet, x, y, generator=seeded(7), **kw)
    b = pgd(trained_lenet, x, y, generator=seeded(7), **kw)
    c = pgd(trained_lenet, x, y, generator=seeded(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # BIM (no random start) is deterministic without a generator
    d = pgd(trained_lenet, x, y, random_start=False, **kw)
    e = pgd(trained_lenet, x, y, random_start=False, **kw)
    assert torch.equal(d, e)


def test_pgd_l2_in_ball_and_lowers_accuracy(trained_lenet, batch):
    x, y = batch
    eps = 2.0
    x_adv = pgd(trained_lenet, x, y, eps, alpha=0.25, steps=20, norm="2", generator=seeded(0))
    norms = l2(x_adv - x)
    assert torch.all(norms <= eps + 1e-4)
    assert norms.max() > 0.9 * eps  # the budget is actually used
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert acc(trained_lenet, x_adv, y) < acc(trained_lenet, x, y) - 0.4


def test_pgd_l2_random_start_in_ball(trained_lenet, batch):
    """One step of size ~0 leaves the random start (clipped to the box) inside the L2 ball."""
    x, y = batch
    x_adv = pgd(trained_lenet, x[:50], y[:50], 1.0, alpha=1e-9, steps=1, norm="2", generator=seeded(1))
    norms = l2(x_adv - x[:50])
    assert torch.all(norms <= 1.0 + 1e-4) and torch.all(norms > 0)


# ------------------------------------------------------------------------------------- CW-L2

def test_cw_l2_fools_almost_all_or_returns_x(trained_lenet, correct):
    x, y = correct
    # lr 0.05: with 100 steps the default lr 0.01 barely moves pixels saturated at 0 or 1 (tanh space)
    x_adv = cw_l2(trained_lenet, x, y, steps=100, binary_search_steps=5, lr=0.05)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    fooled = predict(trained_lenet, x_adv) != y
    unchanged = (x_adv == x).flatten(1).all(dim=1)
    assert torch.all(fooled | unchanged)
    assert fooled.float().mean() >= 0.9
    dist = l2(x_adv - x)[fooled]
    assert dist.mean() < 3.0  # minimal-distance attack: far smaller than the image norms (~9)


def test_cw_l2_kappa_gives_logit_margin(trained_lenet, correct):
    x, y = correct
    x, y = x[:30], y[:30]
    kappa = 2.0
    x_adv = cw_l2(trained_lenet, x, y, kappa=kappa, steps=60, binary_search_steps=4, lr=0.05)
    with torch.no_grad():
        z = trained_lenet(x_adv)
    z_y = z.gather(1, y[:, None]).squeeze(1)
    z_other = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    fooled = z.argmax(1) != y
    assert fooled.float().mean() >= 0.8
    assert torch.all(z_other[fooled] - z_y[fooled] >= kappa - 1e-3)
    unchanged = (x_adv == x).flatten(1).all(dim=1)
    assert torch.all(fooled | unchanged)


def test_cw_l2_failures_get_x_back(trained_lenet, correct):
    """A budget far too small to fool anything returns the original images exactly."""
    x, y = correct
    x, y = x[:20], y[:20]
    x_adv = cw_l2(trained_lenet, x, y, c=1e-3, steps=3, binary_search_steps=1)
    fooled = predict(trained_lenet, x_adv) != y
    unchanged = (x_adv == x).flatten(1).all(dim=1)
    assert torch.all(fooled | unchanged)
    assert unchanged.sum() >= 18


# ----------------------------------------------------------------------------------- DeepFool

def test_deepfool_crosses_boundary_with_small_perturbation(trained_lenet, correct):
    x, y = correct
    x_adv = deepfool(trained_lenet, x, y, steps=50)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (predict(trained_lenet, x_adv) != y).float().mean() >= 0.95
    r = l2(x_adv - x)
    r_fgsm = l2(fgsm(trained_lenet, x, y, 0.3) - x)
    assert r.mean() < 0.5 * r_fgsm.mean()


def test_deepfool_overshoot_enlarges_perturbation(trained_lenet, correct):
    x, y = correct
    r0 = l2(deepfool(trained_lenet, x, y, overshoot=0.0) - x)
    r2 = l2(deepfool(trained_lenet, x, y, overshoot=0.02) - x)
    assert r2.mean() >= r0.mean()


def test_deepfool_leaves_misclassified_samples(trained_lenet, batch):
    x, y = batch
    wrong = predict(trained_lenet, x) != y
    assert wrong.any()
    x_adv = deepfool(trained_lenet, x[wrong], y[wrong], steps=3)
    assert torch.equal(x_adv, x[wrong])


def test_deepfool_forwards_only_active_samples(trained_lenet, batch):
    x, y = batch
    sizes = []

    class Recorder(torch.nn.Module):
        def forward(self, inp):
            sizes.append(inp.shape[0])
            return trained_lenet(inp)

    wrong = predict(trained_lenet, x) != y
    x_adv = deepfool(Recorder(), x[:60], y[:60], steps=50)
    assert sizes[0] == 60
    assert sizes[1] == 60 - int(wrong[:60].sum())  # misclassified samples are dropped at once
    assert all(a >= b for a, b in zip(sizes, sizes[1:])) and sizes[-1] < sizes[1]
    assert (predict(trained_lenet, x_adv) != y[:60]).float().mean() >= 0.95


def test_deepfool_num_classes_subset(trained_lenet, correct):
    x, y = correct
    x, y = x[:30], y[:30]
    x_adv = deepfool(trained_lenet, x, y, num_classes=2)
    assert (predict(trained_lenet, x_adv) != y).float().mean() >= 0.9


# ------------------------------------------------------------------------------ the contract

ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, 0.1),
    "pgd_inf": lambda m, x, y: pgd(m, x, y, 0.1, 0.02, 3, generator=seeded(0)),
    "pgd_2": lambda m, x, y: pgd(m, x, y, 1.0, 0.2, 3, norm="2", generator=seeded(0)),
    "cw_l2": lambda m, x, y: cw_l2(m, x, y, steps=5, binary_search_steps=2),
    "deepfool": lambda m, x, y: deepfool(m, x, y, steps=3),
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_contract_mode_grads_input_output(name, mode, trained_lenet, batch):
    model = copy.deepcopy(trained_lenet)
    model.train(mode == "train")
    for p in model.parameters():
        p.grad = None
    x, y = batch
    x, y = x[:16].clone(), y[:16].clone()
    x_before, y_before = x.clone(), y.clone()
    x_adv = ATTACKS[name](model, x, y)
    assert all(m.training == (mode == "train") for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.data_ptr() != x.data_ptr()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)  # it did attack


def test_input_gradient_matches_backward_and_leaves_params(trained_lenet, batch):
    model = copy.deepcopy(trained_lenet)
    for p in model.parameters():
        p.grad = None
    x, y = batch
    x, y = x[:8], y[:8]
    loss, grad = input_gradient(model, x, y, cross_entropy)
    assert all(p.grad is None for p in model.parameters())
    xr = x.clone().requires_grad_(True)
    ref = cross_entropy(model(xr), y)
    ref.backward()
    assert torch.allclose(loss, ref.detach()) and torch.allclose(grad, xr.grad)
    assert not x.requires_grad


def test_attacks_refuse_inference_mode(trained_lenet, batch):
    x, y = batch
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="inference_mode"):
            fgsm(trained_lenet, x[:4], y[:4], 0.1)


class _Forbidden(torch.nn.Module):
    """A model that fails the test if the attack runs it (validation must come first)."""

    def forward(self, x):
        raise AssertionError("the model was called before the arguments were validated")


BAD_CALLS = {
    "fgsm_neg_eps": lambda m, x, y: fgsm(m, x, y, -0.1),
    "fgsm_linf_eps_gt_1": lambda m, x, y: fgsm(m, x, y, 1.5),
    "pgd_neg_eps": lambda m, x, y: pgd(m, x, y, -0.1, 0.01, 5),
    "pgd_linf_eps_gt_1": lambda m, x, y: pgd(m, x, y, 1.5, 0.01, 5),
    "pgd_unknown_norm": lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 5, norm="1"),
    "pgd_zero_alpha": lambda m, x, y: pgd(m, x, y, 0.1, 0.0, 5),
    "pgd_zero_steps": lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 0),
    "pgd_zero_restarts": lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 5, restarts=0),
    "cw_zero_steps": lambda m, x, y: cw_l2(m, x, y, steps=0),
    "cw_neg_kappa": lambda m, x, y: cw_l2(m, x, y, kappa=-1.0),
    "cw_zero_c": lambda m, x, y: cw_l2(m, x, y, c=0.0),
    "cw_zero_binary_steps": lambda m, x, y: cw_l2(m, x, y, binary_search_steps=0),
    "deepfool_zero_steps": lambda m, x, y: deepfool(m, x, y, steps=0),
    "deepfool_neg_overshoot": lambda m, x, y: deepfool(m, x, y, overshoot=-0.1),
    "deepfool_zero_classes": lambda m, x, y: deepfool(m, x, y, num_classes=0),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_arguments_raise_before_work(name, batch):
    x, y = batch
    with pytest.raises(ValueError):
        BAD_CALLS[name](_Forbidden(), x[:4], y[:4])


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("problem", ["x_above_1", "x_below_0", "y_int32", "y_wrong_length"])
def test_bad_inputs_raise_before_work(name, problem, batch):
    x, y = batch
    x, y = x[:4].clone(), y[:4].clone()
    if problem == "x_above_1":
        x[0, 0, 0, 0] = 1.5
    elif problem == "x_below_0":
        x[1, 0, 3, 3] = -0.01
    elif problem == "y_int32":
        y = y.to(torch.int32)
    else:
        y = y[:3]
    with pytest.raises(ValueError):
        ATTACKS[name](_Forbidden(), x, y)


def test_deepfool_and_local_search_report_their_own_successes(trained_mlp, mnist_test):
    """``return_success``: the attack's own count, the same images either way; on a deterministic
    model it agrees with classifying the returned images."""
    from robust_utils.attacks import local_search
    from robust_utils.evaluation import predict

    x, y = mnist_test[0][:40], mnist_test[1][:40]
    x_df, ok_df = deepfool(trained_mlp, x, y, steps=20, return_success=True)
    assert torch.equal(x_df, deepfool(trained_mlp, x, y, steps=20))
    assert torch.equal(ok_df, predict(trained_mlp, x_df) != y) and ok_df.dtype == torch.bool
    x_ls, ok_ls = local_search(trained_mlp, x[:10], y[:10], R=5, generator=torch.Generator().manual_seed(0),
                               return_success=True)
    assert torch.equal(ok_ls, predict(trained_mlp, x_ls) != y[:10])
    assert torch.equal(x_ls, local_search(trained_mlp, x[:10], y[:10], R=5, generator=torch.Generator().manual_seed(0)))
