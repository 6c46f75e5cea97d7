"""Checking a paper's claims against our numbers, with a verdict a reader can trust.

Verdicts: "reproduced", "not reproduced", "inconclusive" (the difference is within the noise
of the measurement), "not tested at this profile".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not tested at this profile")


@dataclass
class Claim:
    """A claim of a paper, our verdict on it, and the evidence (our numbers, the paper's)."""

    claim: str
    verdict: str
    evidence: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; valid: {VERDICTS}")


def _mean_se(runs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(runs, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0)


def accuracy_gap(a_runs: Sequence[float], b_runs: Sequence[float], n: int, z: float = 2.0) -> tuple[float, float, str]:
    """Is accuracy A greater than accuracy B, beyond the noise?

    The noise combines the binomial standard error of two accuracies measured on n test points,
    sqrt(a(1-a)/n + b(1-b)/n), and, with several seeds, the standard error of the mean of the
    per-seed differences.

    Args:
        a_runs, b_runs: accuracies in [0, 1], one per seed (paired by seed).   n: test points per run.
        z: how many standard errors count as a real difference.
    Returns:
        (mean difference a - b, its standard error, verdict): "reproduced" if the difference
        exceeds z standard errors, "not reproduced" if it is below -z of them, else "inconclusive".
    """
    if len(a_runs) != len(b_runs) or not len(a_runs):
        raise ValueError("a_runs and b_runs must be non-empty and of equal length (one value per seed)")
    a, _ = _mean_se(a_runs)
    b, _ = _mean_se(b_runs)
    d, se_seeds = _mean_se([x - y for x, y in zip(a_runs, b_runs)])
    se_binom = math.sqrt(max(a * (1 - a), 0) / (n * len(a_runs)) + max(b * (1 - b), 0) / (n * len(b_runs)))
    se = math.sqrt(se_binom**2 + se_seeds**2)
    if d > z * se:
        verdict = "reproduced"
    elif d < -z * se:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return d, se, verdict


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a DataFrame (claim, verdict, evidence)."""
    return pd.DataFrame([asdict(c) for c in claims], columns=["claim", "verdict", "evidence"])


def print_claims(claims: Sequence[Claim]) -> None:
    """Print claims as plain text (stable for nbval: no timings, rounded numbers only)."""
    for i, c in enumerate(claims, 1):
        print(f"{i}. [{c.verdict.upper()}] {c.claim}\n   {c.evidence}")


def _evidence(a_label, a_runs, b_label, b_runs, d, se, n, paper) -> str:
    text = (f"ours: {a_label} {np.mean(a_runs):.3f} vs {b_label} {np.mean(b_runs):.3f} "
            f"(difference {d:+.3f} ± {se:.3f}; {len(a_runs)} seed(s), {n} test images)")
    return text + (f"; paper: {paper}" if paper else "")


def greater_claim(claim: str, a_label: str, a_runs: Sequence[float], b_label: str, b_runs: Sequence[float],
                  n: int, paper: str = "") -> Claim:
    """The claim "accuracy A > accuracy B", judged by ``accuracy_gap`` (2 standard errors)."""
    d, se, verdict = accuracy_gap(a_runs, b_runs, n)
    return Claim(claim, verdict, _evidence(a_label, a_runs, b_label, b_runs, d, se, n, paper))


def no_worse_claim(claim: str, a_label: str, a_runs: Sequence[float], b_label: str, b_runs: Sequence[float],
                   n: int, tolerance: float, paper: str = "") -> Claim:
    """The claim "accuracy A is not below accuracy B by more than ``tolerance``".

    Reproduced if the mean difference A - B >= -tolerance; not reproduced if even the
    difference plus 2 standard errors is below -tolerance; inconclusive in between.
    """
    d, se, _ = accuracy_gap(a_runs, b_runs, n)
    verdict = "reproduced" if d >= -tolerance else ("inconclusive" if d + 2 * se >= -tolerance else "not reproduced")
    return Claim(claim, verdict, _evidence(a_label, a_runs, b_label, b_runs, d, se, n, paper)
                 + f"; tolerance {tolerance:.3f}")


def mean_greater_claim(claim: str, a_label: str, a_values: Sequence[float], b_label: str, b_values: Sequence[float],
                       paper: str = "", z: float = 2.0) -> Claim:
    """The claim "mean of A > mean of B" for per-sample measurements (e.g. rho_adv's ratios).

    Reproduced if mean(A) - mean(B) > z standard errors (the two-sample SE
    sqrt(var_A/n_A + var_B/n_B)), not reproduced if it is < -z SE, inconclusive in between.

    Args:
        a_values, b_values: per-sample values (any sequence or 1-d tensor of floats, n >= 2 each).
    """
    a = np.asarray(a_values, dtype=float)
    b = np.asarray(b_values, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("mean_greater_claim needs at least 2 values on each side")
    d = a.mean() - b.mean()
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    verdict = "reproduced" if d > z * se else ("not reproduced" if d < -z * se else "inconclusive")
    evidence = (f"{a_label} {a.mean():.4f} vs {b_label} {b.mean():.4f}: difference {d:+.4f} "
                f"(2 SE {z * se:.4f}, n {a.size}/{b.size})" + (f"; paper: {paper}" if paper else ""))
    return Claim(claim, verdict, evidence)
