"""robust_utils.losses: the HR loss of Picot et al. against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from robust_utils import losses


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
