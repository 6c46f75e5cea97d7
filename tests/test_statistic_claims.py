"""Claims about a whole-test-set statistic (bootstrap) and about a table's published values
(intervals): each helper returns each of its verdicts on constructed inputs."""

import numpy as np
import pytest

from robust_utils.evaluation.claims import Ledger
from robust_utils.evaluation.statistic_claims import agreement_claim, bootstrap_claim


def _mean_gap(a, b):
    return float(np.mean(a) - np.mean(b))


def _pairs(n, p_a, p_b, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p_a).astype(float), (rng.random(n) < p_b).astype(float)


@pytest.mark.parametrize("p_a, p_b, n, effect, verdict", [
    (0.8, 0.5, 2000, 0.3, "reproduced"),          # a large gap on many images
    (0.5, 0.8, 2000, 0.3, "not reproduced"),      # the opposite gap
    (0.5, 0.5, 4000, 0.2, "not reproduced"),      # no gap, and the test could have seen 0.2
    (0.55, 0.5, 40, 0.05, "inconclusive"),        # too few images to see 5 points
])
def test_bootstrap_claim_returns_each_verdict(p_a, p_b, n, effect, verdict):
    c = bootstrap_claim("A beats B", "A - B", _mean_gap, _pairs(n, p_a, p_b), effect=effect, resamples=300)
    assert c.verdict == verdict, c.evidence
    assert c.p_value is not None and c.mde is not None and "bootstrap over" in c.evidence


def test_bootstrap_claim_is_reproducible_and_joins_holm():
    data = _pairs(500, 0.6, 0.5)
    a = bootstrap_claim("A beats B", "A - B", _mean_gap, data, effect=0.1, resamples=200, seed=3)
    b = bootstrap_claim("A beats B", "A - B", _mean_gap, data, effect=0.1, resamples=200, seed=3)
    assert a.evidence == b.evidence and a.p_value == b.p_value
    ledger = Ledger("toy")
    ledger.add(a, a)
    assert all(c.p_holm is not None for c in ledger.final())


def test_bootstrap_claim_refuses_bad_input():
    with pytest.raises(ValueError, match="same number"):
        bootstrap_claim("x", "x", _mean_gap, (np.zeros(5), np.zeros(6)), effect=0.1)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_claim("x", "x", _mean_gap, _pairs(10, 0.5, 0.5), effect=0.1, resamples=10)
    with pytest.raises(ValueError, match="effect"):
        bootstrap_claim("x", "x", _mean_gap, _pairs(10, 0.5, 0.5), effect=0.0)


@pytest.mark.parametrize("cells, verdict", [
    ([("a", 9000, 10000, 0.9), ("b", 5000, 10000, 0.51)], "reproduced"),
    ([("a", 9000, 10000, 0.9), ("b", 1000, 10000, 0.5)], "not reproduced"),
    ([("a", 18, 20, 0.9), ("b", 10, 20, 0.5)], "inconclusive"),
])
def test_agreement_claim_returns_each_verdict(cells, verdict):
    c = agreement_claim("the table's values", cells, 0.05)
    assert c.verdict == verdict, c.evidence
    assert "largest gap" in c.evidence


def test_agreement_claim_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one cell"):
        agreement_claim("x", [], 0.05)
    with pytest.raises(ValueError, match="tolerance"):
        agreement_claim("x", [("a", 1, 2, 0.5)], 1.5)
    with pytest.raises(ValueError):
        agreement_claim("x", [("a", 3, 2, 0.5)], 0.05)
