"""core.stats: intervals, exact tests, Holm, the smallest detectable differences and seed agreement,
checked against independent implementations (statsmodels, scipy) and worked examples."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint

from robust_utils.core import stats


def _pairs(n10, n01, n11, n00):
    """Boolean vectors with the given cell counts: (A right, B wrong), (A wrong, B right), both right, both wrong."""
    a = np.r_[np.ones(n10), np.zeros(n01), np.ones(n11), np.zeros(n00)].astype(bool)
    b = np.r_[np.zeros(n10), np.ones(n01), np.ones(n11), np.zeros(n00)].astype(bool)
    return a, b


@pytest.mark.parametrize("k,n", [(45, 50), (0, 40), (40, 40), (183, 200)])
def test_intervals_match_statsmodels(k, n):
    for method, sm in (("wilson", "wilson"), ("clopper-pearson", "beta")):
        lo, hi = stats.accuracy_interval(k, n, method=method)
        ref = proportion_confint(k, n, alpha=0.05, method=sm)
        assert lo == pytest.approx(ref[0], abs=1e-9) and hi == pytest.approx(ref[1], abs=1e-9)
        assert lo <= k / n <= hi


def test_bad_interval_arguments_are_refused():
    for kwargs in ({"k": 5, "n": 0}, {"k": 6, "n": 5}, {"k": 1, "n": 5, "method": "wald"}, {"k": 1, "n": 5, "confidence": 1.0}):
        with pytest.raises(ValueError):
            stats.accuracy_interval(**kwargs)


def test_exact_mcnemar_worked_example():
    a, b = _pairs(10, 2, 50, 8)  # 12 discordant pairs, 10 in A's favour
    two = stats.mcnemar(a, b)
    assert two.discordant == (10, 2) and two.p_value == pytest.approx(158 / 4096)  # 2 (1 + 12 + 66) / 2^12
    assert two.p_value == pytest.approx(sm_mcnemar([[50, 10], [2, 8]], exact=True).pvalue)
    assert stats.mcnemar(a, b, "greater").p_value == pytest.approx(79 / 4096)
    assert stats.mcnemar(a, b, "less").p_value > 0.99
    assert stats.mcnemar(a, a).p_value == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="boolean"):
        stats.mcnemar(a * 0.5, b)


def test_paired_test_dispatches_on_the_kind_of_input():
    a, b = _pairs(30, 15, 120, 35)
    assert stats.paired_test(a, b).test == "exact McNemar"
    tango = stats.paired_test(a, b, delta0=-1e-9)  # Tango's score test tends to McNemar's z at delta0 -> 0
    assert tango.test.startswith("Tango") and tango.p_value == pytest.approx(sps.norm.sf(15 / math.sqrt(45)), rel=1e-4)
    # a margin makes "A not worse than B by more than 0.05" easier to establish than "A > B"
    assert stats.paired_test(a, b, delta0=-0.05).p_value < stats.paired_test(a, b).p_value
    rng = np.random.default_rng(0)
    pa, pb = rng.random(100), rng.random(100)
    t = stats.paired_test(pa, pb, "two-sided")
    assert t.test == "paired t" and t.p_value == pytest.approx(sps.ttest_rel(pa, pb).pvalue)
    with pytest.raises(ValueError, match="same images"):
        stats.paired_test(a, b[:-1])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        stats.paired_test(pa + 1, pb)
    with pytest.raises(ValueError, match="alternative"):
        stats.paired_test(a, b, "bigger")


def test_unpaired_and_one_sample_tests():
    a, b = np.arange(200) < 170, np.arange(300) < 240  # 0.85 vs 0.80 on different images
    t = stats.unpaired_test(a, b)
    assert t.test.startswith("score") and 0.05 < t.p_value < 0.2 and t.estimate == pytest.approx(0.05)
    assert stats.unpaired_test(np.ones(100), np.ones(100)).p_value == 1.0  # no warning, no NaN at accuracy 1
    welch = stats.unpaired_test(np.full(50, 0.9) - np.linspace(0, 0.1, 50), np.full(60, 0.5) + np.linspace(0, 0.1, 60))
    assert welch.test == "Welch t" and welch.p_value < 1e-6
    z = stats.one_sample_test(np.zeros(200, bool), 0.05, "less")
    assert z.test == "exact binomial" and z.p_value == pytest.approx(0.95**200)
    assert stats.one_sample_test(np.zeros(40, bool), 0.05, "less").p_value > 0.05  # 0 of 40 is not below 5 %


def test_mean_test_paired_and_welch():
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 1.0, 50)
    b = a - 0.3 + rng.normal(0, 0.1, 50)
    assert stats.mean_test(a, b, True).p_value == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue)
    assert stats.mean_test(a, b, False).p_value > stats.mean_test(a, b, True).p_value  # pairing removes the spread
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_test([1.0], [1.0, 2.0], False)


def test_holm_matches_the_step_down_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert stats.holm([]) == [] and stats.holm([0.5]) == [0.5]
    assert stats.holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])
    with pytest.raises(ValueError):
        stats.holm([1.5])


def test_the_exact_mcnemar_mde_has_the_power_it_claims():
    rng = np.random.default_rng(0)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7
    d = stats.mde_paired(a, b)
    psi = float((a != b).mean())
    m = rng.binomial(200, psi, 4000)
    hits = rng.binomial(m, (psi + d) / (2 * psi))
    power = np.mean([sps.binomtest(int(h), int(k), 0.5, "greater").pvalue <= 0.05 for h, k in zip(hits, m)])
    assert power == pytest.approx(0.8, abs=0.03)


def test_mde_shrinks_with_n_and_is_infinite_without_room():
    same = [stats.mde_paired(np.ones(n, bool), np.ones(n, bool)) for n in (40, 70, 200, 1000)]
    assert same == sorted(same, reverse=True) and same[0] > 0.10 >= same[1]  # the audit's 10-point rule needs n ~ 70
    assert stats.mde_unpaired(200, 200, 0.5) > stats.mde_unpaired(2000, 2000, 0.5)
    assert stats.mde_unpaired(200, 200, 0.995) == math.inf  # no room above the baseline to detect a gain
    assert stats.mde_one_sample(40, 0.05, alternative="less") == math.inf
    assert stats.mde_one_sample(200, 0.05, alternative="greater") < 0.05
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 100)
    # (z_0.95 + z_0.8) sqrt(2 / 100) ~ 0.35 standard deviations at n = 100 a side
    assert stats.mde_means(a, a + 1, False) / a.std(ddof=1) == pytest.approx(0.353, abs=0.005)


def test_seed_summary_agreement_and_spread():
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], bool)
    b = np.array([[1, 0, 0, 1], [1, 1, 0, 1]], bool)
    s = stats.seed_summary(a, b)
    assert s.per_seed == (0.25, -0.25) and not s.agree and s.spread == 0.5
    assert stats.seed_summary(a, np.zeros_like(b)).agree
    with pytest.raises(ValueError, match="one row per seed"):
        stats.seed_summary(a, b[:1])


def test_mde_unpaired_at_a_baseline_near_the_bound_is_finite_or_inf_never_an_error():
    """A baseline accuracy near 1 leaves little room; the power at the bound has a zero variance."""
    from robust_utils.core import stats as st

    assert st.mde_unpaired(40, 40, 1.0) == float("inf")
    m = st.mde_unpaired(40, 40, 0.95)
    assert m == float("inf") or 0 < m <= 0.05
    assert 0 < st.mde_unpaired(200, 200, 0.5) < 0.2
