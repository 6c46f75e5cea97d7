"""Matyasko & Chau (2018): eq. 7's attack (loop and unrolled), the critic, its objective, rho_adv (eq. 8)."""

import math

import pytest
import torch
from torch import nn

from robust_utils import attacks, evaluation, training
from robust_utils.methods.critic import AdversaryCritic, ClassConfidence, Critic, critic_loss, gradient_penalty


def small_mlp(seed=0, k=10, d=784, h=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k))


def linear_model(w, b):
    """z = W x + b on flattened x, W (K, D)."""
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return nn.Sequential(nn.Flatten(), lin)


def mid_images(n, seed=0, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, *shape, generator=g)


# --- the straight-through indicator --------------------------------------------------------------

def test_straight_through_indicator_forward_is_the_indicator_and_backward_the_sigmoid():
    z = torch.tensor([-3.0, -0.1, 0.2, 4.0], requires_grad=True)
    s = attacks.straight_through_indicator(z)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    sig = torch.sigmoid(z.detach())
    torch.testing.assert_close(z.grad, sig * (1 - sig))
    assert bool((z.grad > 0).all())  # gradient passes even where the indicator is 0


# --- the target rule ------------------------------------------------------------------------------

def test_closest_target_on_a_linear_model_is_the_closed_form_argmin():
    torch.manual_seed(1)
    k, d = 5, 12
    w, b = torch.randn(k, d), torch.randn(k)
    model = linear_model(w, b)
    x = torch.rand(20, 1, 3, 4)
    labels = model(x).argmax(1)
    z = x.flatten(1) @ w.T + b
    dist = (z - z.gather(1, labels[:, None])).abs() / (w[None] - w[labels][:, None]).norm(dim=2)
    dist.scatter_(1, labels[:, None], math.inf)
    t = attacks.closest_target(model, x, labels)
    assert torch.equal(t, dist.argmin(1))
    assert bool((t != labels).all())


# --- the test-time loop ---------------------------------------------------------------------------

def test_high_confidence_reaches_the_target_with_the_requested_confidence_inside_the_box(trained_mlp, mnist_test):
    model = trained_mlp
    x = mnist_test[0][:16]
    labels = model(x).argmax(1)
    t = attacks.closest_target(model, x, labels)
    x_adv = attacks.high_confidence(model, x, t, confidence=0.9, steps=500, max_step=0.5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    p = model(x_adv).softmax(1)
    assert bool((p.argmax(1) == t).all())
    assert bool((p.gather(1, t[:, None]).squeeze(1) >= 0.9).all())


def test_high_confidence_steps_are_clipped_to_max_step():
    model = small_mlp()
    x = torch.rand(8, 1, 28, 28)
    for steps in (1, 3):
        x_adv = attacks.high_confidence(model, x, confidence=0.99, steps=steps, max_step=0.1, overshoot=0.02)
        dist = (x_adv - x).flatten(1).norm(dim=1)
        assert bool((dist <= steps * 0.1 * 1.02 + 1e-5).all())
        assert bool((dist > 0).any())


def test_high_confidence_defaults_to_the_clean_confidence_and_leaves_target_equal_label_unchanged():
    model = small_mlp()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        p0 = model(x).softmax(1)
    labels = p0.argmax(1)
    x_adv = attacks.high_confidence(model, x)
    t = attacks.closest_target(model, x, labels)
    p = model(x_adv).softmax(1)
    assert bool((p.argmax(1) == t).all())
    assert bool((p.gather(1, t[:, None]).squeeze(1) >= p0.max(1).values - 1e-6).all())
    same = attacks.high_confidence(model, x, targets=labels, confidence=0.9)
    assert torch.equal(same, x)


def test_high_confidence_rejects_bad_input():
    model = small_mlp()
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="confidence"):
        attacks.high_confidence(model, x, confidence=1.0)
    with pytest.raises(ValueError, match="max_step"):
        attacks.high_confidence(model, x, max_step=0)
    with pytest.raises(ValueError, match="targets"):
        attacks.high_confidence(model, x, targets=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="box"):
        attacks.high_confidence(model, x * 2)


# --- the unrolled, differentiable form -----------------------------------------------------------

def test_unrolled_attack_is_differentiable_with_respect_to_the_classifier_weights():
    model = small_mlp()
    x = torch.rand(4, 1, 28, 28)
    labels = model(x).argmax(1)
    t = attacks.closest_target(model, x, labels)
    x_adv = attacks.high_confidence_unrolled(model, x, t, 0.9, steps=5)
    assert x_adv.requires_grad
    grads = torch.autograd.grad(x_adv.pow(2).sum(), list(model.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # the first layer's weights are reached only through w = grad_x log p_t: a second-order path
    assert grads[0].abs().sum() > 0


def test_unrolled_attack_matches_the_loop_when_unrolled_far_enough():
    model = small_mlp(seed=3)
    x = mid_images(8, seed=3)
    labels = model(x).argmax(1)
    t = attacks.closest_target(model, x, labels)
    conf = 0.8  # > 1/2: p_t >= C then implies that t is predicted, the loop's other stop condition
    unrolled = attacks.high_confidence_unrolled(model, x, t, conf, steps=60, overshoot=0.02)
    loop = attacks.high_confidence(model, x, t, conf, steps=60, max_step=None, overshoot=0.02, box=False)
    p = model(loop).softmax(1).gather(1, t[:, None])
    assert bool((p >= conf).all())  # both converged
    torch.testing.assert_close(unrolled.detach(), loop, atol=1e-5, rtol=1e-4)


def test_unrolled_attack_stops_once_the_confidence_is_reached():
    model = small_mlp(seed=4)
    x = mid_images(6, seed=4)
    labels = model(x).argmax(1)
    t = attacks.closest_target(model, x, labels)
    a = attacks.high_confidence_unrolled(model, x, t, 0.8, steps=30).detach()
    b = attacks.high_confidence_unrolled(model, x, t, 0.8, steps=60).detach()
    torch.testing.assert_close(a, b)  # converged samples are frozen by the indicator


# --- the critic -----------------------------------------------------------------------------------

def test_gradient_penalty_is_zero_for_a_critic_with_unit_norm_input_gradient():
    torch.manual_seed(0)
    w = torch.randn(3, 20)
    w = w / w.norm(dim=1, keepdim=True)  # each class logit has input gradient of norm exactly 1
    critic = linear_model(w, torch.zeros(3))
    x = torch.rand(5, 1, 4, 5)
    classes = torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(gradient_penalty(critic, x, classes), torch.zeros(5), atol=1e-10, rtol=0)
    doubled = linear_model(2 * w, torch.zeros(3))
    torch.testing.assert_close(gradient_penalty(doubled, x, classes), torch.ones(5))  # (2 - 1)^2


def test_gradient_penalty_is_differentiable_for_the_critic():
    critic = Critic(in_features=16, widths=(8,), num_classes=3)
    x = torch.rand(4, 1, 4, 4)
    gp = gradient_penalty(critic, x, torch.tensor([0, 1, 2, 0])).mean()
    grads = torch.autograd.grad(gp, list(critic.parameters()), allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0


def test_critic_is_noisy_and_uses_the_label_only_in_the_last_layer():
    torch.manual_seed(0)
    critic = Critic(in_features=16, widths=(8, 8), num_classes=3)
    x = torch.rand(4, 1, 4, 4)
    assert not torch.equal(critic(x), critic(x))  # noise in training and at test
    quiet = Critic(in_features=16, widths=(8, 8), num_classes=3, input_noise=0, hidden_noise=0)
    torch.testing.assert_close(quiet(x), quiet(x))
    assert quiet.out.out_features == 3 and all(layer.out_features == 8 for layer in quiet.hidden)


def test_critic_loss_is_the_two_binary_cross_entropies_plus_the_penalty():
    quiet = Critic(in_features=16, widths=(8,), num_classes=3, input_noise=0, hidden_noise=0)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    xa, ya = torch.rand(3, 1, 4, 4), torch.tensor([2, 2, 1])
    z_real = quiet(x).gather(1, y[:, None]).squeeze(1)
    z_adv = quiet(xa).gather(1, ya[:, None]).squeeze(1)
    bce = nn.functional.softplus(-z_real).mean() + nn.functional.softplus(z_adv).mean()
    torch.testing.assert_close(critic_loss(quiet, x, y, xa, ya, penalty=0.0), bce)
    gp = gradient_penalty(quiet, x, y).mean() + gradient_penalty(quiet, xa, ya).mean()
    torch.testing.assert_close(critic_loss(quiet, x, y, xa, ya, penalty=10.0), bce + 10 * gp)


def test_class_confidence_is_a_per_class_exponential_moving_average():
    cc = ClassConfidence(num_classes=3, decay=0.5)
    with pytest.raises(RuntimeError):
        cc(torch.tensor([0]))
    p1 = torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    cc.update(p1)  # class 0: mean(0.8, 0.6) = 0.7; class 1: 0.7; class 2 absent: batch mean 0.7
    torch.testing.assert_close(cc(torch.tensor([0, 1, 2])), torch.tensor([0.7, 0.7, 0.7]))
    p2 = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    cc.update(p2)  # class 0 -> 0.5*0.7 + 0.5*0.9; class 1 absent: kept; class 2 -> 0.5*0.7 + 0.5*0.8
    torch.testing.assert_close(cc(torch.tensor([0, 1, 2])), torch.tensor([0.8, 0.7, 0.75]))
    with pytest.raises(ValueError):
        ClassConfidence(3, decay=1.0)


def test_adversary_critic_objective_trains_both_networks_and_is_cached(tmp_path):
    torch.manual_seed(0)
    model = small_mlp(seed=5)
    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,))

    def make():
        torch.manual_seed(1)
        return AdversaryCritic(Critic(widths=(16,)), lam=0.5, critic_lr_schedule={"step_size": 1, "gamma": 0.5})

    obj = make()
    critic_before = [p.detach().clone() for p in obj.critic.parameters()]
    model_before = [p.detach().clone() for p in model.parameters()]
    res = training.fit(model, x, y, objective=obj, optimizer={"name": "adam", "lr": 5e-4, "betas": (0.5, 0.999)},
                    lr_schedule={"step_size": 1, "gamma": 0.5}, epochs=2, batch_size=20, cache_dir=tmp_path,
                    progress=False)
    assert not res.from_cache
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, obj.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(model_before, model.parameters()))
    for name in ("critic_loss", "critic_gan", "cycle_l2", "attack_changed", "attack_l2"):
        assert len(res.history[name]) == 2 and all(math.isfinite(v) for v in res.history[name])
    assert obj.opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)  # critic lr halved per epoch here

    model2 = small_mlp(seed=5)
    obj2 = make()
    res2 = training.fit(model2, x, y, objective=obj2, optimizer={"name": "adam", "lr": 5e-4, "betas": (0.5, 0.999)},
                     lr_schedule={"step_size": 1, "gamma": 0.5}, epochs=2, batch_size=20, cache_dir=tmp_path,
                     progress=False)
    assert res2.from_cache and res2.key == res.key
    for a, b in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(obj.critic.parameters(), obj2.critic.parameters()):
        torch.testing.assert_close(a, b)  # the critic comes back with the checkpoint
    torch.testing.assert_close(obj.confidence.mean, obj2.confidence.mean)


def test_fit_rejects_an_objective_with_a_loss_and_a_bad_schedule():
    model = small_mlp()
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64)
    obj = AdversaryCritic(Critic(widths=(8,)))
    with pytest.raises(ValueError, match="either"):
        training.fit(model, x, y, loss="hr", objective=obj, cache_enabled=False, progress=False)
    with pytest.raises(ValueError, match="gamma"):
        training.fit(model, x, y, lr_schedule={"step_size": 1, "gamma": 2.0}, cache_enabled=False, progress=False)
    with pytest.raises(ValueError, match="keys"):
        training.fit(model, x, y, lr_schedule={"every": 1}, cache_enabled=False, progress=False)


# --- rho_adv (eq. 8) ------------------------------------------------------------------------------

def test_rho_adv_of_deepfool_on_a_linear_model_is_the_closed_form_margin_ratio():
    torch.manual_seed(2)
    d = 784
    w = torch.zeros(2, d)
    w[1] = torch.randn(d) / math.sqrt(d)  # binary linear classifier: f = z_1 - z_0 = w1 . x + b1
    b = torch.tensor([0.0, 0.0])
    x = mid_images(30, seed=2)
    f = x.flatten(1) @ w[1]
    b[1] = -f.median()  # about half the points on each side
    model = linear_model(w, b)
    y = model(x).argmax(1)
    y[0] = 1 - y[0]  # one misclassified point: contributes 0
    margin = (x.flatten(1) @ w[1] + b[1]).abs() / w[1].norm()
    # DeepFool crosses a linear boundary in one step: the margin plus its 1e-4 logit-unit push
    expected = (margin + 1e-4 / w[1].norm()) / x.flatten(1).norm(dim=1)
    expected[0] = 0.0
    mp = evaluation.minimal_perturbation(model, x, y, lambda m, a, t: attacks.deepfool(m, a, t, steps=5, overshoot=0.0))
    assert mp.success_rate == 1.0
    torch.testing.assert_close(mp.ratio, expected, atol=1e-6, rtol=1e-4)
    assert evaluation.rho_adv(model, x, y, lambda m, a, t: attacks.deepfool(m, a, t, steps=5, overshoot=0.0)) \
        == pytest.approx(expected.mean().item(), rel=1e-4)


def test_minimal_perturbation_robust_accuracy_counts_points_beyond_the_budget():
    mp = evaluation.MinimalPerturbation(distance=torch.tensor([0.0, 0.5, 1.0, 2.0]),
                                      ratio=torch.tensor([0.0, 0.05, 0.1, 0.2]),
                                      fooled=torch.tensor([True, True, True, False]),
                                      x_adv=torch.zeros(4, 1, 2, 2))
    assert mp.robust_accuracy(0.0) == 0.75  # only the misclassified point
    assert mp.robust_accuracy(0.75) == 0.5
    assert mp.robust_accuracy(10.0) == 0.25  # the attack failed on the last point
    assert mp.rho_adv == pytest.approx(0.0875)
    assert mp.success_rate == 0.75


def test_deepfool_max_step_clips_each_step():
    model = small_mlp()
    x = torch.rand(8, 1, 28, 28)
    y = model(x).argmax(1)
    x_adv = attacks.deepfool(model, x, y, steps=1, overshoot=0.02, max_step=0.05)
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert bool((dist <= 1.02 * 0.05 + 1e-3).all()) and bool((dist > 0).all())
    with pytest.raises(ValueError, match="max_step"):
        attacks.deepfool(model, x, y, max_step=-1.0)
