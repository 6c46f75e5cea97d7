"""evaluation.claims: every claim helper returns each of its verdicts on constructed inputs, the
Ledger applies Holm's correction and counts every claim, and the evidence text is stable."""

import numpy as np
import pytest

from robust_utils.evaluation import claims


def _pairs(n10, n01, n11, n00):
    """Per-example booleans of two models on the same images, from the four cell counts."""
    a = np.r_[np.ones(n10), np.zeros(n01), np.ones(n11), np.zeros(n00)].astype(bool)
    b = np.r_[np.zeros(n10), np.ones(n01), np.ones(n11), np.zeros(n00)].astype(bool)
    return a, b


def _acc(k, n):
    return np.arange(n) < k


# ------------------------------------------------------------------------------- paired_claim
def test_paired_claim_reproduced_and_not_reproduced_in_the_opposite_direction():
    a, b = _pairs(60, 10, 380, 50)
    c = claims.paired_claim("A beats B", "A", a, "B", b, paper="0.9 vs 0.8")
    assert c.verdict == "reproduced" and c.test == "exact McNemar" and c.p_value < 1e-6
    assert c.evidence.startswith("ours: A 0.880 vs B 0.780 (difference +0.100; 1 seed(s), 500 images, paired)")
    assert c.evidence.endswith("; paper: 0.9 vs 0.8")
    back = claims.paired_claim("B beats A", "B", b, "A", a)
    assert back.verdict == "not reproduced" and "opposite direction" in back.evidence


def test_paired_claim_not_reproduced_when_a_powered_test_finds_nothing():
    a, b = _pairs(5, 5, 400, 90)
    c = claims.paired_claim("A beats B", "A", a, "B", b, effect=0.05)
    assert c.verdict == "not reproduced" and c.mde <= 0.05 and "could detect the paper's" in c.evidence


def test_paired_claim_inconclusive_when_underpowered_and_prints_the_mde():
    a, b = _pairs(3, 1, 12, 4)  # 20 images
    c = claims.paired_claim("A beats B", "A", a, "B", b, effect=0.05)
    assert c.verdict == "inconclusive" and c.mde > 0.05
    assert f"smallest detectable difference {c.mde:.3f} vs 0.050 sought (underpowered" in c.evidence


def test_paired_claim_with_seeds_needs_every_seed_on_the_claimed_side():
    a1, b1 = _pairs(60, 0, 400, 40)
    a2, b2 = _pairs(0, 5, 455, 40)
    c = claims.paired_claim("A beats B", "A", np.stack([a1, a2]), "B", np.stack([b1, b2]))
    assert c.p_value < 0.05 and c.verdict == "inconclusive" and "seeds disagree in sign" in c.evidence
    assert "per seed +0.120/-0.010 (spread 0.130)" in c.evidence
    both = claims.paired_claim("A beats B", "A", np.stack([a1, a1]), "B", np.stack([b1, b1]))
    assert both.verdict == "reproduced" and "2 seed(s)" in both.evidence


def test_paired_claim_on_probabilities_of_a_random_model():
    rng = np.random.default_rng(0)
    pa = rng.uniform(0.6, 1.0, 300)
    c = claims.paired_claim("A beats B", "A", pa, "B", pa - 0.2)
    assert c.test == "paired t" and c.verdict == "reproduced"
    assert claims.paired_claim("B beats A", "B", pa - 0.2, "A", pa).verdict == "not reproduced"
    with pytest.raises(ValueError, match="same images"):
        claims.paired_claim("x", "A", pa, "B", pa[:-1])


# ----------------------------------------------------------------------------- unpaired_claim
@pytest.mark.parametrize("a,b,effect,verdict", [
    (_acc(900, 1000), _acc(700, 1000), None, "reproduced"),
    (_acc(700, 1000), _acc(900, 1000), None, "not reproduced"),
    (_acc(800, 1000), _acc(800, 1000), 0.1, "not reproduced"),   # powered to see 10 points, saw nothing
    (_acc(16, 20), _acc(14, 20), 0.05, "inconclusive"),            # 20 images a side
])
def test_unpaired_claim_verdicts(a, b, effect, verdict):
    c = claims.unpaired_claim("A beats B", "A", a, "B", b, effect=effect)
    assert c.verdict == verdict, c.evidence
    assert c.test.startswith("score")


# ------------------------------------------------------------------------- non_inferior_claim
def test_non_inferior_claim_verdicts():
    a, b = _pairs(10, 10, 900, 80)
    assert claims.non_inferior_claim("A within 3 points of B", "A", a, "B", b, 0.03).verdict == "reproduced"
    worse_a, worse_b = _pairs(0, 150, 750, 100)  # A 15 points below B
    assert claims.non_inferior_claim("A within 3 points of B", "A", worse_a, "B", worse_b, 0.03).verdict == "not reproduced"
    edge_a, edge_b = _pairs(0, 60, 1800, 140)  # A exactly 3 points below B on 2,000 images: a powered null
    c = claims.non_inferior_claim("A within 3 points of B", "A", edge_a, "B", edge_b, 0.03)
    assert c.verdict == "not reproduced" and c.test.startswith("Tango") and "margin 0.030" in c.evidence
    small_a, small_b = _pairs(1, 2, 15, 2)
    assert claims.non_inferior_claim("A within 3 points of B", "A", small_a, "B", small_b, 0.03).verdict == "inconclusive"
    unp = claims.non_inferior_claim("A within 3 points of B", "A", _acc(950, 1000), "B", _acc(955, 1000), 0.03, paired=False)
    assert unp.verdict == "reproduced" and unp.test.startswith("score")
    with pytest.raises(ValueError, match="margin"):
        claims.non_inferior_claim("x", "A", a, "B", b, 0.0)


# ------------------------------------------------------------------------- mean_greater_claim
def test_mean_greater_claim_verdicts():
    rng = np.random.default_rng(0)
    base = rng.normal(0.2, 0.05, 400)
    assert claims.mean_greater_claim("A > B", "A", base + 0.05, "B", base, paired=True).verdict == "reproduced"
    assert claims.mean_greater_claim("A > B", "A", base, "B", base + 0.05, paired=True).verdict == "not reproduced"
    same = claims.mean_greater_claim("A > B", "A", base, "B", rng.permutation(base), paper="0.25 vs 0.20", effect=0.05)
    assert same.verdict == "not reproduced" and same.test == "Welch t"
    few = claims.mean_greater_claim("A > B", "A", base[:5] + 0.01, "B", base[5:10], effect=0.01)
    assert few.verdict == "inconclusive"
    with pytest.raises(ValueError, match="at least 2"):
        claims.mean_greater_claim("A > B", "A", [1.0], "B", [1.0, 2.0])


# ---------------------------------------------------------------------------- threshold_claim
def test_threshold_claim_verdicts():
    assert claims.threshold_claim("PGD at 0.5 leaves <= 5 %", "PGD", _acc(0, 200), 0.05).verdict == "reproduced"
    assert claims.threshold_claim("PGD at 0.5 leaves <= 5 %", "PGD", _acc(60, 200), 0.05).verdict == "not reproduced"
    at = claims.threshold_claim("PGD at 0.5 leaves <= 5 %", "PGD", _acc(100, 2000), 0.05)  # at the threshold, powered
    assert at.verdict == "not reproduced"
    few = claims.threshold_claim("PGD at 0.5 leaves <= 5 %", "PGD", _acc(0, 40), 0.05)  # 0 of 40 cannot be significant
    assert few.verdict == "inconclusive" and "none up to the bound" in few.evidence
    assert claims.threshold_claim("clean above 90 %", "clean", _acc(980, 1000), 0.9, below=False).verdict == "reproduced"


# ----------------------------------------------------------------- untested and both counts
def test_untested_claims_say_what_they_need():
    c = claims.untested("The HR loss helps on SVHN", "SVHN", "not in the embedded data")
    assert c.verdict == "not tested at this profile" and c.evidence == "needs SVHN; not in the embedded data"
    with pytest.raises(ValueError, match="needs"):
        claims.untested("x", "")
    with pytest.raises(ValueError, match="unknown verdict"):
        claims.Claim("x", "maybe", "")


def test_counted_both_ways():
    a, b = _pairs(60, 10, 380, 50)
    yes = claims.paired_claim("c", "A", a, "B", b)
    no = claims.paired_claim("c", "B", b, "A", a)
    agree = claims.counted_both_ways("A beats B", yes, yes)
    assert agree.verdict == "reproduced" and agree.evidence.startswith("both counts agree")
    split = claims.counted_both_ways("A beats B", yes, no)
    assert split.verdict == "inconclusive" and split.evidence.startswith("depends on how the attack on a random model is counted")
    assert "re-classified with fresh passes: REPRODUCED" in split.evidence and "the attack's own count: NOT REPRODUCED" in split.evidence
    assert claims.counted_both_ways("B beats A", no, no).verdict == "not reproduced"


# ------------------------------------------------------------------------------------ Ledger
def test_ledger_applies_holm_counts_every_claim_and_prints_stably(capsys):
    a, b = _pairs(14, 4, 150, 32)  # p ~ 0.015 alone
    ledger = claims.Ledger("paper X")
    ledger.add(claims.paired_claim("borderline", "A", a, "B", b))
    assert ledger.final()[0].verdict == "reproduced"  # one test: significant
    for i in range(4):
        ledger.add(claims.paired_claim(f"null {i}", "A", a, "A'", a))
    ledger.untested("on SVHN", "SVHN")
    final = ledger.final()
    assert final[0].verdict == "inconclusive" and "not after Holm's correction" in final[0].evidence
    assert final[0].p_holm == pytest.approx(min(1.0, 5 * final[0].p_value))
    counts = ledger.counts()
    assert counts == {"reproduced": 0, "not reproduced": 4, "inconclusive": 1, "not tested at this profile": 1}
    assert sum(counts.values()) == len(ledger.claims) == 6
    assert ledger.summary() == ("paper X: 0 reproduced, 4 not reproduced, 1 inconclusive, 1 not tested at this profile "
                                "(6 claims; Holm's correction across 5 tests)")
    ledger.print()
    first = capsys.readouterr().out
    ledger.print()
    assert capsys.readouterr().out == first and first.startswith("1. [INCONCLUSIVE] borderline\n")
    rec = ledger.records()
    assert [r["verdict"] for r in rec][-1] == "not tested at this profile" and set(rec[0]) >= {"claim", "verdict", "evidence",
                                                                                          "p_value", "p_holm", "mde"}
    with pytest.raises(TypeError):
        ledger.add({"claim": "x"})


def test_ledger_corrects_both_parts_of_a_claim_counted_both_ways():
    a, b = _pairs(60, 10, 380, 50)
    ledger = claims.Ledger()
    ledger.add(claims.counted_both_ways("A beats B", claims.paired_claim("c", "A", a, "B", b),
                                        claims.paired_claim("c", "A", a, "B", b)))
    ledger.add(claims.Claim("a judgement without a test", "reproduced", "by inspection"))
    assert ledger.summary().endswith("(2 claims; Holm's correction across 2 tests)")
    assert [c.verdict for c in ledger.final()] == ["reproduced", "reproduced"]


def test_legacy_helpers_use_exact_tests_and_nan_means_untested():
    c = claims.greater_claim("A > B", "A", [0.95, 0.96], "B", [0.90, 0.91], 1000)
    assert c.verdict == "reproduced" and c.test.startswith("score") and "per seed +0.050/+0.050" in c.evidence
    assert claims.greater_claim("A > B", "A", [float("nan")], "B", [0.9], 100).verdict == "not tested at this profile"
    assert claims.no_worse_claim("A ~ B", "A", [0.70], "B", [0.95], 1000, 0.05).verdict == "not reproduced"
    assert claims.no_worse_claim("A ~ B", "A", [0.95], "B", [0.70], 1000, 0.05).verdict == "reproduced"
    df = claims.claims_frame([c])
    assert list(df.columns) == ["claim", "verdict", "evidence"] and len(df) == 1
