"""The basic sanity checks of an evaluation (Carlini et al. 2019, "On evaluating adversarial
robustness", arXiv:1902.06705, section 5 and the appendix checklist), as exact tests.

Each check is a rule that can fail, with three outcomes:

    fail           the data show the violation at level alpha (e.g. the iterative attack leaves
                   significantly more points correct than the single-step one);
    pass           the data show the expected order at level alpha, or no violation was seen by a
                   test that could have seen one of ``drop`` (10 points by default: its smallest
                   detectable difference is <= drop);
    inconclusive   no violation seen, but the test could not have seen one of that size.

Each row also carries "mde": the smallest detectable difference of a comparison that found
nothing significant either way (0 when the outcome was significant), i.e. what it could have missed.

An accuracy is either a float (an aggregate on n points: the two sides are compared by the score
test of two proportions) or a per-example correctness (N,) (booleans, or probabilities for a
random model: compared by the exact McNemar test, or the paired t-test, on the same points).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..core import stats
from ..core.checks import check_positive_int

STATUSES = ("pass", "fail", "inconclusive", "info")


def _as_correct(value, n: int | None, name: str) -> np.ndarray:
    """Per-example correctness (N,), or n booleans holding round(value * n) ones for an aggregate."""
    if isinstance(value, (int, float, np.floating)):
        if n is None:
            raise ValueError(f"{name}: an aggregate accuracy needs n (the points behind it)")
        if not 0 <= float(value) <= 1:
            raise ValueError(f"{name}: accuracy must lie in [0, 1], got {value}")
        return np.arange(n) < round(float(value) * n)
    arr, _ = stats.correctness(value, name)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ValueError(f"{name}: per-example correctness must have shape ({n if n is not None else 'N'},), got {arr.shape}")
    return arr


def _paired(a, b) -> bool:
    return not isinstance(a, (int, float, np.floating)) and not isinstance(b, (int, float, np.floating))


def _status(p_violation: float, p_order: float, mde: float, alpha: float, drop: float) -> tuple[str, float]:
    """(status, the mde that mattered): fail on a significant violation, pass on a significant
    expected order or a powered null result, inconclusive otherwise."""
    if p_violation <= alpha:
        return "fail", 0.0
    if p_order <= alpha:
        return "pass", 0.0
    return ("pass" if mde <= drop else "inconclusive"), mde


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def _tail(p: float, mde: float, p_order: float | None = None) -> str:
    """'violation p ..., [expected order p ..., ]smallest detectable ...' (rounded, stable)."""
    order = f"expected order {_p(p_order)}, " if p_order is not None else ""
    return f"violation {_p(p)}, {order}smallest detectable {'none' if not np.isfinite(mde) else f'{mde:.3f}'}"


def compare(a, b, n: int | None = None, alpha: float = 0.05) -> tuple[float, float, float, float, float]:
    """(accuracy a, accuracy b, p of H1 "a > b", p of H1 "a < b", smallest detectable difference):
    paired exact tests when both are per-example on the same points, else the score test of two
    proportions."""
    ca, cb = _as_correct(a, n, "a"), _as_correct(b, n, "b")
    if _paired(a, b):
        if ca.shape != cb.shape:
            raise ValueError(f"per-example correctness on different points: {ca.shape} and {cb.shape}")
        test, mde = stats.paired_test, stats.mde_paired(ca, cb, alpha)
    else:
        test, mde = stats.unpaired_test, stats.mde_unpaired(ca.size, cb.size, float(cb.mean()), alpha)
    return float(ca.mean()), float(cb.mean()), test(ca, cb, "greater").p_value, test(ca, cb, "less").p_value, mde


def at_least_as_strong(stronger: tuple[str, object], weaker: tuple[str, object], n: int | None = None,
                       alpha: float = 0.05, drop: float = 0.10) -> dict:
    """Row of the check "``stronger`` is at least as strong as ``weaker``" (accuracy under it is not
    higher): fails when accuracy under ``stronger`` is significantly higher. Every row function
    returns {check, status, evidence, mde} (mde: the smallest detectable difference behind it).

    Args:
        stronger, weaker: (label, accuracy float or per-example correctness (N,)).
        n: points behind an aggregate accuracy.   alpha: level.   drop: the violation it must be able to see.
    """
    acc_s, acc_w, p, p_order, mde = compare(stronger[1], weaker[1], n, alpha)
    status, missed = _status(p, p_order, mde, alpha, drop)
    return {"check": f"{stronger[0]} is at least as strong as {weaker[0]}", "status": status,
            "evidence": f"accuracy {acc_s:.3f} vs {acc_w:.3f} ({_tail(p, mde, p_order)})", "mde": missed}


def never_rises(sweep: Mapping[float, object], n: int | None = None, alpha: float = 0.05, drop: float = 0.10) -> dict:
    """Row of the check "accuracy never rises as eps grows" over consecutive budgets of ``sweep``
    ({eps: accuracy or per-example correctness}); fails at the first significant rise."""
    eps = sorted(sweep)
    worst, largest = ("pass", []), 0.0
    for lo, hi in zip(eps, eps[1:]):
        acc_hi, acc_lo, p, p_order, mde = compare(sweep[hi], sweep[lo], n, alpha)
        status, missed = _status(p, p_order, mde, alpha, drop)
        largest = max(largest, missed)
        if status == "fail":
            worst = ("fail", worst[1] + [f"rises between eps {lo:g} and {hi:g} ({_tail(p, mde, p_order)})"])
        elif status == "inconclusive" and worst[0] == "pass":
            worst = ("inconclusive", [f"between eps {lo:g} and {hi:g}: {_tail(p, mde, p_order)}"])
    accs = ", ".join(f"{e:g}: {float(np.mean(_as_correct(sweep[e], n, f'eps {e:g}'))):.3f}" for e in eps)
    return {"check": "accuracy never rises as eps grows", "status": worst[0],
            "evidence": accs + ("; " + "; ".join(worst[1]) if worst[1] else ""), "mde": largest}


def reaches_zero(label: str, accuracy, n: int | None = None, zero_tol: float = 0.05, alpha: float = 0.05,
                 drop: float = 0.10) -> dict:
    """Row of the check "``label`` drives accuracy to ~0 (<= zero_tol)": fails when accuracy is
    significantly above zero_tol (exact binomial test); passes when it is at most zero_tol and the
    test could have seen zero_tol + drop; inconclusive otherwise."""
    c = _as_correct(accuracy, n, label)
    p = stats.one_sample_test(c, zero_tol, "greater").p_value
    mde = stats.mde_one_sample(c.size, zero_tol, alpha, alternative="greater")
    status = "fail" if p <= alpha else "pass" if c.mean() <= zero_tol and mde <= drop else "inconclusive"
    return {"check": f"{label} drives accuracy to ~0 (<= {zero_tol:g})", "status": status,
            "evidence": f"accuracy {c.mean():.3f} (above {zero_tol:g}: {_tail(p, mde)})", "mde": 0.0 if status == "fail" else mde}


def sanity_checks(sweep: Mapping[float, object], n: int | None, single_step: tuple[str, object], iterative: tuple[str, object],
                  white_box: tuple[str, object] | None = None, black_box: tuple[str, object] | None = None,
                  transfer: tuple[str, object] | None = None, zero_tol: float = 0.05, alpha: float = 0.05,
                  drop: float = 0.10) -> pd.DataFrame:
    """The basic sanity checks of an evaluation (Carlini et al. 2019), applied to measured accuracies.
    A failed check means the attack, not the defense, is the likely culprit (gradient masking, too
    few steps, a bug).

    Checks: 1. accuracy never rises as eps grows (the ``sweep`` of the strongest attack); 2. the
    largest eps of the sweep drives accuracy to ~0 (<= ``zero_tol``); 3. the iterative attack is at
    least as strong as the single-step one; 4. white-box at least as strong as black-box; 5.
    white-box at least as strong as the transfer attack. Checks 4-5 are skipped when not given.

    Args:
        sweep: {eps: accuracy}.   n: points behind aggregate accuracies (None if all are per-example).
        single_step, iterative, white_box, black_box, transfer: (label, accuracy) pairs; an accuracy
            is a float in [0, 1] or a per-example correctness (N,) (then compared on the same points).
        zero_tol, alpha, drop: the thresholds (module docstring).
    Returns:
        DataFrame with columns check, status ("pass", "fail", "inconclusive"), passed (no violation
        found: status != "fail"; read status to know whether one could have been seen) and evidence
        (rounded numbers, p-values, smallest detectable differences).
    Raises:
        ValueError: empty sweep, n < 1, an accuracy outside [0, 1], correctness of the wrong length.
    """
    if not sweep:
        raise ValueError("sweep must hold at least one (eps, accuracy) pair")
    if n is not None:
        check_positive_int(n, "n")
    largest = max(sweep)
    rows = [never_rises(sweep, n, alpha, drop),
            reaches_zero(f"the largest eps ({largest:g})", sweep[largest], n, zero_tol, alpha, drop),
            at_least_as_strong(iterative, single_step, n, alpha, drop)]
    if white_box is not None and black_box is not None:
        rows.append(at_least_as_strong(white_box, black_box, n, alpha, drop))
    if white_box is not None and transfer is not None:
        rows.append(at_least_as_strong(white_box, transfer, n, alpha, drop))
    df = pd.DataFrame(rows, columns=["check", "status", "evidence"])
    df.insert(2, "passed", df.status != "fail")
    return df


__all__ = ["STATUSES", "compare", "at_least_as_strong", "never_rises", "reaches_zero", "sanity_checks"]
