"""The gradient-masking audit passes an undefended model and flags known masking: a
non-differentiable step, probabilities instead of logits; it says "inconclusive" when too few
points could show a 10-point drop; each check (and each sanity check) returns each of its outcomes."""

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils.evaluation import audit, sanity
from robust_utils.nn.models import build_model
from robust_utils.training import fit

FAST = {"steps": (5, 20), "restarts": 2, "square_queries": 200, "eot_samples": (1, 3)}


class Binarized(nn.Module):
    """The input thresholded at 0.5 before the network: a non-differentiable step (zero gradient
    almost everywhere), the "shattered gradients" of Athalye et al. 2018."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(torch.round(x))  # torch.round's derivative is 0 everywhere


class Probabilities(nn.Module):
    """A network that outputs softmax probabilities (of sharpened logits) instead of logits."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return torch.softmax(10 * self.base(x), dim=1)


@pytest.fixture(scope="module")
def points(mnist_test, trained_mlp, first_correct):
    return first_correct(trained_mlp, *mnist_test, n=200)


@pytest.fixture(scope="module")
def few(points):
    """60 of the points: enough for checks that fail loudly, and fast."""
    return points[0][:60], points[1][:60]


def _status(a, prefix):
    return a.table.set_index("check").status[[c for c in a.table.check if c.startswith(prefix)][0]]


def test_an_undefended_model_passes(trained_mlp, points):
    a = audit.audit(trained_mlp, *points, 0.1, twin=trained_mlp, **FAST)
    assert a.passed and not a.random, a.table.to_string()
    assert (a.table.status.isin(["pass", "info"])).all() and a.verdict.startswith("no sign of gradient masking")
    assert len(a.table) == 10 and a.robust_accuracy <= min(a.accuracies.values()) and a.mde <= 0.10
    assert a.robust_accuracy < 0.5  # the MLP is not robust at eps 0.1
    # the per-example worst case over the attacks it ran (aliases counted once)
    assert a.per_example.shape == (200,) and a.robust_accuracy == pytest.approx(a.per_example.mean().item())
    assert a.worst_case.attacks == ["PGD-5", "PGD-20", "PGD-20 x 2 restarts", "FGSM", "Square (200 queries)",
                                    "transfer from the undefended twin"]
    assert (a.eps, a.norm, a.n) == (0.1, "inf", 200)


def test_too_few_points_make_the_audit_inconclusive(trained_mlp, points):
    x, y = points
    a = audit.audit(trained_mlp, x[:40], y[:40], 0.1, **FAST)
    assert a.passed and a.verdict.startswith("inconclusive at n = 40: no check failed")
    assert "could not have seen a 10-point drop" in a.verdict and a.mde > 0.10
    assert (a.table.status == "inconclusive").any()


def test_a_non_differentiable_step_is_flagged(trained_mlp, few):
    a = audit.audit(Binarized(trained_mlp).eval(), *few, 0.1, twin=trained_mlp, **FAST)
    assert not a.passed and a.verdict.startswith("gradient masking or an unconverged evaluation suspected")
    assert _status(a, "zero or NaN input gradients") == "fail"
    assert _status(a, "the largest eps") == "fail"  # gradient attacks cannot reach 0% even at eps 0.5


def test_probabilities_instead_of_logits_are_flagged(trained_mlp, few):
    a = audit.audit(Probabilities(trained_mlp).eval(), *few, 0.1, **FAST)
    assert _status(a, "outputs are logits") == "fail" and not a.passed


def test_a_random_model_is_attacked_with_eot(mnist_train, mnist_test):
    model = build_model("mlp", seed=0, device="cpu", widths=[64], layer="dropconnect", layer_kwargs={"p": 0.3})
    fit(model, *mnist_train, epochs=3, optimizer={"name": "adam", "lr": 1e-3}, cache_enabled=False, progress=False)
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    a = audit.audit(model, x, y, 0.1, passes=3, **FAST)
    assert a.random and "EOT converged in samples" in set(a.table.check)
    assert "random in the mode audited (eval)" in a.table.evidence[0]
    assert not model.training  # the probe of train mode is undone
    # per point, on the probabilities of being correct: never above any single attack
    assert a.robust_accuracy <= min(a.accuracies.values()) + 1e-9
    assert a.per_example.dtype == torch.float32 and ((a.per_example * 3) % 1 == 0).all()  # 3 passes


def test_the_audit_is_reproducible(trained_mlp, few):
    a = audit.audit(trained_mlp, *few, 0.1, **FAST)
    b = audit.audit(trained_mlp, *few, 0.1, **FAST)
    assert a.accuracies == b.accuracies and a.verdict == b.verdict


@pytest.mark.parametrize("kwargs,match", [({"eps": 1.5}, "Linf eps"), ({"steps": (50, 10)}, "increasing"),
                                          ({"restarts": 0}, "restarts"), ({"norm": "1"}, "unknown norm")])
def test_bad_arguments_are_refused(trained_mlp, few, kwargs, match):
    args = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        audit.audit(trained_mlp, *few, **args)


def test_each_check_function_returns_its_outcomes(trained_mlp, points):
    x, y = points
    row, random = audit.determinism_row(trained_mlp, x[:20], 30)
    assert row["status"] == "info" and not random
    noisy = nn.Sequential(nn.Dropout(0.2), trained_mlp).eval()
    assert not audit.determinism_row(noisy, x[:20], 30)[1]
    assert audit.determinism_row(noisy.train(), x[:20], 30)[1]
    noisy.eval()
    assert audit.logits_row(trained_mlp, x[:20])["status"] == "pass"
    assert audit.logits_row(Probabilities(trained_mlp).eval(), x[:20])["status"] == "fail"
    assert audit.gradient_row(trained_mlp, x[:20], y[:20], 0.01, 10)["status"] == "pass"
    assert audit.gradient_row(Binarized(trained_mlp).eval(), x[:20], y[:20], 0.01, 10)["status"] == "fail"
    same = torch.zeros(200)
    assert audit.converged_row("c", ("PGD-10", same), ("PGD-50", same), 0.05, 0.10)["status"] == "pass"
    more = torch.zeros(200)
    more[:40] = 1  # 40 points more correct under the weaker setting: not converged
    assert audit.converged_row("c", ("PGD-10", more), ("PGD-50", same), 0.05, 0.10)["status"] == "fail"
    few = audit.converged_row("c", ("PGD-10", same[:30]), ("PGD-50", same[:30]), 0.05, 0.10)
    assert few["status"] == "inconclusive" and few["evidence"].startswith("PGD-10: 0.000, PGD-50: 0.000 (violation p 1.000")


def _bool(k, n):
    return np.arange(n) < k


def test_sanity_rows_return_pass_fail_and_inconclusive():
    assert sanity.at_least_as_strong(("PGD", _bool(10, 200)), ("FGSM", _bool(60, 200)))["status"] == "pass"
    assert sanity.at_least_as_strong(("PGD", _bool(60, 200)), ("FGSM", _bool(10, 200)))["status"] == "fail"
    assert sanity.at_least_as_strong(("PGD", _bool(10, 200)), ("FGSM", _bool(10, 200)))["status"] == "pass"  # powered null
    assert sanity.at_least_as_strong(("PGD", _bool(2, 20)), ("FGSM", _bool(2, 20)))["status"] == "inconclusive"
    assert sanity.at_least_as_strong(("PGD", 0.05), ("FGSM", 0.3), n=200)["status"] == "pass"  # aggregates: unpaired
    assert sanity.never_rises({0.1: _bool(50, 200), 0.3: _bool(10, 200)})["status"] == "pass"
    rise = sanity.never_rises({0.1: _bool(10, 200), 0.3: _bool(50, 200)})
    assert rise["status"] == "fail" and "rises between eps 0.1 and 0.3" in rise["evidence"]
    assert sanity.never_rises({0.1: _bool(5, 20), 0.3: _bool(5, 20)})["status"] == "inconclusive"
    assert sanity.reaches_zero("PGD 0.5", _bool(0, 200))["status"] == "pass"
    assert sanity.reaches_zero("PGD 0.5", _bool(40, 200))["status"] == "fail"
    assert sanity.reaches_zero("PGD 0.5", _bool(0, 20))["status"] == "inconclusive"
    with pytest.raises(ValueError, match="needs n"):
        sanity.at_least_as_strong(("PGD", 0.1), ("FGSM", 0.2))


def test_sanity_checks_table_on_aggregates_and_per_example():
    df = sanity.sanity_checks({0.0: 0.98, 0.1: 0.3, 0.3: 0.0}, 500, ("FGSM", 0.5), ("PGD", 0.3),
                              white_box=("PGD", 0.3), black_box=("Square", 0.6), transfer=("transfer", 0.7))
    assert list(df.columns) == ["check", "status", "passed", "evidence"] and len(df) == 5 and df.passed.all()
    assert (df.status == "pass").all()
    # a 2-point rise on 100 points is no failure, but such a test could not have seen a 10-point one
    small = sanity.sanity_checks({0.0: 0.5, 0.1: 0.52}, 100, ("a", 0.5), ("b", 0.51))
    assert small.status[0] == "inconclusive" and small.passed[0]
    bad = sanity.sanity_checks({0.1: _bool(20, 200), 0.5: _bool(60, 200)}, None, ("FGSM", _bool(20, 200)),
                               ("PGD", _bool(60, 200)))
    assert bad.status.tolist() == ["fail", "fail", "fail"] and not bad.passed.any()
    with pytest.raises(ValueError, match="at least one"):
        sanity.sanity_checks({}, 10, ("a", 0.1), ("b", 0.1))
