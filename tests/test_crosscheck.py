"""Our attacks against Foolbox 3 on the same trained models and inputs: robust accuracies agree
within the stated tolerance, and a weakened attack of ours is flagged."""

import pytest

from robust_utils.evaluation import crosscheck


@pytest.mark.parametrize("fixture", ["trained_mlp", "trained_lenet"])
def test_our_attacks_agree_with_foolbox(request, mnist_test, fixture):
    model = request.getfixturevalue(fixture)
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    table = crosscheck.cross_check(model, x, y, seed=0)
    assert list(table.attack) == ["FGSM", "PGD", "PGD", "CW-L2", "DeepFool"]
    assert not table.ours_weaker.any(), table.to_string()
    assert table.agree.all(), table.to_string()
    # the comparison is not vacuous: at these budgets the attacks fool a good share of the points
    assert (table.ours < 0.8).all() and (table.foolbox < 0.8).all()
    fgsm = table.iloc[0]
    assert fgsm.ours == pytest.approx(fgsm.foolbox, abs=0.01)  # deterministic: the same images


def test_a_weak_attack_of_ours_is_flagged(trained_mlp, mnist_test, monkeypatch):
    monkeypatch.setattr(crosscheck, "_ours", lambda check: lambda m, x, y: x.clone())  # "attack" that does nothing
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    table = crosscheck.cross_check(trained_mlp, x, y, checks=crosscheck.DEFAULT_CHECKS[1:2])
    assert table.ours_weaker.all() and not table.agree.any()


def test_the_tolerance_shrinks_with_n():
    assert crosscheck.tolerance(0.5, 100) > crosscheck.tolerance(0.5, 10000) > 0.02
    assert crosscheck.tolerance(0.0, 100) == pytest.approx(0.02)


@pytest.mark.parametrize("check,match", [(crosscheck.CrossCheck("BIM", "inf", 0.1), "unknown attack"),
                                         (crosscheck.CrossCheck("FGSM", "2", 0.1), "Linf attack"),
                                         (crosscheck.CrossCheck("PGD", "inf", 1.5, steps=5), "Linf eps")])
def test_bad_checks_are_refused_before_any_attack(trained_mlp, mnist_test, check, match):
    with pytest.raises(ValueError, match=match):
        crosscheck.cross_check(trained_mlp, mnist_test[0][:5], mnist_test[1][:5], checks=[check])
