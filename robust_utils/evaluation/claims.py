"""Checking a paper's claims against our numbers, with verdicts a reviewer can sign.

Verdicts: "reproduced", "not reproduced", "inconclusive", "not tested at this profile".

Every claim helper runs a one-sided test in the claimed direction (and in the opposite one) with
``core.stats`` and decides, at level ``alpha``:

    reproduced       significant in the claimed direction (after Holm's correction across the
                     notebook's claims, in a ``Ledger``), and, with several seeds, every seed agrees;
    not reproduced   significant in the opposite direction, or not significant although the test
                     had the power (0.8) to detect the paper's effect (its smallest detectable
                     difference, "mde", is at most the effect);
    inconclusive     otherwise: underpowered (the evidence prints the mde), significant alone but
                     not after Holm's correction, or seeds that disagree in sign.

The effect sought is the paper's own difference when it gives one (``effect=``), else
``DEFAULT_EFFECT`` (5 points of accuracy) or, for continuous values, half a standard deviation
(Cohen's "medium" effect). Evidence strings carry rounded numbers only (nbval compares them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import stats

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not tested at this profile")
DEFAULT_EFFECT = 0.05
UNTESTED = VERDICTS[3]


@dataclass
class Claim:
    """A claim of a paper, our verdict on it, and the evidence.

    Attributes:
        claim, verdict, evidence: what results.json records (evidence is rendered from the rest).
        test: the test's name.   p_value / p_opposite: one-sided p-values in the claimed / opposite
            direction.   p_holm: p_value after Holm's correction (set by ``Ledger``).
        mde: smallest difference the test detects (alpha, power 0.8).   effect: the difference it
            had to detect.   alpha: the level.   measured: our numbers, as text.   paper: the paper's.
        seeds_agree: every seed's difference lies on the claimed side.   parts: sub-claims that
            must all hold (``counted_both_ways``).
    """

    claim: str
    verdict: str
    evidence: str
    test: str = ""
    p_value: float | None = None
    p_opposite: float | None = None
    p_holm: float | None = None
    mde: float | None = None
    effect: float | None = None
    alpha: float = 0.05
    measured: str = ""
    paper: str = ""
    seeds_agree: bool = True
    parts: tuple = field(default=(), repr=False)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; valid: {VERDICTS}")

    def record(self) -> dict:
        """{claim, verdict, evidence} plus test, p_value, p_holm, mde, effect where known (results.json)."""
        out = {"claim": self.claim, "verdict": self.verdict, "evidence": self.evidence}
        for k in ("test", "p_value", "p_holm", "mde", "effect"):
            v = getattr(self, k)
            if v not in (None, ""):
                out[k] = v if isinstance(v, str) else (None if not np.isfinite(v) else round(float(v), 6))
        return out


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def _mde(m: float) -> str:
    return "none up to the bound" if not np.isfinite(m) else f"{m:.3f}"


def _verdict(c: Claim, p_holm: float) -> tuple[str, str]:
    """(verdict, reason) of a statistical claim at its level, given its Holm-adjusted p-value."""
    if p_holm <= c.alpha and c.seeds_agree:
        return "reproduced", ""
    if c.p_opposite is not None and c.p_opposite <= c.alpha:
        return "not reproduced", "significant in the opposite direction"
    if c.p_value <= c.alpha:
        return "inconclusive", ("the seeds disagree in sign" if not c.seeds_agree
                                else "significant alone, not after Holm's correction")
    if c.mde <= c.effect:
        return "not reproduced", "no effect found by a test that could detect the paper's"
    return "inconclusive", "underpowered: the test could not detect the effect sought"


def judge(c: Claim, p_holm=None) -> Claim:
    """``c`` with its verdict and evidence decided at level c.alpha from ``p_holm`` (default: its own
    p-value, a single test; for a claim with parts, one value per part). Claims without a test,
    and untested ones, are returned unchanged."""
    if c.parts:
        return _combine(c, [judge(p, h) for p, h in zip(c.parts, p_holm if p_holm is not None else [None] * len(c.parts))])
    if c.p_value is None or c.verdict == UNTESTED:
        return c
    p_holm = c.p_value if p_holm is None else p_holm
    verdict, reason = _verdict(c, p_holm)
    text = f"{c.measured}; {c.test}: {_p(c.p_value)}"
    if p_holm != c.p_value:
        text += f" (Holm {_p(p_holm)[2:]})"
    text += f"; smallest detectable difference {_mde(c.mde)} vs {c.effect:.3f} sought"
    text += (f" ({reason})" if reason else "") + (f"; paper: {c.paper}" if c.paper else "")
    return replace(c, verdict=verdict, evidence=text, p_holm=p_holm)


def _counts_text(a, b, a_label, b_label, s: stats.SeedSummary, paired: bool) -> str:
    n = f"{a.shape[-1]}" if paired or a.shape[-1] == b.shape[-1] else f"{a.shape[-1]}/{b.shape[-1]}"
    text = (f"ours: {a_label} {float(np.mean(a)):.3f} vs {b_label} {float(np.mean(b)):.3f} "
            f"(difference {float(np.mean(a)) - float(np.mean(b)):+.3f}; {len(s.per_seed)} seed(s), {n} images"
            f"{', paired' if paired else ''})")
    if len(s.per_seed) > 1:
        text += f"; per seed {'/'.join(f'{d:+.3f}' for d in s.per_seed)} (spread {s.spread:.3f})"
    return text


def _accuracy_claim(claim, a_label, a, b_label, b, paired: bool, delta0: float, effect: float, paper: str,
                    alpha: float, measured_suffix: str = "") -> Claim:
    a_arr, _ = stats.correctness(a, a_label)
    b_arr, _ = stats.correctness(b, b_label)
    if paired and a_arr.shape != b_arr.shape:
        raise ValueError(f"{a_label} and {b_label} must hold the same images (and seeds): shapes {a_arr.shape} and "
                         f"{b_arr.shape}; use unpaired_claim for different images")
    test = stats.paired_test if paired else stats.unpaired_test
    t, opp = test(a_arr, b_arr, "greater", delta0), test(a_arr, b_arr, "less", delta0)
    if paired:
        mde = stats.mde_paired(a_arr, b_arr, alpha, delta0=delta0)
    else:
        mde = stats.mde_unpaired(a_arr.size, b_arr.size, min(max(float(b_arr.mean()) + delta0, 0.0), 1.0), alpha)
    s = stats.seed_summary(a_arr, b_arr, delta0) if a_arr.ndim == 2 and b_arr.ndim == 2 else stats.seed_summary(
        a_arr.ravel(), b_arr.ravel(), delta0)
    measured = _counts_text(a_arr, b_arr, a_label, b_label, s, paired) + measured_suffix
    return judge(Claim(claim, "inconclusive", "", t.test, t.p_value, opp.p_value, None, mde, effect - delta0, alpha,
                       measured, paper, s.agree))


def paired_claim(claim: str, a_label: str, a, b_label: str, b, *, effect: float | None = None, paper: str = "",
                 alpha: float = 0.05) -> Claim:
    """The claim "A is more often correct than B" for two models (or attacks) on the same images.

    Args:
        a, b: per-example correctness, (N,) or (S, N) for S seeds on the same N images: booleans,
            or probabilities in [0, 1] of being correct (random models: the mean over fresh passes).
        effect: the paper's difference A - B (fraction), the effect the test must be able to detect;
            default ``DEFAULT_EFFECT``.   paper: the paper's numbers, as text.   alpha: the level.
    Test: exact McNemar (booleans) or the paired t-test (probabilities), pooled over the seeds;
    with seeds, "reproduced" also needs every seed's difference > 0.
    Raises:
        ValueError: shapes differ, values outside [0, 1].
    """
    return _accuracy_claim(claim, a_label, a, b_label, b, True, 0.0, DEFAULT_EFFECT if effect is None else effect,
                           paper, alpha)


def unpaired_claim(claim: str, a_label: str, a, b_label: str, b, *, effect: float | None = None, paper: str = "",
                   alpha: float = 0.05) -> Claim:
    """The claim "accuracy A > accuracy B" measured on different images (score test of two
    proportions, or Welch's t for probabilities). Arguments as ``paired_claim``; a and b may differ
    in length."""
    return _accuracy_claim(claim, a_label, a, b_label, b, False, 0.0, DEFAULT_EFFECT if effect is None else effect,
                           paper, alpha)


def non_inferior_claim(claim: str, a_label: str, a, b_label: str, b, margin: float, *, paired: bool = True,
                       effect: float = 0.0, paper: str = "", alpha: float = 0.05) -> Claim:
    """The claim "A is not worse than B by more than ``margin``" (H1: A - B > -margin), e.g.
    "accuracy under FGSM stays within 3 points of clean" (A = FGSM, B = clean, margin 0.03).

    Args:
        margin: > 0, a fraction.   paired: a and b on the same images (Tango's score test /
            paired t), else the score test of two proportions.   effect: the paper's A - B
            (default 0: the paper claims no difference); the test must detect effect + margin.
        Others as ``paired_claim``.
    Raises:
        ValueError: margin not in (0, 1), bad a or b.
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1), got {margin}")
    return _accuracy_claim(claim, a_label, a, b_label, b, paired, -margin, effect, paper, alpha,
                           f"; margin {margin:.3f}")


def mean_greater_claim(claim: str, a_label: str, a_values, b_label: str, b_values, paper: str = "", *,
                       paired: bool = False, effect: float | None = None, alpha: float = 0.05) -> Claim:
    """The claim "mean of A > mean of B" for per-sample continuous values (e.g. rho_adv's ratios):
    the paired t-test when both are on the same samples (``paired=True``), else Welch's t-test.

    A difference of gains is a mean too: "the calibrated model's gain over CE shrinks under PGD"
    is ``mean_greater_claim(..., gain_fgsm, ..., gain_pgd, paired=True)`` with the per-image gains
    ``correct_calibrated - correct_ce`` under each attack (values in {-1, 0, 1}).

    Args:
        a_values, b_values: 1-d sequences / tensors of floats, at least 2 each.
        effect: the paper's difference of means (same units); default half the observed standard
            deviation (Cohen's medium effect).
    Raises:
        ValueError: fewer than 2 values a side, non-finite values, paired lengths that differ.
    """
    t = stats.mean_test(a_values, b_values, paired, "greater")
    opp = stats.mean_test(a_values, b_values, paired, "less")
    a, b = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel() for v in (a_values, b_values))
    mde = stats.mde_means(a, b, paired, alpha)
    if effect is None:
        effect = 0.5 * float(np.std(a - b, ddof=1) if paired else np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    measured = (f"ours: {a_label} {a.mean():.3f} vs {b_label} {b.mean():.3f} (difference {a.mean() - b.mean():+.3f}; "
                f"n {a.size}/{b.size}{', paired' if paired else ''})")
    return judge(Claim(claim, "inconclusive", "", t.test, t.p_value, opp.p_value, None, mde, effect, alpha, measured, paper))


def threshold_claim(claim: str, label: str, a, threshold: float, *, below: bool = True, effect: float | None = None,
                    paper: str = "", alpha: float = 0.05) -> Claim:
    """The claim "accuracy of A is below ``threshold``" (``below=False``: above), on one image set:
    the exact binomial test (booleans) or a t-test (probabilities).

    Args:
        a: per-example correctness (N,) or (S, N).   threshold: in [0, 1].
        effect: how far beyond the threshold the paper's accuracy lies (e.g. threshold - paper);
            default ``DEFAULT_EFFECT``.
    Raises:
        ValueError: bad a, a threshold outside [0, 1].
    """
    arr, _ = stats.correctness(a, label)
    side, other = ("less", "greater") if below else ("greater", "less")
    t, opp = stats.one_sample_test(arr, threshold, side), stats.one_sample_test(arr, threshold, other)
    mde = stats.mde_one_sample(arr.size, threshold, alpha, alternative=side)
    measured = f"ours: {label} {arr.mean():.3f} on {arr.size} images, threshold {'<' if below else '>'} {threshold:.3f}"
    return judge(Claim(claim, "inconclusive", "", t.test, t.p_value, opp.p_value, None, mde,
                       DEFAULT_EFFECT if effect is None else effect, alpha, measured, paper))


def untested(claim: str, needs: str, evidence: str = "") -> Claim:
    """The verdict "not tested at this profile", with what testing it needs (e.g. "SVHN", "human
    raters", "10 training runs") and optional evidence (a measurement shown, not judged)."""
    if not needs:
        raise ValueError("say what the claim needs, e.g. needs='SVHN'")
    return Claim(claim, UNTESTED, f"needs {needs}" + (f"; {evidence}" if evidence else ""))


COUNTS = ("re-classified with fresh passes", "the attack's own count")


def _combine(c: Claim, parts: list[Claim]) -> Claim:
    verdicts = [p.verdict for p in parts]
    agree = len(set(verdicts)) == 1
    head = "both counts agree" if agree else "depends on how the attack on a random model is counted"
    text = head + ": " + "; ".join(f"{label}: {p.verdict.upper()} ({p.evidence})" for label, p in zip(COUNTS, parts))
    return replace(c, verdict=verdicts[0] if agree else "inconclusive", evidence=text, parts=tuple(parts))


def counted_both_ways(claim: str, reclassified: Claim, own_count: Claim) -> Claim:
    """One claim judged under two counts of an attack on a random model: its final iterate
    re-classified with fresh passes, and the attack's own count (fooled on one draw). Reproduced or
    not reproduced only when both agree; otherwise "inconclusive" with evidence that says the claim
    depends on how the attack is counted, both numbers shown. In a ``Ledger`` both tests join
    Holm's family."""
    return _combine(Claim(claim, "inconclusive", ""), [reclassified, own_count])


class Ledger:
    """Every claim of one paper, in order, including those not tested at this profile.

    ``add`` collects claims; ``final()`` applies Holm's correction across the tested claims (every
    p-value, parts included) and returns the final verdicts; ``counts``, ``print`` and ``records``
    read them. Args: paper: a name for the printout.
    """

    def __init__(self, paper: str = ""):
        self.paper = paper
        self.claims: list[Claim] = []

    def add(self, *claims: Claim) -> None:
        """Append claims (``Claim`` objects, in the paper's order)."""
        for c in claims:
            if not isinstance(c, Claim):
                raise TypeError(f"Ledger.add takes Claim objects, got {type(c).__name__}")
            self.claims.append(c)

    def untested(self, claim: str, needs: str, evidence: str = "") -> None:
        """Append a claim this profile cannot test (``untested``)."""
        self.add(untested(claim, needs, evidence))

    def _tested(self) -> list[tuple[int, int | None]]:
        return [(i, j) for i, c in enumerate(self.claims)
                for j in ([None] if not c.parts else range(len(c.parts)))
                if (c.parts[j] if j is not None else c).p_value is not None]

    def final(self) -> list[Claim]:
        """The claims with verdicts after Holm's correction across this ledger's tests."""
        index = self._tested()
        p = stats.holm([(self.claims[i].parts[j] if j is not None else self.claims[i]).p_value for i, j in index])
        adjusted: dict[int, list] = {}
        for (i, j), ph in zip(index, p):
            adjusted.setdefault(i, [None] * max(len(self.claims[i].parts), 1))[j or 0] = ph
        out = []
        for i, c in enumerate(self.claims):
            ph = adjusted.get(i)
            out.append(judge(c, ph if c.parts else (ph[0] if ph else None)))
        return out

    def counts(self) -> dict[str, int]:
        """{verdict: count} over the four verdicts; the counts add up to the number of claims."""
        final = self.final()
        out = {v: sum(c.verdict == v for c in final) for v in VERDICTS}
        assert sum(out.values()) == len(final)
        return out

    def summary(self) -> str:
        """One stable line: the four counts, the number of claims and of tests in Holm's family."""
        counts = self.counts()
        return (f"{self.paper + ': ' if self.paper else ''}" + ", ".join(f"{n} {v}" for v, n in counts.items())
                + f" ({len(self.claims)} claims; Holm's correction across {len(self._tested())} tests)")

    def print(self) -> None:
        """Print the final claims (``print_claims``) and the summary line."""
        print_claims(self.final())
        print(self.summary())

    def records(self) -> list[dict]:
        """The final claims as results.json entries (``Claim.record``)."""
        return [c.record() for c in self.final()]


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a DataFrame (claim, verdict, evidence)."""
    return pd.DataFrame([{k: asdict(c)[k] for k in ("claim", "verdict", "evidence")} for c in claims],
                        columns=["claim", "verdict", "evidence"])


def print_claims(claims: Sequence[Claim]) -> None:
    """Print claims as plain text (stable for nbval: no timings, rounded numbers only)."""
    for i, c in enumerate(claims, 1):
        print(f"{i}. [{c.verdict.upper()}] {c.claim}\n   {c.evidence}")


def _legacy(runs: Sequence[float], n: int) -> np.ndarray:
    """(S, n) booleans with round(accuracy * n) correct per seed: aggregate accuracies as correctness."""
    return np.stack([np.arange(n) < round(float(r) * n) for r in runs])


def greater_claim(claim: str, a_label: str, a_runs: Sequence[float], b_label: str, b_runs: Sequence[float],
                  n: int, paper: str = "", effect: float | None = None) -> Claim:
    """"accuracy A > accuracy B" from aggregate accuracies (one per seed) on n images each, judged
    as ``unpaired_claim`` (the pairing is unknown). Prefer ``paired_claim`` with per-example
    correctness. A NaN accuracy gives "not tested at this profile"."""
    if any(np.isnan(v) for v in [*a_runs, *b_runs]):
        return untested(claim, "a measurement this profile does not run")
    return unpaired_claim(claim, a_label, _legacy(a_runs, n), b_label, _legacy(b_runs, n), effect=effect, paper=paper)


def no_worse_claim(claim: str, a_label: str, a_runs: Sequence[float], b_label: str, b_runs: Sequence[float],
                   n: int, tolerance: float, paper: str = "", effect: float = 0.0) -> Claim:
    """"A is not below B by more than ``tolerance``" from aggregate accuracies, judged as
    ``non_inferior_claim(paired=False)``. Prefer per-example correctness."""
    if any(np.isnan(v) for v in [*a_runs, *b_runs]):
        return untested(claim, "a measurement this profile does not run")
    return non_inferior_claim(claim, a_label, _legacy(a_runs, n), b_label, _legacy(b_runs, n), tolerance,
                              paired=False, effect=effect, paper=paper)


__all__ = ["VERDICTS", "DEFAULT_EFFECT", "Claim", "judge", "paired_claim", "unpaired_claim", "non_inferior_claim",
           "mean_greater_claim", "threshold_claim", "untested", "counted_both_ways", "Ledger", "claims_frame",
           "print_claims", "greater_claim", "no_worse_claim"]
