"""robust_utils.losses: the HR loss of Picot et al. against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from robust_utils.core import losses


def test_uniform_logits_give_two_log_k():
    logits, y = torch.zeros(5, 10), torch.arange(5)
    assert losses.conditional_entropy(logits).item() == pytest.approx(math.log(10))
    assert losses.renyi_divergence(logits, y, 1.6).item() == pytest.approx(math.log(10))
    assert losses.hr_loss(logits, y).item() == pytest.approx(2 * math.log(10))
    assert losses.hr_loss(logits, y, weight=1.6).item() == pytest.approx(2.6 * math.log(10))


def test_confident_correct_prediction_gives_zero():
    logits = torch.full((3, 4), -1e4)
    y = torch.tensor([0, 2, 3])
    logits[torch.arange(3), y] = 1e4
    assert losses.hr_loss(logits, y).item() == pytest.approx(0.0, abs=1e-6)


def test_hand_computed_two_samples():
    # q(y|x) = 0.8 for sample 1 (binary), 0.5 for sample 2
    logits = torch.tensor([[math.log(0.8), math.log(0.2)], [0.0, 0.0]])
    y = torch.tensor([0, 0])
    alpha = 1.6
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2) + 2 * 0.5 * math.log(0.5)) / 2
    ce = [-math.log(0.8), -math.log(0.5)]
    d = math.log(sum(math.exp((alpha - 1) * c) for c in ce) / 2) / (alpha - 1)
    assert losses.conditional_entropy(logits).item() == pytest.approx(h, rel=1e-6)
    assert losses.renyi_divergence(logits, y, alpha).item() == pytest.approx(d, rel=1e-6)
    assert losses.hr_loss(logits, y, alpha).item() == pytest.approx(h + d, rel=1e-6)
    # the tilted mean lies above the mean CE (Jensen), and per-sample it would just be CE
    assert d > sum(ce) / 2
    assert losses.renyi_divergence(logits[:1], y[:1], alpha).item() == pytest.approx(ce[0], rel=1e-6)


def test_renyi_tends_to_mean_ce_as_alpha_goes_to_one():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(64, 10, generator=g) * 3, torch.randint(0, 10, (64,), generator=g)
    ce = F.cross_entropy(logits, y).item()
    assert losses.renyi_divergence(logits, y, 1.0001).item() == pytest.approx(ce, rel=1e-3)
    # non-decreasing in the order
    values = [losses.renyi_divergence(logits, y, a).item() for a in (1.1, 1.6, 2.0, 4.0)]
    assert values == sorted(values)


def test_hr_gradient_flows_and_bad_arguments():
    logits = torch.randn(8, 10, requires_grad=True)
    losses.hr_loss(logits, torch.arange(8)).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="alpha must be > 1"):
        losses.hr_loss(logits, torch.arange(8), alpha=1.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        losses.hr_loss(logits, torch.arange(8), weight=-1)
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        losses.get_loss("mse")
    with pytest.raises(ValueError, match="unknown argument"):
        losses.get_loss("ce", alpha=2.0)
    assert losses.get_loss("hr", alpha=2.0)(logits, torch.arange(8)).item() == pytest.approx(
        losses.hr_loss(logits, torch.arange(8), alpha=2.0).item())


# ----------------------------------------------------------------------------- paper 000: soft CE, eq. 6, weighted MSE


def test_soft_cross_entropy_one_hot_equals_ce_and_hand_value():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 10, generator=g) * 4, torch.randint(0, 10, (16,), generator=g)
    one_hot = F.one_hot(y, 10).float()
    for i in range(16):  # bit-identical per sample; the batch means differ only in summation order
        assert torch.equal(losses.soft_cross_entropy(logits[i:i + 1], one_hot[i:i + 1]),
                           F.cross_entropy(logits[i:i + 1], y[i:i + 1]))
    torch.testing.assert_close(losses.soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, y),
                               rtol=1e-6, atol=0)
    assert losses.get_loss("soft_ce") is losses.soft_cross_entropy
    # p = (0.5, 0.25, 0.25), targets (0.8, 0.1, 0.1)
    logits = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)]])
    expected = -(0.8 * math.log(0.5) + 0.2 * math.log(0.25))
    assert losses.soft_cross_entropy(logits, torch.tensor([[0.8, 0.1, 0.1]])).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="probability vectors"):
        losses.soft_cross_entropy(logits, torch.tensor([[0.8, 0.1, 0.2]]))
    with pytest.raises(ValueError, match="probability vectors"):
        losses.soft_cross_entropy(logits, torch.tensor([[1.2, -0.1, -0.1]]))
    with pytest.raises(ValueError, match="for int labels use 'ce'"):
        losses.soft_cross_entropy(logits, torch.tensor([0]))


def test_push_away_loss_hand_value_and_bounded_below():
    logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    eps, beta = 1e-6, 0.05
    l1 = -math.log(0.7) + beta * (math.log(0.2 + eps) + math.log(0.1 + eps))
    l2 = -math.log(1 / 3) + beta * 2 * math.log(1 / 3 + eps)
    assert losses.push_away_loss(logits, y, beta).item() == pytest.approx((l1 + l2) / 2, rel=1e-6)
    assert losses.push_away_loss(logits, y, 0.0).item() == pytest.approx(F.cross_entropy(logits, y).item())
    # default beta = 0.1 / (K - 1); a saturated correct prediction reaches the bound -beta (K-1) log(1/eps)
    assert losses.push_away_loss(logits, y).item() == pytest.approx(
        losses.push_away_loss(logits, y, 0.05).item())
    big = torch.full((2, 10), -1e4)
    big[[0, 1], [3, 7]] = 1e4
    bound = -0.1 * math.log(1 / eps)
    value = losses.get_loss("push_away")(big, torch.tensor([3, 7]))
    assert math.isfinite(value.item()) and value.item() == pytest.approx(bound, rel=1e-4)
    assert value.item() >= bound - 1e-6
    with pytest.raises(ValueError, match="beta must be >= 0"):
        losses.push_away_loss(logits, y, -0.1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        losses.push_away_loss(logits, y, 0.1, eps=0)
    with pytest.raises(ValueError, match="int64"):
        losses.push_away_loss(logits, y[:1])


def test_weighted_mse():
    pred, target = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 0.0, 1.0])
    assert losses.weighted_mse(pred, target, torch.ones(3)).item() == pytest.approx(F.mse_loss(pred, target).item())
    assert losses.weighted_mse(pred, target).item() == pytest.approx(F.mse_loss(pred, target).item())
    w = torch.tensor([1.0, 0.5, 0.25])
    assert losses.weighted_mse(pred, target, w).item() == pytest.approx((1 + 0.5 * 4 + 0.25 * 9) / 1.75)
    p2, t2 = torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.zeros(2, 2)
    assert losses.weighted_mse(p2, t2, torch.tensor([1.0, 3.0])).item() == pytest.approx((2 + 3 * 4) / 4)
    assert losses.weighted_mse(p2, t2).item() == pytest.approx(2 * F.mse_loss(p2, t2).item())
    with pytest.raises(ValueError, match="same shape"):
        losses.weighted_mse(pred, target[:2])
    with pytest.raises(ValueError, match=">= 0"):
        losses.weighted_mse(pred, target, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="not all 0"):
        losses.weighted_mse(pred, target, torch.zeros(3))


def test_registry_binds_new_losses_and_gradients_flow():
    logits = torch.randn(4, 10, requires_grad=True)
    targets = torch.softmax(torch.randn(4, 10), 1)
    losses.get_loss("soft_ce")(logits, targets).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    fn = losses.get_loss("push_away", beta=0.2)
    assert fn(logits, torch.arange(4)).item() == pytest.approx(losses.push_away_loss(logits, torch.arange(4), 0.2).item())
    with pytest.raises(ValueError, match="unknown argument"):
        losses.get_loss("soft_ce", targets=targets)


def test_cw_margin_loss_is_the_best_other_logit_minus_the_true_one():
    from robust_utils.core.losses import cw_margin_loss, get_loss

    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    # sample 0: max other 1 - 2 = -1; sample 1: max other 3 - 1 = 2
    assert cw_margin_loss(logits, y).item() == pytest.approx(0.5)
    assert cw_margin_loss(logits, y, kappa=1.0).item() == pytest.approx(0.0)  # (-1 + min(2, 1)) / 2
    assert get_loss("cw_margin", kappa=1.0)(logits, y).item() == pytest.approx(0.0)
    # a softmax-invariant shift of the logits leaves it unchanged; scaling them scales it
    assert cw_margin_loss(logits + 5, y).item() == pytest.approx(0.5)
    assert cw_margin_loss(3 * logits, y).item() == pytest.approx(1.5)
