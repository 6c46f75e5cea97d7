"""The gradient-masking audit passes an undefended model and flags known masking: a
non-differentiable step, probabilities instead of logits."""

import pytest
import torch
from torch import nn

from robust_utils.evaluation import audit
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
    return first_correct(trained_mlp, *mnist_test, n=60)


def _status(a, prefix):
    return a.table.set_index("check").status[[c for c in a.table.check if c.startswith(prefix)][0]]


def test_an_undefended_model_passes(trained_mlp, points):
    a = audit.audit(trained_mlp, *points, 0.1, twin=trained_mlp, **FAST)
    assert a.passed and not a.random, a.table.to_string()
    assert (a.table.status != "fail").all() and a.verdict.startswith("no sign of gradient masking")
    assert len(a.table) == 10 and a.robust_accuracy <= a.accuracies["FGSM"]
    assert a.robust_accuracy < 0.5  # the MLP is not robust at eps 0.1


def test_a_non_differentiable_step_is_flagged(trained_mlp, points):
    a = audit.audit(Binarized(trained_mlp).eval(), *points, 0.1, twin=trained_mlp, **FAST)
    assert not a.passed and a.verdict.startswith("gradient masking or an unconverged evaluation suspected")
    assert _status(a, "zero or NaN input gradients") == "fail"
    assert _status(a, "the largest eps") == "fail"  # gradient attacks cannot reach 0% even at eps 0.5


def test_probabilities_instead_of_logits_are_flagged(trained_mlp, points):
    a = audit.audit(Probabilities(trained_mlp).eval(), *points, 0.1, **FAST)
    assert _status(a, "outputs are logits") == "fail" and not a.passed


def test_a_random_model_is_attacked_with_eot(mnist_train, mnist_test):
    model = build_model("mlp", seed=0, device="cpu", widths=[64], layer="dropconnect", layer_kwargs={"p": 0.3})
    fit(model, *mnist_train, epochs=3, optimizer={"name": "adam", "lr": 1e-3}, cache_enabled=False, progress=False)
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    a = audit.audit(model, x, y, 0.1, passes=3, **FAST)
    assert a.random and "EOT converged in samples" in set(a.table.check)
    assert "random in the mode audited (eval)" in a.table.evidence[0]
    assert not model.training  # the probe of train mode is undone


def test_the_audit_is_reproducible(trained_mlp, points):
    a = audit.audit(trained_mlp, *points, 0.1, **FAST)
    b = audit.audit(trained_mlp, *points, 0.1, **FAST)
    assert a.accuracies == b.accuracies and a.verdict == b.verdict


@pytest.mark.parametrize("kwargs,match", [({"eps": 1.5}, "Linf eps"), ({"steps": (50, 10)}, "increasing"),
                                          ({"restarts": 0}, "restarts"), ({"norm": "1"}, "unknown norm")])
def test_bad_arguments_are_refused(trained_mlp, points, kwargs, match):
    args = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        audit.audit(trained_mlp, *points, **args)
