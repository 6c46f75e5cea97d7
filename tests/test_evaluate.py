"""robust_utils.evaluation: accuracies, eps grids, confusion matrices, claims."""

import numpy as np
import pytest
import torch

from robust_utils.evaluation import claims, reference
from robust_utils import attacks, evaluation


def test_confusion_matrix_convention_and_identity_gap():
    y_true = torch.tensor([0, 0, 0, 0, 1, 1])
    y_pred = torch.tensor([0, 0, 0, 1, 1, 1])
    c = evaluation.confusion_matrix(y_true, y_pred, 3)
    # C[y_hat, y]: rows are predictions, columns truths; each non-empty column sums to 1
    assert np.allclose(c[:, 0], [0.75, 0.25, 0]) and np.allclose(c[:, 1], [0, 1, 0])
    assert np.allclose(c[:, 2], 0)  # class 2 absent from y_true
    assert evaluation.identity_gap(c) == pytest.approx(np.sqrt(0.25**2 + 0.25**2 + 1))
    assert evaluation.identity_gap(np.eye(10)) == 0


def test_accuracy_and_robust_accuracy(trained_lenet, mnist_test):
    x, y = mnist_test
    clean = evaluation.accuracy(trained_lenet, x, y, batch_size=128)
    assert clean > 0.85
    grid = evaluation.robust_accuracy(trained_lenet, x, y, attacks.attack_fn("fgsm"), [0.0, 0.1, 0.3], batch_size=200)
    assert grid[0.0] == clean
    assert grid[0.3] < grid[0.1] < clean
    pgd = evaluation.robust_accuracy(trained_lenet, x, y, attacks.attack_fn("pgd", steps=10), [0.1], batch_size=200)
    assert pgd[0.1] <= grid[0.1]


def test_eps_grid_validated_before_any_attack(trained_lenet, mnist_test):
    calls = []

    def attack(model, x, y, eps):
        calls.append(eps)
        return x

    with pytest.raises(ValueError, match="must be <= 1"):
        evaluation.robust_accuracy(trained_lenet, *mnist_test, attack, [0.1, 1.5])
    assert calls == []
    with pytest.raises(ValueError, match="unknown fixed-budget attack"):
        attacks.attack_fn("deepfool")


def test_accuracy_table_long_format(trained_lenet, mnist_test):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    df = evaluation.accuracy_table({"lenet": trained_lenet}, x, y, {"FGSM": attacks.attack_fn("fgsm")}, [0.0, 0.2])
    assert list(df.columns) == ["model", "attack", "eps", "accuracy"] and len(df) == 2
    assert df.accuracy.iloc[1] < df.accuracy.iloc[0]


def test_monitor_key_depends_on_eps_and_data(mnist_test):
    x, y = mnist_test
    a = evaluation.RobustAccuracyMonitor(x, y, [0.0, 0.1]).cache_key()
    assert a != evaluation.RobustAccuracyMonitor(x, y, [0.0, 0.2]).cache_key()
    assert a != evaluation.RobustAccuracyMonitor(x[:10], y[:10], [0.0, 0.1]).cache_key()


def test_greater_claim_from_aggregate_accuracies_verdicts():
    """The aggregate-accuracy helpers judge with an exact test of two proportions (tests/test_claims.py
    covers the per-example helpers)."""
    assert claims.greater_claim("c", "A", [0.95], "B", [0.90], n=10000).verdict == "reproduced"
    assert claims.greater_claim("c", "A", [0.90], "B", [0.95], n=10000).verdict == "not reproduced"
    assert claims.greater_claim("c", "A", [0.901], "B", [0.900], n=10000, effect=0.001).verdict == "inconclusive"
    # seeds that disagree in sign make a significant pooled difference inconclusive
    assert claims.greater_claim("c", "A", [0.99, 0.89], "B", [0.90, 0.90], n=10000).verdict == "inconclusive"
    with pytest.raises(ValueError):
        claims.Claim("x", "maybe", "")


def test_no_worse_claim_tolerance():
    assert claims.no_worse_claim("c", "A", [0.984], "B", [0.986], 10000, 0.005, effect=0.0).verdict == "reproduced"
    assert claims.no_worse_claim("c", "A", [0.95], "B", [0.986], 10000, 0.005).verdict == "not reproduced"


def test_reference_table1_verbatim():
    t = reference.table("picot", "Table 1")
    assert t.shape == (3, 12)
    assert reference.lookup("picot", "Table 1", "eps=0.1", "CE/MNIST") == 0.907
    assert reference.lookup("picot", "Table 1", "eps=0.25", "HR/SVHN") == 0.698
    assert reference.lookup("picot", "Section 3", "||I - C||_F", "HR") == 0.23
    keys = [(p.paper, p.table, p.row, p.column) for p in reference.PUBLISHED]
    assert len(keys) == len(set(keys))
    with pytest.raises(KeyError, match="tables of 'picot'"):
        reference.lookup("picot", "Table 9", "x", "y")


def test_within_budget_keeps_only_perturbations_inside_the_ball():
    x = torch.zeros(3, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.3            # L2 0.3, Linf 0.3
    x_adv[1] += 0.3                    # L2 0.6, Linf 0.3
    x_adv[2, 0, 1, 1] = 0.9            # L2 0.9, Linf 0.9
    kept = evaluation.within_budget(x, x_adv, 0.5, norm="2")
    assert torch.equal(kept[0], x_adv[0]) and torch.equal(kept[1], x[1]) and torch.equal(kept[2], x[2])
    kept_inf = evaluation.within_budget(x, x_adv, 0.3, norm="inf")
    assert torch.equal(kept_inf[:2], x_adv[:2]) and torch.equal(kept_inf[2], x[2])
    with pytest.raises(ValueError, match="differ in shape"):
        evaluation.within_budget(x, x_adv[:2], 0.5)


def test_attack_accuracy_runs_the_attack_in_batches_and_counts_passes(trained_lenet, mnist_test):
    from robust_utils import attacks

    x, y = mnist_test[0][:60], mnist_test[1][:60]
    seen = []

    def attack(m, xb, yb):
        seen.append(len(xb))
        return attacks.fgsm(m, xb, yb, 0.3)

    acc = evaluation.attack_accuracy(trained_lenet, x, y, attack, passes=3, batch_size=25)
    assert seen == [25, 25, 10]
    expected = evaluation.accuracy(trained_lenet, attacks.fgsm(trained_lenet, x, y, 0.3), y)
    assert acc.mean == pytest.approx(expected) and acc.all_passes == pytest.approx(expected)  # deterministic model
    assert len(acc.per_pass) == 3 and acc.mean < evaluation.accuracy(trained_lenet, x, y)


def test_correct_by_eps_is_the_per_example_form_of_robust_accuracy(trained_lenet, mnist_test):
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    per = evaluation.correct_by_eps(trained_lenet, x, y, attacks.FGSM(), [0.0, 0.2])
    assert set(per) == {0.0, 0.2} and per[0.0].shape == (60,) and per[0.0].dtype == torch.float32
    assert torch.equal(per[0.0], (evaluation.predict(trained_lenet, x) == y).float())
    grid = evaluation.robust_accuracy(trained_lenet, x, y, attacks.FGSM(), [0.0, 0.2])
    assert grid == {e: v.mean().item() for e, v in per.items()}
    assert per[0.2].sum() < per[0.0].sum()  # the attack takes some images
    with pytest.raises(ValueError, match="passes"):
        evaluation.correct_by_eps(trained_lenet, x, y, attacks.FGSM(), [0.1], passes=0)
