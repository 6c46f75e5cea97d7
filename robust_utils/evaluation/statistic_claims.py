"""Claims that are not a comparison of two accuracies: a statistic of the whole test set (judged by
a bootstrap over the images) and a table's published values (judged by confidence intervals).

    bootstrap_claim   "statistic > 0" for a statistic computed from per-image data, e.g. the gap
                      between two models' ||I - C||_F (Picot et al., section 3): a one-sided
                      percentile bootstrap over the images (scipy.stats.bootstrap, paired resampling)
    agreement_claim   "our table reproduces the paper's values within a tolerance": every cell's
                      Wilson interval inside [paper - tol, paper + tol] (reproduced), some cell's
                      interval entirely outside it (not reproduced), else inconclusive

Both return ``claims.Claim`` objects that a ``claims.Ledger`` collects; ``bootstrap_claim`` carries a
p-value and joins Holm's correction, ``agreement_claim`` is an interval rule outside it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from ..core import stats
from .claims import Claim, judge

Z_POWER = 0.8416212335729143  # the standard normal's 0.8 quantile: power 0.8


def bootstrap_claim(claim: str, label: str, statistic: Callable[..., float], data: Sequence[np.ndarray], *,
                    effect: float, paper: str = "", alpha: float = 0.05, resamples: int = 1000,
                    seed: int = 0) -> Claim:
    """The claim "statistic(*data) > 0", judged by a one-sided bootstrap over the images.

    The images are resampled with replacement, the same indices for every array of ``data``
    (paired), ``resamples`` times (``scipy.stats.bootstrap``); the p-value is the share of
    bootstrap statistics <= 0 (the opposite one: >= 0), and the smallest detectable difference is
    (z_{1 - alpha} + z_{0.8}) times the bootstrap standard error. Verdicts as ``claims.judge``.

    Args:
        label: what the statistic measures (for the evidence).   statistic: maps the arrays (each
            (N, ...), indexed along axis 0) to a float.   data: the per-image arrays, same N.
        effect: the paper's value of the statistic (the difference the test must detect).
        resamples: >= 100.   seed: the resampling seed (the same seed gives the same verdict).
    Raises:
        ValueError: arrays of different lengths, fewer than 2 images, resamples < 100, effect <= 0.
    """
    arrays = [np.asarray(d) for d in data]
    n = len(arrays[0])
    if n < 2 or any(len(a) != n for a in arrays):
        raise ValueError(f"data must hold >= 2 images, the same number in every array; got {[len(a) for a in arrays]}")
    if resamples < 100 or not effect > 0:
        raise ValueError(f"need resamples >= 100 and effect > 0, got {resamples}, {effect}")
    observed = float(statistic(*arrays))
    boot = sps.bootstrap(tuple(arrays), lambda *a: statistic(*a), paired=True, vectorized=False, n_resamples=resamples,
                         method="percentile", random_state=np.random.default_rng(seed)).bootstrap_distribution
    boot = np.asarray(boot, dtype=float)
    p, p_opp = (float((boot <= 0).sum() + 1) / (boot.size + 1), float((boot >= 0).sum() + 1) / (boot.size + 1))
    z = float(sps.norm.ppf(1 - alpha))
    mde = (z + Z_POWER) * float(boot.std(ddof=1))
    measured = f"ours: {label} {observed:+.3f} (bootstrap over {n} images, {resamples} resamples)"
    return judge(Claim(claim, "inconclusive", "", "bootstrap over images", p, p_opp, None, mde, float(effect), alpha,
                       measured, paper))


def agreement_claim(claim: str, cells: Sequence[tuple[str, int, int, float]], tolerance: float, *,
                    confidence: float = 0.95) -> Claim:
    """The claim "our numbers reproduce the paper's values within ``tolerance``", cell by cell.

    Each cell is (label, k correct, n trials, the paper's value); its Wilson interval at
    ``confidence`` (``core.stats.accuracy_interval``) decides: every interval inside
    [paper - tolerance, paper + tolerance]: "reproduced"; some interval entirely outside it:
    "not reproduced" (that cell differs from the paper by more than the tolerance); otherwise
    "inconclusive" (too few images to tell).

    Args:
        cells: at least one (label, k, n, paper) with 0 <= k <= n, n >= 1 (pool seeds as S x N trials).
        tolerance: in (0, 1), absolute.
    Raises:
        ValueError: no cells, a bad tolerance, bad counts.
    """
    if not cells or not 0 < tolerance < 1:
        raise ValueError(f"need at least one cell and 0 < tolerance < 1, got {len(cells)} cells, {tolerance}")
    outside, unsure = [], []
    for label, k, n, paper in cells:
        lo, hi = stats.accuracy_interval(int(k), int(n), confidence)
        if hi < paper - tolerance or lo > paper + tolerance:
            outside.append((label, k / n - paper))
        elif lo < paper - tolerance or hi > paper + tolerance:
            unsure.append(label)
    verdict = "not reproduced" if outside else ("inconclusive" if unsure else "reproduced")
    worst = max(((label, k / n - paper) for label, k, n, paper in cells), key=lambda t: abs(t[1]))
    evidence = (f"{len(cells) - len(outside) - len(unsure)} of {len(cells)} cells certainly within {tolerance:.2f} of the "
                f"paper, {len(outside)} certainly outside, {len(unsure)} undecided ({confidence:.0%} Wilson intervals); "
                f"largest gap {worst[1]:+.3f} ({worst[0]})")
    return Claim(claim, verdict, evidence, test="Wilson intervals")


__all__ = ["bootstrap_claim", "agreement_claim"]
