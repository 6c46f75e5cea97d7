"""The faster attacks (issue 21) against a frozen copy of the attacks before it (tests/frozen_attacks).

On fixed inputs (the session's trained LeNet-5, a small SDR MLP trained here with a plain loop, 64
MNIST test images, seeded generators) every deterministic attack gives the same result as before:
bitwise where the operations are the same (FGSM, PGD in Linf and L2 with restarts, BIM, CW-L2,
LocalSearch, Foolbox's FGSM search, EOT with one sample or the loop of draws, eq. 7's unrolled
attack), and to float rounding where one batched backward pass replaced one pass per class
(DeepFool, closest_target and eq. 7's test-time loop). A random model attacked with the same seed
gets the same draws where the draw order is unchanged (PGD on the SDR MLP). The vectorised EOT
draws its samples in another order: tests/test_stochastic.py checks that its M draws are
independent instead.
"""

from __future__ import annotations

import copy

import frozen_attacks as old
import pytest
import torch
import torch.nn.functional as F

from robust_utils import attacks as new
from robust_utils.core.losses import get_loss
from robust_utils.nn.models import build_model


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch(mnist_test):
    x, y = mnist_test
    return x[:64], y[:64]


@pytest.fixture(scope="module")
def sdr_net(mnist_train):
    """An SDR-Learnable MLP (64-64), 2 epochs of plain SGD on the 2,000 training images; eval mode."""
    x, y = mnist_train
    model = build_model("mlp", seed=0, device="cpu", widths=(64, 64), layer="sdr-learnable")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for idx in torch.randperm(len(x), generator=g).split(50):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(a, b), f"max difference {(a - b).abs().max().item():.3g}"


def test_fgsm_is_bitwise_unchanged(trained_lenet, batch):
    x, y = batch
    same(new.fgsm(trained_lenet, x, y, 0.1), old.fgsm(trained_lenet, x, y, 0.1))
    hr = get_loss("hr", alpha=1.6)
    same(new.fgsm(trained_lenet, x, y, 0.3, loss_fn=hr), old.fgsm(trained_lenet, x, y, 0.3, loss_fn=hr))


@pytest.mark.parametrize("kwargs", [
    dict(eps=0.1, alpha=0.01, steps=10),
    dict(eps=0.1, alpha=0.01, steps=10, random_start=False),
    dict(eps=1.5, alpha=0.2, steps=10, norm="2"),
    dict(eps=0.05, alpha=0.01, steps=5, restarts=3),
    dict(eps=1.0, alpha=0.2, steps=5, restarts=3, norm="2"),
], ids=["linf", "bim", "l2", "linf-restarts", "l2-restarts"])
def test_pgd_is_bitwise_unchanged(trained_lenet, batch, kwargs):
    x, y = batch
    same(new.pgd(trained_lenet, x, y, generator=seeded(), **kwargs),
         old.pgd(trained_lenet, x, y, generator=seeded(), **kwargs))


def test_pgd_on_a_random_model_draws_the_same_numbers(sdr_net, batch):
    x, y = batch
    torch.manual_seed(3)
    a = new.pgd(sdr_net, x, y, 0.1, 0.02, 8, restarts=2, generator=seeded(1))
    torch.manual_seed(3)
    b = old.pgd(sdr_net, x, y, 0.1, 0.02, 8, restarts=2, generator=seeded(1))
    same(a, b)


def test_cw_l2_is_bitwise_unchanged(trained_lenet, batch):
    x, y = batch[0][:32], batch[1][:32]
    kw = dict(steps=30, lr=0.05, binary_search_steps=3)
    same(new.cw_l2(trained_lenet, x, y, **kw), old.cw_l2(trained_lenet, x, y, **kw))
    same(new.cw_l2(trained_lenet, x, y, kappa=2.0, abort_early=False, **kw),
         old.cw_l2(trained_lenet, x, y, kappa=2.0, abort_early=False, **kw))


@pytest.mark.parametrize("kwargs", [dict(steps=30), dict(steps=30, num_classes=3, max_step=0.1)],
                         ids=["all-classes", "top3-clipped"])
def test_deepfool_matches_to_float_rounding(trained_lenet, batch, kwargs):
    x, y = batch
    a, b = new.deepfool(trained_lenet, x, y, **kwargs), old.deepfool(trained_lenet, x, y, **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(trained_lenet(a).argmax(1), trained_lenet(b).argmax(1))


def test_local_search_is_bitwise_unchanged(trained_lenet, batch):
    x, y = batch[0][:16], batch[1][:16]
    kw = dict(R=10, max_candidates=32)
    same(new.local_search(trained_lenet, x, y, generator=seeded(), **kw),
         old.local_search(trained_lenet, x, y, generator=seeded(), **kw))


def test_fgsm_smallest_eps_is_unchanged(trained_lenet, sdr_net, batch):
    x, y = batch
    grid = old.foolbox_eps_grid(1.0, 200)
    for refine in (False, True):
        a = new.fgsm_smallest_eps(trained_lenet, x, y, grid, refine=refine)
        b = old.fgsm_smallest_eps(trained_lenet, x, y, grid, refine=refine)
        same(a.eps, b.eps)
        same(a.x_adv, b.x_adv)
    # an SDR layer draws one weight sample per call, whatever the batch: the same draws as before
    torch.manual_seed(5)
    a = new.fgsm_smallest_eps(sdr_net, x, y, grid)
    torch.manual_seed(5)
    b = old.fgsm_smallest_eps(sdr_net, x, y, grid)
    same(a.eps, b.eps)


def test_eot_with_one_sample_or_the_loop_is_bitwise_unchanged(sdr_net, batch):
    x, y = batch
    for samples, vectorize in ((1, "auto"), (4, False)):
        torch.manual_seed(11)
        a = new.pgd(new.eot(sdr_net, samples, vectorize=vectorize), x, y, 0.1, 0.02, 5, generator=seeded())
        torch.manual_seed(11)
        b = old.pgd(old.eot(sdr_net, samples), x, y, 0.1, 0.02, 5, generator=seeded())
        same(a, b)


def test_eq7_attack_matches(trained_lenet, batch):
    x = batch[0][:32]
    with torch.no_grad():
        labels = trained_lenet(x).argmax(1)
    targets = new.closest_target(trained_lenet, x, labels)
    same(targets, old.closest_target(trained_lenet, x, labels))
    a = new.high_confidence(trained_lenet, x, targets, 0.9, labels=labels, steps=50)
    b = old.high_confidence(trained_lenet, x, targets, 0.9, labels=labels, steps=50)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    a = new.high_confidence_unrolled(trained_lenet, x, targets, 0.9)
    b = old.high_confidence_unrolled(trained_lenet, x, targets, 0.9)
    same(a.detach(), b.detach())
    param = next(trained_lenet.parameters())
    (ga,) = torch.autograd.grad(a.square().sum(), param)
    (gb,) = torch.autograd.grad(b.square().sum(), param)
    same(ga, gb)


def test_validate_false_skips_only_the_value_check(trained_lenet, batch):
    """validate=False (for callers that checked their data once) accepts x outside [0, 1] without
    reading it, gives the same result on valid x, and still rejects a wrong type or shape."""
    x, y = batch
    same(new.pgd(trained_lenet, x, y, 0.1, 0.01, 3, generator=seeded(), validate=False),
         new.pgd(trained_lenet, x, y, 0.1, 0.01, 3, generator=seeded()))
    with pytest.raises(ValueError, match="pixel box"):
        new.fgsm(trained_lenet, x + 2, y, 0.1)
    new.fgsm(trained_lenet, x + 2, y, 0.1, validate=False)
    with pytest.raises(ValueError, match="int64"):
        new.cw_l2(trained_lenet, x, y.float(), validate=False)
    with pytest.raises(ValueError, match="floating"):
        new.pgd(trained_lenet, (x * 255).long(), y, 0.1, 0.01, 3, validate=False)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        new.high_confidence_unrolled(trained_lenet, x, y, 1.5)


@pytest.mark.cuda
def test_graphed_pgd_on_cuda_matches_the_eager_steps(trained_lenet, sdr_net, batch, monkeypatch):
    """On CUDA, PGD's steps replay one captured CUDA graph; the numbers are those of the eager
    steps (same kernels, TF32 off for the comparison), and a random model still draws afresh at
    every replayed step (two graphed runs differ, both within the budget)."""
    from robust_utils.core import runtime

    monkeypatch.setenv(runtime.TF32_VARIABLE, "0")
    runtime.apply_speed_settings(runtime.speed_settings("cuda"))
    x, y = batch[0].cuda(), batch[1].cuda()
    net = copy.deepcopy(trained_lenet).to("cuda")
    assert runtime.use_cuda_graphs(x, 10)
    for kw in (dict(eps=0.1, alpha=0.01, steps=10), dict(eps=1.5, alpha=0.2, steps=10, norm="2", restarts=2)):
        graphed = new.pgd(net, x, y, generator=seeded(), **kw)
        monkeypatch.setenv(runtime.CUDA_GRAPHS_VARIABLE, "0")
        eager = new.pgd(net, x, y, generator=seeded(), **kw)
        monkeypatch.delenv(runtime.CUDA_GRAPHS_VARIABLE)
        torch.testing.assert_close(graphed, eager, rtol=0, atol=1e-6)
    sdr = copy.deepcopy(sdr_net).to("cuda")
    a = new.pgd(new.eot(sdr, 4), x, y, 0.1, 0.02, 8)
    b = new.pgd(new.eot(sdr, 4), x, y, 0.1, 0.02, 8)
    assert not torch.equal(a, b)
    assert (a - x).abs().max() <= 0.1 + 1e-6 and (b - x).abs().max() <= 0.1 + 1e-6


class _CountingModel(torch.nn.Module):
    """Wraps a model and counts its forward calls that record a gradient (the backward passes)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.graded = model, 0

    def forward(self, x):
        self.graded += int(torch.is_grad_enabled() and x.requires_grad)
        return self.model(x)


@pytest.mark.parametrize("loss", [("ce", {}), ("hr", {"alpha": 2.0})])
def test_fgsm_over_an_eps_grid_shares_one_gradient_bitwise(trained_lenet, batch, loss):
    """On a deterministic model in eval mode, FGSM over a grid is one gradient per batch scaled to
    every eps, bitwise equal to one call per eps (the batch-level HR loss too, same batches)."""
    from robust_utils import evaluation

    x, y = batch
    attack, grid = new.FGSM(*loss), [0.0, 0.05, 0.1, 0.3]
    counted = _CountingModel(trained_lenet).eval()
    shared = evaluation.adversarial_examples_by_eps(counted, x, y, attack, grid, batch_size=20)
    assert counted.graded == 4  # 64 images in batches of 20: one gradient per batch, not one per eps and batch
    for e in grid:
        assert torch.equal(shared[e], evaluation.adversarial_examples(trained_lenet, x, y, attack, e, 20)), e
    assert shared[0.0] is x
    per_eps = evaluation.correct_by_eps(trained_lenet, x, y, attack, grid, batch_size=20)
    assert all(torch.equal(per_eps[e], (evaluation.predict(trained_lenet, shared[e]) == y).float()) for e in grid)


def test_fgsm_over_an_eps_grid_on_a_random_or_training_model_runs_once_per_eps(sdr_net, trained_lenet, batch):
    """A random model gets one draw per eps, in the order of separate calls (the same numbers from
    the same seed); a model in train mode is attacked once per eps. Sharing one draw would differ."""
    from robust_utils import evaluation

    x, y = batch
    grid = [0.1, 0.2]
    torch.manual_seed(3)
    by_eps = evaluation.correct_by_eps(sdr_net, x, y, new.FGSM(), grid, passes=2)
    torch.manual_seed(3)
    separate = {}
    for e in grid:
        x_adv = evaluation.adversarial_examples(sdr_net, x, y, new.FGSM(), e)
        separate[e] = torch.stack([evaluation.predict(sdr_net, x_adv) == y for _ in range(2)]).float().mean(0)
    assert all(torch.equal(by_eps[e], separate[e]) for e in grid)
    torch.manual_seed(3)
    assert not torch.equal(new.fgsm(sdr_net, x, y, 1.0), new.fgsm(sdr_net, x, y, 1.0))  # two draws, two directions
    counted = _CountingModel(copy.deepcopy(trained_lenet)).train()
    evaluation.adversarial_examples_by_eps(counted, x, y, new.FGSM(), grid, batch_size=64)
    assert counted.graded == 2
