"""robust_utils.objectives: AT, VAT and margin maximization against independent computations."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from robust_utils.attacks import fgsm
from robust_utils.training.objectives import (OBJECTIVES, FGSMAdversarialTraining, MarginMaximization,
                                     VirtualAdversarialTraining, make_objective, margin_sensitivity,
                                     multiclass_hinge, virtual_adversarial_perturbation)


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def linear(seed=0, d=784, k=10, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, k, bias=bias))


def batch(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def param_grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()))


# ---------------------------------------------------------------------------------------------- AT

def test_at_weight_zero_is_cross_entropy_and_adversarial_term_matches_fgsm():
    model, (x, y) = mlp(), batch()
    ce = F.cross_entropy(model(x), y)
    assert FGSMAdversarialTraining(eps=0.1, weight=0.0)(model, x, y).item() == pytest.approx(ce.item(), rel=1e-6)
    x_adv = fgsm(model, x, y, 0.1)
    adv = F.cross_entropy(model(x_adv), y)
    assert adv.item() > ce.item()  # FGSM increases the loss of this smooth-ish model
    loss = FGSMAdversarialTraining(eps=0.1, weight=0.7)(model, x, y)
    assert loss.item() == pytest.approx(ce.item() + 0.7 * adv.item(), rel=1e-5)


def test_at_has_no_gradient_through_the_perturbation():
    model, (x, y) = mlp(), batch()
    x_adv = fgsm(model, x, y, 0.2).detach()
    ref = F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x_adv), y)
    got = FGSMAdversarialTraining(eps=0.2, weight=0.5)(model, x, y)
    for a, b in zip(param_grads(model, got), param_grads(model, ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- VAT

def test_vat_perturbation_has_norm_eps_and_tiny_eps_gives_ce():
    model, (x, y) = mlp(), batch()
    r = virtual_adversarial_perturbation(model, x, eps=2.0, xi=1e-6, power_iterations=2)
    assert r.shape == x.shape and r.dtype == x.dtype and not r.requires_grad
    torch.testing.assert_close(r.flatten(1).norm(dim=1), torch.full((8,), 2.0), rtol=1e-5, atol=0)
    ce = F.cross_entropy(model(x), y).item()
    assert VirtualAdversarialTraining(eps=1e-6)(model, x, y).item() == pytest.approx(ce, abs=1e-5)


def test_vat_loss_is_ce_plus_kl_at_the_same_perturbation():
    model, (x, y) = mlp(), batch()
    torch.manual_seed(5)
    r = virtual_adversarial_perturbation(model, x, eps=2.0, xi=1e-3, power_iterations=1)
    log_p, log_q = F.log_softmax(model(x), 1), F.log_softmax(model(x + r), 1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1)
    assert (kl >= 0).all() and kl.mean() > 0
    torch.manual_seed(5)
    loss = VirtualAdversarialTraining(eps=2.0, xi=1e-3, weight=3.0)(model, x, y)
    expected = F.cross_entropy(model(x), y) + 3.0 * kl.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # the virtual adversarial direction beats a random one of the same norm
    rand = torch.randn_like(x)
    rand = 2.0 * rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    log_q_rand = F.log_softmax(model(x + rand), 1)
    assert kl.mean() > (log_p.exp() * (log_p - log_q_rand)).sum(1).mean()


def test_vat_power_iteration_finds_the_top_hessian_eigenvector():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4, bias=False)).double()
    with torch.no_grad():
        model[1].weight.mul_(5)
    x = torch.rand(1, 1, 2, 3, dtype=torch.float64)
    log_p = F.log_softmax(model(x), 1).detach()

    def kl(r):
        log_q = F.log_softmax(model(x + r.view_as(x)), 1)
        return (log_p.exp() * (log_p - log_q)).sum()

    hess = torch.autograd.functional.hessian(kl, torch.zeros(6, dtype=torch.float64))
    evals, evecs = torch.linalg.eigh(hess)
    assert evals[-1] > 1.5 * evals[-2]  # a clear gap, so 5 iterations suffice
    torch.manual_seed(0)
    r = virtual_adversarial_perturbation(model, x, eps=1.0, xi=1e-6, power_iterations=5)
    cos = torch.dot(r.flatten(), evecs[:, -1]) / r.norm()
    assert abs(cos.item()) > 0.99


# ---------------------------------------------------------------------------------------------- margin

def test_multiclass_hinge_on_hand_built_logits():
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 0.5, 0.2], [1.0, 1.0, 3.0]])
    y = torch.tensor([0, 1, 0])
    # sample 0: 5 - 2 = 3 > 1 -> 0;  sample 1: 1 + 0.2 - 0.5;  sample 2: 1 + 3 - 1
    torch.testing.assert_close(multiclass_hinge(logits, y), torch.tensor([0.0, 0.7, 3.0]))
    # through the objective: a model whose output is the bias (W = 0) has zero sensitivity
    model = linear(d=784, k=3)
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.5, 0.2]))
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([1, 1, 0, 2])
    expected = torch.tensor([0.7, 0.7, 1.5, 1.3]).mean()
    assert MarginMaximization(lam=10.0)(model, x, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_margin_sensitivity_of_a_linear_model_is_the_closed_form():
    model, (x, y) = linear(), batch()
    w = model[1].weight.detach()
    closed = (w[y][:, None, :] - w[None]).pow(2).sum(2).amax(1)  # max_k ||W_y - W_k||^2, (N,)
    torch.testing.assert_close(margin_sensitivity(model, x, y), closed, rtol=1e-5, atol=1e-7)


def test_margin_backpropagates_through_the_sensitivity():
    model, (x, _) = linear(), batch()
    y = torch.full((8,), 3)
    with torch.no_grad():  # bias of 1000 on the true class: hinge 0 for every sample
        model[1].bias[3] = 1000.0
    assert (multiclass_hinge(model(x), y) == 0).all()
    loss = MarginMaximization(lam=1.0)(model, x, y)
    g_w = param_grads(model, loss)[0]
    assert g_w.abs().sum() > 0
    # equals the gradient of the closed form mean_i ||W_y - W_l||^2, l fixed at the argmax
    w = model[1].weight
    with torch.no_grad():
        l = (w[y][:, None, :] - w[None]).pow(2).sum(2).argmax(1)
    closed = (w[y] - w[l]).pow(2).sum(1).mean()
    torch.testing.assert_close(g_w, torch.autograd.grad(closed, w)[0], rtol=1e-5, atol=1e-7)
    # double backprop reaches the first layer of a ReLU network too
    model = mlp()
    loss = MarginMaximization(lam=1.0)(model, *batch())
    assert param_grads(model, loss)[0].abs().sum() > 0


# ---------------------------------------------------------------------------------------------- common

@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("train", [True, False])
def test_contract_mode_input_and_grads_untouched(name, train):
    model, (x, y) = mlp(), batch()
    model.train(train)
    x0 = x.clone()
    loss = make_objective(name)(model, x, y)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    assert model.training is train
    assert torch.equal(x, x0)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_bad_eps(bad):
    with pytest.raises(ValueError, match="eps"):
        FGSMAdversarialTraining(eps=bad)
    with pytest.raises(ValueError, match="eps"):
        VirtualAdversarialTraining(eps=bad)


def test_bad_hyper_parameters_and_names():
    for make in (lambda: FGSMAdversarialTraining(eps=1.5), lambda: FGSMAdversarialTraining(weight=-1),
                 lambda: VirtualAdversarialTraining(xi=0), lambda: VirtualAdversarialTraining(power_iterations=0),
                 lambda: VirtualAdversarialTraining(power_iterations=1.5),
                 lambda: VirtualAdversarialTraining(weight=math.nan), lambda: MarginMaximization(lam=-0.1)):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(ValueError, match="valid: at, attack_mixture, margin, pgd_at, vat"):
        make_objective("trades")
    with pytest.raises(ValueError, match="unknown argument"):
        make_objective("at", epsilon=0.1)


def test_cache_keys_are_json_and_hold_the_hyper_parameters():
    assert json.loads(json.dumps(make_objective("at", eps=0.3).cache_key())) == {"name": "at", "eps": 0.3,
                                                                                "weight": 1.0}
    assert make_objective("vat", power_iterations=2).cache_key() == {
        "name": "vat", "eps": 2.0, "xi": 1e-6, "power_iterations": 2, "weight": 1.0}
    assert json.dumps(make_objective("margin", lam=0.5).cache_key()) == '{"name": "margin", "lam": 0.5}'
    for name, cls in OBJECTIVES.items():
        assert cls.name == name


def test_pgd_adversarial_training_is_the_cross_entropy_at_the_pgd_point():
    from robust_utils.attacks import pgd
    from robust_utils.training.objectives import PGDAdversarialTraining

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    obj = PGDAdversarialTraining(eps=0.1, alpha=0.02, steps=5)
    torch.manual_seed(1)
    loss = obj(model, x, y)
    torch.manual_seed(1)
    x_adv = pgd(model, x, y, 0.1, 0.02, 5)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(x_adv), y))
    assert loss > torch.nn.functional.cross_entropy(model(x), y)  # the attack raised the loss
    with pytest.raises(ValueError):
        PGDAdversarialTraining(eps=2.0)
    with pytest.raises(ValueError):
        PGDAdversarialTraining(norm="1")


# ------------------------------------------------------ PGD training options (PNI, Stochastic LWTA)

def small_cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))


def test_pgd_training_options_pni_loss_predicted_labels_eval_mode_and_delay():
    from robust_utils.attacks import pgd
    from robust_utils.training.objectives import PGDAdversarialTraining

    model, (x, y) = small_cnn(), batch()
    model.train()
    obj = PGDAdversarialTraining(eps=0.1, alpha=0.02, steps=3, clean_weight=0.5, label="predicted", attack_mode="eval")
    bn = model[1]
    torch.manual_seed(1)
    loss = obj(model, x, y)
    assert model.training  # restored after the attack
    # recompute by hand: clean forward (train mode), attack in eval mode on the clean prediction
    model2 = small_cnn()
    model2.train()
    torch.manual_seed(1)
    clean = model2(x)
    model2.eval()
    x_adv = pgd(model2, x, clean.argmax(1), 0.1, 0.02, 3)
    model2.train()
    expected = 0.5 * F.cross_entropy(clean, y) + 0.5 * F.cross_entropy(model2(x_adv), y)
    torch.testing.assert_close(loss, expected)
    assert bn.num_batches_tracked.item() == 2  # the clean and the adversarial forward, none in the attack
    assert obj.cache_key() == {"name": "pgd_at", "eps": 0.1, "alpha": 0.02, "steps": 3, "norm": "inf",
                               "clean_weight": 0.5, "label": "predicted", "attack_mode": "eval"}
    assert PGDAdversarialTraining().cache_key() == {"name": "pgd_at", "eps": 0.3, "alpha": 0.01, "steps": 40,
                                                    "norm": "inf"}  # defaults: the key of older checkpoints
    delayed = PGDAdversarialTraining(eps=0.1, alpha=0.02, steps=3, delay=1)
    torch.testing.assert_close(delayed(model2, x, y), F.cross_entropy(model2(x), y))  # clean during epoch 1
    delayed.end_epoch(1)
    assert delayed(model2, x, y) > F.cross_entropy(model2(x), y) + 1e-4
    for bad in (dict(clean_weight=1.5), dict(label="target"), dict(attack_mode="test"), dict(delay=-1)):
        with pytest.raises(ValueError):
            PGDAdversarialTraining(**bad)


# ------------------------------------------------------------ the report's mixture of attacks

def test_attack_mixture_draws_clean_half_the_time_and_every_attack():
    from robust_utils.training.objectives import AttackMixtureTraining

    obj = AttackMixtureTraining()
    torch.manual_seed(0)
    draws = [obj.draw() for _ in range(4000)]
    counts = {c: draws.count(c) / len(draws) for c in ("clean", "pgd", "fgsm", "cw", "noise")}
    assert abs(counts["clean"] - 0.5) < 0.03  # k < 4 of k ~ U{0..7}
    for a in ("pgd", "fgsm", "cw", "noise"):
        assert abs(counts[a] - 0.125) < 0.02
    only = AttackMixtureTraining(attacks=["noise"])
    assert {only.draw() for _ in range(200)} == {"clean", "noise"}


def test_attack_mixture_members_are_the_attacks_and_the_loss_uses_the_drawn_batch():
    from robust_utils.attacks import cw_l2, fgsm as fgsm_attack, pgd
    from robust_utils.training.objectives import AttackMixtureTraining

    model, (x, y) = mlp(), batch()
    obj = AttackMixtureTraining(eps=0.05, alpha=0.01, pgd_steps=3, noise_std=0.2, cw_kwargs={"steps": 5})
    torch.manual_seed(3)
    torch.testing.assert_close(obj.perturb("pgd", model, x, y), (torch.manual_seed(3), pgd(model, x, y, 0.05, 0.01, 3))[1])
    torch.testing.assert_close(obj.perturb("fgsm", model, x, y), fgsm_attack(model, x, y, 0.05))
    torch.testing.assert_close(obj.perturb("cw", model, x, y),
                               cw_l2(model, x, y, c=1.0, kappa=0.0, steps=5, binary_search_steps=1))
    torch.manual_seed(4)
    noisy = obj.perturb("noise", model, x, y)
    assert 0 <= noisy.min() and noisy.max() <= 1 and 0.1 < (noisy - x).std() < 0.25
    assert obj.perturb("clean", model, x, y) is x
    # the loss is CE on the drawn batch; end_epoch reports the draw fractions and resets them
    torch.manual_seed(5)
    choice = obj.draw()
    torch.manual_seed(5)
    loss = obj(model, x, y)
    if choice == "clean":
        torch.testing.assert_close(loss, F.cross_entropy(model(x), y))
    metrics = obj.end_epoch(1)
    assert metrics[f"mix_{choice}"] == 1.0 and sum(metrics.values()) == 1.0
    assert obj.end_epoch(2)[f"mix_{choice}"] == 0.0
    for bad in (dict(attacks=[]), dict(attacks=["pgd", "pgd"]), dict(attacks=["deepfool"]), dict(eps=0.5 * 3),
                dict(noise_std=0), dict(cw_kwargs={"gamma": 1}), dict(attack_mode="x")):
        with pytest.raises(ValueError):
            AttackMixtureTraining(**bad)


# ------------------------------------------------------------------------------------------ ELBO

def test_elbo_adds_the_scaled_kl_of_the_last_forward():
    from robust_utils.nn import lwta
    from robust_utils.methods.lwta_elbo import ELBO

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), lwta.LWTA(2, "stochastic"),
                                torch.nn.Linear(16, 10))
    x, y = batch()
    model.train()
    torch.manual_seed(1)
    loss = ELBO(kl_weight=0.5)(model, x, y)
    torch.manual_seed(1)
    logits = model(x)
    kl = lwta.kl_divergence(model)
    assert kl > 0
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + 0.5 * kl)
    torch.manual_seed(1)
    torch.testing.assert_close(ELBO(kl_weight=0.0)(model, x, y), F.cross_entropy(logits, y))
    obj = ELBO(base=make_objective("pgd_at", eps=0.1, alpha=0.02, steps=2), kl_weight=1e-3)
    assert obj.cache_key() == {"name": "elbo", "kl_weight": 1e-3,
                               "base": {"name": "pgd_at", "eps": 0.1, "alpha": 0.02, "steps": 2, "norm": "inf"}}
    obj(model, x, y)
    assert obj.end_epoch(1)["kl"] > 0
    with pytest.raises(ValueError):
        ELBO(kl_weight=-1)
