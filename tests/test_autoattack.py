"""AutoAttack through pyautoattack: faithful to the reference's settings, at least as strong as PGD,
within budget, per-example accounting (a random model judged on the members' final iterates, never
higher than our EOT-PGD, with AutoAttack's own count beside it), and bad input refused before any work."""

import pytest
import torch

from robust_utils import attacks, evaluation
from robust_utils.evaluation import autoattack
from robust_utils.nn.models import build_model


@pytest.mark.parametrize("version", autoattack.VERSIONS)
def test_pyautoattack_builds_the_reference_settings(trained_mlp, version):
    aa = autoattack.build(trained_mlp, 0.1, "inf", version)
    assert autoattack.check_faithful(aa, version) == []


def test_a_weakened_autoattack_is_caught(trained_mlp):
    aa = autoattack.build(trained_mlp, 0.1, "inf", "standard")
    aa.apgd.n_iter, aa.square.n_queries = 10, 100  # torchattacks-like shortcuts
    problems = autoattack.check_faithful(aa, "standard")
    assert len(problems) == 2 and any("apgd.n_iter" in p for p in problems)


@pytest.mark.parametrize("norm,eps", [("inf", 0.1), ("2", 1.5)])
def test_autoattack_is_at_least_as_strong_as_pgd_and_within_budget(trained_mlp, mnist_test, norm, eps):
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    r = autoattack.autoattack(trained_mlp, x, y, eps, norm, seed=0)
    d = (r.x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "inf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all() and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert r.clean_accuracy == pytest.approx(evaluation.accuracy(trained_mlp, x, y))
    assert r.robust_accuracy == pytest.approx(evaluation.accuracy(trained_mlp, r.x_adv, y))
    acc = list(r.by_attack.values())
    assert list(r.by_attack) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert acc == sorted(acc, reverse=True) and acc[-1] == pytest.approx(r.robust_accuracy)
    # deterministic: the per-point result is AutoAttack's x_adv classified once, and its own count is the same number
    assert torch.equal(r.correct, (trained_mlp(r.x_adv).argmax(1) == y).float())
    assert r.own_accuracy == pytest.approx(r.robust_accuracy) and r.members == {} and r.passes == 1
    torch.manual_seed(0)
    pgd = evaluation.attack_accuracy(trained_mlp, x, y, lambda m, a, b: attacks.pgd(m, a, b, eps, 2.5 * eps / 40, 40, norm=norm)).mean
    assert r.robust_accuracy <= pgd + 0.02
    assert r.robust_accuracy < r.clean_accuracy - 0.2  # an undefended MLP loses most of its accuracy


def test_autoattack_is_reproducible_and_leaves_the_rng(trained_mlp, mnist_test):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = autoattack.autoattack(trained_mlp, x, y, 1.0, "2", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = autoattack.autoattack(trained_mlp, x, y, 1.0, "2", seed=3)
    assert torch.equal(a.x_adv, b.x_adv)


@pytest.fixture(scope="module")
def random_mlp(mnist_train):
    model = build_model("mlp", seed=0, device="cpu", widths=[32], layer="dropconnect", layer_kwargs={"p": 0.2})
    from robust_utils.training import fit
    fit(model, *mnist_train, epochs=2, optimizer={"name": "adam", "lr": 1e-3}, cache_enabled=False, progress=False)
    return model.eval()


def test_rand_version_counts_final_iterates_and_never_reads_above_eot_pgd(random_mlp, mnist_test):
    from robust_utils.evaluation.worst_case import WorstCase, correct_probability

    x, y = mnist_test[0][:30], mnist_test[1][:30]
    r = autoattack.autoattack(random_mlp, x, y, 0.1, "inf", version="rand", seed=0, passes=10)
    assert list(r.by_attack) == ["apgd-ce", "apgd-dlr"] and r.version == "rand" and r.passes == 10
    assert (r.x_adv - x).abs().amax() <= 0.1 + 1e-6
    assert random_mlp.training is False  # the mode is left as it was
    # per point: the minimum over the members of the probability of being correct (10 passes)
    assert list(r.members) == ["apgd-ce", "apgd-dlr"] and r.correct.shape == (30,)
    assert torch.equal(r.correct, torch.minimum(r.members["apgd-ce"], r.members["apgd-dlr"]))
    assert r.robust_accuracy == pytest.approx(r.correct.mean().item())
    # AutoAttack's own count (its draws, its rule) is reported beside it
    assert r.own_accuracy == r.by_attack["apgd-dlr"] and 0 <= r.own_accuracy <= 1
    # never higher than a plain EOT-PGD of ours on the same points (within noise)
    torch.manual_seed(0)
    x_pgd = evaluation.run_attack(attacks.eot(random_mlp, 10), x, y, lambda m, a, b: attacks.pgd(m, a, b, 0.1, 0.025, 40))
    pgd = correct_probability(random_mlp, x_pgd, y, passes=10).mean().item()
    assert r.robust_accuracy <= pgd + 0.05, (r.robust_accuracy, pgd)
    suite = WorstCase(30, "Linf 0.1")
    r.add_to(suite)
    assert suite.attacks == ["AA apgd-ce", "AA apgd-dlr"] and suite.own_counts() == {"AA apgd-dlr": r.own_accuracy}
    assert suite.robust_accuracy == pytest.approx(r.robust_accuracy)


def test_rand_version_without_its_own_count(random_mlp, mnist_test):
    x, y = mnist_test[0][:10], mnist_test[1][:10]
    r = autoattack.autoattack(random_mlp, x, y, 0.1, "inf", version="rand", seed=0, passes=2, own_count=False)
    assert r.by_attack == {} and r.own_accuracy is None and r.correct.shape == (10,)
    assert (r.x_adv - x).abs().amax() <= 0.1 + 1e-6  # each point's worst member's final iterate


def test_own_count_follows_autoattacks_rule(trained_mlp, mnist_test):
    """The own count falls member by member and, for a deterministic model (one draw is every draw),
    equals the re-classified robust accuracy: the rule, not the draws, is what differs for random ones."""
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    r = autoattack.autoattack(trained_mlp, x, y, 0.1, "inf", version="rand", seed=0, passes=1)
    counts = list(r.by_attack.values())
    assert counts == sorted(counts, reverse=True) and counts[0] <= r.clean_accuracy
    assert r.own_accuracy == pytest.approx(r.robust_accuracy)


def test_square_is_black_box_and_within_budget(trained_mlp, mnist_test):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    x_adv = autoattack.square(trained_mlp, x, y, 0.2, "inf", queries=300, seed=0)
    assert (x_adv - x).abs().amax() <= 0.2 + 1e-6
    assert evaluation.accuracy(trained_mlp, x_adv, y) < evaluation.accuracy(trained_mlp, x, y) - 0.2


@pytest.mark.parametrize("kwargs,match", [({"version": "fast"}, "unknown AutoAttack version"),
                                          ({"norm": "1"}, "unknown norm"), ({"eps": 2.0}, "Linf eps"),
                                          ({"eps": -0.1}, "eps must be >= 0"), ({"passes": 0}, "passes")])
def test_bad_arguments_are_refused(trained_mlp, mnist_test, kwargs, match):
    args = {"eps": 0.1, "norm": "inf", "version": "standard", **kwargs}
    with pytest.raises(ValueError, match=match):
        autoattack.autoattack(trained_mlp, mnist_test[0][:5], mnist_test[1][:5], **args)
