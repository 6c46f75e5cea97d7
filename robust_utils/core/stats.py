"""Statistics of accuracies measured on a finite test set, on scipy.stats and statsmodels.

    accuracy_interval     Wilson or Clopper-Pearson interval for k correct of n
    mcnemar               exact McNemar test: two models on the same images (per-example booleans)
    paired_test           A - B on the same images: exact McNemar, Tango's score test (a margin), or a
                          paired t-test (probabilities of being correct, for random models)
    unpaired_test         A - B on different images: score test of two proportions, or Welch's t-test
    one_sample_test       one accuracy against a threshold: exact binomial test, or a t-test
    mean_test             per-sample continuous values (e.g. rho_adv ratios), paired or not: t-tests
    holm                  Holm's step-down correction of a family of p-values
    mde_*                 the smallest difference a test detects at level alpha with power 0.8
                          (exact for the exact tests, else a normal approximation)
    seed_summary          per-seed differences: do the seeds agree in sign, and their spread

Conventions: a per-example *correctness* is an array of shape (N,) or (S, N) (S seeds, the same
N images) holding booleans, or probabilities in [0, 1] of being correct (a random model's mean over
fresh forward passes). Accuracies and differences are fractions in [0, 1], never percents. Every
test takes ``delta0``, the difference A - B under the null hypothesis (0, or -margin for "A is not
worse than B by more than margin"), and ``alternative`` in ("greater", "less", "two-sided"):
"greater" is H1: A - B > delta0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower, normal_power_het
from statsmodels.stats.proportion import power_proportions_2indep, test_proportions_2indep

ALTERNATIVES = ("greater", "less", "two-sided")
_SM = {"greater": "larger", "less": "smaller", "two-sided": "two-sided"}  # statsmodels' names


@dataclass(frozen=True)
class HypothesisTest:
    """A test's outcome: its name, the estimate (A - B, or the one accuracy), the p-value, the
    number of pairs / points per side, the alternative, delta0, and for McNemar the discordant
    counts (b: A right and B wrong, c: A wrong and B right)."""

    test: str
    estimate: float
    p_value: float
    n: int
    alternative: str
    delta0: float = 0.0
    discordant: tuple = ()


def correctness(values, name: str = "correct") -> tuple[np.ndarray, bool]:
    """Validate a per-example correctness: returns (float64 array (N,) or (S, N), is_binary).

    Raises:
        ValueError: not 1-d or 2-d, empty, not finite, or outside [0, 1] (the message names ``name``).
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    a = np.asarray(values, dtype=np.float64)
    if a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(f"{name} must be a non-empty (N,) or (S, N) array of per-example correctness, "
                         f"got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name} must hold booleans or probabilities in [0, 1]")
    return a, bool(np.isin(a, (0.0, 1.0)).all())


def _check(alternative: str, alpha: float = 0.05, power: float = 0.8) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {ALTERNATIVES}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")


def accuracy_interval(k: int, n: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Interval for an accuracy of k correct out of n: "wilson" (score) or "clopper-pearson"
    (exact), from ``scipy.stats.binomtest``.

    Raises:
        ValueError: n < 1, k outside [0, n], confidence outside (0, 1), an unknown method.
    """
    if method not in ("wilson", "clopper-pearson"):
        raise ValueError(f"unknown method {method!r}; valid: 'wilson', 'clopper-pearson'")
    if not (isinstance(n, (int, np.integer)) and n >= 1 and 0 <= k <= n and 0 < confidence < 1):
        raise ValueError(f"need integers 0 <= k <= n, n >= 1 and 0 < confidence < 1; got k={k}, n={n}, {confidence}")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence, "exact" if method == "clopper-pearson" else "wilson")
    return float(ci.low), float(ci.high)


def mcnemar(a, b, alternative: str = "two-sided") -> HypothesisTest:
    """Exact McNemar test of A - B for two classifiers on the same images (McNemar 1947): the
    binomial test of b out of the b + c discordant pairs against 1/2 (``scipy.stats.binomtest``).

    Args:
        a, b: per-example booleans (N,) or (S, N) (pooled over seeds).   alternative: "greater"
            (A more often right), "less" or "two-sided".
    Raises:
        ValueError: shapes differ, values not boolean, an unknown alternative.
    """
    _check(alternative)
    (a, bin_a), (b, bin_b) = correctness(a, "a"), correctness(b, "b")
    if a.shape != b.shape or not (bin_a and bin_b):
        raise ValueError(f"mcnemar needs boolean a and b of one shape, got {a.shape} and {b.shape}")
    n10, n01 = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = 1.0 if n10 + n01 == 0 else stats.binomtest(n10, n10 + n01, 0.5, alternative).pvalue
    return HypothesisTest("exact McNemar", float((a - b).mean()), float(min(p, 1.0)), a.size, alternative, 0.0, (n10, n01))


def _tango(n10: int, n01: int, n: int, delta0: float, alternative: str) -> float:
    """Tango's (1998) score test of a paired difference of proportions p10 - p01 = delta0
    (Statistics in Medicine 17:891-908, eq. 3); at delta0 = 0 it is McNemar's z."""
    a, bb, c = 2 * n, -n10 - n01 + (2 * n - n10 + n01) * delta0, -n01 * delta0 * (1 - delta0)
    p01 = (-bb + math.sqrt(max(bb * bb - 4 * a * c, 0.0))) / (2 * a)
    var = n * (2 * p01 + delta0 * (1 - delta0))
    return _normal_p((n10 - n01 - n * delta0) / math.sqrt(var), alternative) if var > 0 else 1.0


def _normal_p(z: float, alternative: str) -> float:
    if alternative == "greater":
        return float(stats.norm.sf(z))
    if alternative == "less":
        return float(stats.norm.cdf(z))
    return float(min(1.0, 2 * stats.norm.sf(abs(z))))


def _t_p(d: np.ndarray, delta0: float, alternative: str) -> float:
    """One-sample t-test of mean(d) = delta0; constant d (zero variance, up to rounding) gives p 0 or 1."""
    if np.ptp(d) <= 1e-12:
        diff = float(d.mean() - delta0)
        hit = {"greater": diff > 1e-12, "less": diff < -1e-12, "two-sided": abs(diff) > 1e-12}[alternative]
        return 0.0 if hit else 1.0
    with warnings.catch_warnings():  # scipy's precision warning for nearly constant d: the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_1samp(d, delta0, alternative=alternative).pvalue)


def _welch_p(a: np.ndarray, b: np.ndarray, delta0: float, alternative: str) -> float:
    """Welch's t-test of mean(a) - mean(b) = delta0 (two constant samples: p 0 or 1)."""
    if np.ptp(a) <= 1e-12 and np.ptp(b) <= 1e-12:
        return _t_p(np.array([a.mean() - b.mean()]), delta0, alternative)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b + delta0, equal_var=False, alternative=alternative).pvalue)


def paired_test(a, b, alternative: str = "greater", delta0: float = 0.0) -> HypothesisTest:
    """A - B for two classifiers on the same images.

    Booleans: the exact McNemar test (delta0 = 0) or Tango's score test (delta0 != 0, e.g. a
    non-inferiority margin). Probabilities (random models): the paired t-test of the per-image
    differences (``scipy.stats.ttest_1samp``). (S, N) inputs are pooled over the S x N pairs
    (see ``seed_summary`` for the seeds' agreement).

    Raises:
        ValueError: shapes differ, values outside [0, 1], an unknown alternative, |delta0| >= 1.
    """
    _check(alternative)
    (a, bin_a), (b, bin_b) = correctness(a, "a"), correctness(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same images: shapes {a.shape} and {b.shape}")
    if not -1 < delta0 < 1:
        raise ValueError(f"delta0 must lie in (-1, 1), got {delta0}")
    if bin_a and bin_b:
        if delta0 == 0:
            return mcnemar(a, b, alternative)
        n10, n01 = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        return HypothesisTest("Tango score (paired)", float((a - b).mean()), _tango(n10, n01, a.size, delta0, alternative),
                          a.size, alternative, delta0, (n10, n01))
    d = (a - b).ravel()
    return HypothesisTest("paired t", float(d.mean()), _t_p(d, delta0, alternative), d.size, alternative, delta0)


def unpaired_test(a, b, alternative: str = "greater", delta0: float = 0.0) -> HypothesisTest:
    """A - B for accuracies measured on different images.

    Booleans: the score test of two independent proportions (Miettinen & Nurminen 1985;
    ``statsmodels.stats.proportion.test_proportions_2indep``). Probabilities: Welch's t-test.

    Raises:
        ValueError: values outside [0, 1], an unknown alternative, |delta0| >= 1.
    """
    _check(alternative)
    (a, bin_a), (b, bin_b) = correctness(a, "a"), correctness(b, "b")
    a, b = a.ravel(), b.ravel()
    if not -1 < delta0 < 1:
        raise ValueError(f"delta0 must lie in (-1, 1), got {delta0}")
    est = float(a.mean() - b.mean())
    if bin_a and bin_b:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # its odds ratio divides by 0 at accuracy 1
            warnings.simplefilter("ignore", RuntimeWarning)
            p = test_proportions_2indep(int(a.sum()), a.size, int(b.sum()), b.size, value=delta0, method="score",
                                        compare="diff", alternative=_SM[alternative]).pvalue
        return HypothesisTest("score (two proportions)", est, float(np.nan_to_num(p, nan=1.0)), min(a.size, b.size),
                          alternative, delta0)
    return HypothesisTest("Welch t", est, _welch_p(a, b, delta0, alternative), min(a.size, b.size), alternative, delta0)


def one_sample_test(a, threshold: float, alternative: str = "less") -> HypothesisTest:
    """One accuracy against a fixed threshold in [0, 1] ("less": H1 accuracy < threshold).

    Booleans: the exact binomial test (``scipy.stats.binomtest``); probabilities: a t-test.
    Raises:
        ValueError: values outside [0, 1], a threshold outside [0, 1], an unknown alternative.
    """
    _check(alternative)
    a, binary = correctness(a)
    a = a.ravel()
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if binary:
        p = stats.binomtest(int(a.sum()), a.size, threshold, alternative).pvalue
        return HypothesisTest("exact binomial", float(a.mean()), float(p), a.size, alternative, threshold)
    return HypothesisTest("one-sample t", float(a.mean()), _t_p(a, threshold, alternative), a.size, alternative, threshold)


def mean_test(a, b, paired: bool, alternative: str = "greater", delta0: float = 0.0) -> HypothesisTest:
    """mean(A) - mean(B) for per-sample continuous values (e.g. rho_adv's ratios): the paired
    t-test (same samples, ``paired=True``) or Welch's t-test.

    Raises:
        ValueError: fewer than 2 values a side, non-finite values, paired shapes that differ.
    """
    _check(alternative)
    a, b = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64).ravel() for v in (a, b))
    if a.size < 2 or b.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("mean_test needs at least 2 finite values on each side")
    if paired and a.shape != b.shape:
        raise ValueError(f"paired values must be on the same samples: {a.size} and {b.size} values")
    est = float(a.mean() - b.mean())
    if paired:
        return HypothesisTest("paired t", est, _t_p(a - b, delta0, alternative), a.size, alternative, delta0)
    return HypothesisTest("Welch t", est, _welch_p(a, b, delta0, alternative), min(a.size, b.size), alternative, delta0)


def holm(p_values) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the input order
    (``statsmodels.stats.multitest.multipletests(method="holm")``); an empty family gives []."""
    p = [float(v) for v in p_values]
    if not p:
        return []
    if any(not 0 <= v <= 1 for v in p):
        raise ValueError(f"p-values must lie in [0, 1], got {p}")
    return [float(v) for v in multipletests(p, method="holm")[1]]


def _smallest(power_at, target: float, hi: float) -> float:
    """The smallest difference in (0, hi] whose power reaches ``target`` (inf if none does). A power
    that is not a number (a degenerate variance at the bound) counts as 0."""
    def power(d: float) -> float:
        value = power_at(d)
        return 0.0 if not np.isfinite(value) else value

    if hi <= 1e-9 or power(hi) < target:
        return math.inf
    return float(optimize.brentq(lambda d: power(d) - target, 1e-9, hi, xtol=1e-6))


def _mcnemar_power(delta: float, n: int, psi: float, alpha: float) -> float:
    """Exact power of the one-sided exact McNemar test at level alpha: m ~ Bin(n, psi) discordant
    pairs, b | m ~ Bin(m, (psi + delta) / (2 psi)), rejecting where binom.sf(b - 1, m, 1/2) <= alpha."""
    m = np.arange(n + 1)
    k = stats.binom.isf(alpha, m, 0.5) + 1  # the smallest b that rejects, per m
    return float((stats.binom.pmf(m, n, psi) * stats.binom.sf(k - 1, m, min((psi + delta) / (2 * psi), 1.0))).sum())


def mde_paired(a, b, alpha: float = 0.05, power: float = 0.8, alternative: str = "greater", delta0: float = 0.0) -> float:
    """Smallest difference |A - B - delta0| that ``paired_test`` on these two correctness arrays
    detects with probability ``power`` at level ``alpha``.

    The discordance psi (mean of the squared per-image differences d: the discordant rate, for
    booleans) is taken as observed, and at least the difference itself (the fewest discordant pairs
    a difference needs). Booleans at delta0 = 0: the exact power of the exact McNemar test (a
    two-sided test spends alpha / 2 per side). Otherwise the normal approximation of Connor (1987,
    "Sample size for testing differences in proportions for the paired-sample design",
    Biometrics 43:207-211), variance psi under H0 and psi - Delta^2 under the alternative
    (``statsmodels.stats.power.normal_power_het``). inf: no difference up to 1 is detectable.
    """
    _check(alternative, alpha, power)
    (a, bin_a), (b, bin_b) = correctness(a, "a"), correctness(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same images: shapes {a.shape} and {b.shape}")
    d = (a - b).ravel()
    psi_obs, n = float((d**2).mean()), d.size
    level = alpha / 2 if alternative == "two-sided" else alpha
    if bin_a and bin_b and delta0 == 0:
        return _smallest(lambda delta: _mcnemar_power(delta, n, max(psi_obs, delta), level), power, 1.0)

    def power_at(delta):
        psi = max(psi_obs, delta)
        return float(normal_power_het(delta, n, level, std_null=math.sqrt(psi),
                                      std_alternative=math.sqrt(max(psi - delta**2, 1e-18)), alternative="larger"))

    return _smallest(power_at, power, 1.0)


def mde_unpaired(n_a: int, n_b: int, baseline: float, alpha: float = 0.05, power: float = 0.8,
                 alternative: str = "greater") -> float:
    """Smallest difference A - B above a baseline accuracy B (``baseline`` in [0, 1]) that a test
    of two independent proportions on n_a and n_b points detects (statsmodels'
    ``power_proportions_2indep``, pooled variance under H0); inf if none up to 1 - baseline is."""
    _check(alternative, alpha, power)
    if n_a < 1 or n_b < 1 or not 0 <= baseline <= 1:
        raise ValueError(f"need n_a, n_b >= 1 and a baseline in [0, 1], got {n_a}, {n_b}, {baseline}")
    alt = "larger" if alternative != "two-sided" else "two-sided"
    up = baseline if alternative == "less" else 1 - baseline  # room for the difference
    p2 = 1 - baseline if alternative == "less" else baseline  # "less": mirror, so the difference is positive

    def power_at(delta):
        return float(power_proportions_2indep(delta, p2, n_a, n_b / n_a, alpha, alternative=alt, return_results=False))

    return _smallest(power_at, power, up * (1 - 1e-6)) if up > 0 else math.inf  # at the bound p1 is 0 or 1


def mde_one_sample(n: int, threshold: float, alpha: float = 0.05, power: float = 0.8, alternative: str = "less") -> float:
    """Smallest distance from ``threshold`` that the exact binomial test of one accuracy on n points
    (``one_sample_test``) detects with probability ``power``: its exact power at the critical count
    (``scipy.stats.binom``). inf: no distance up to the bound is detectable (e.g. "below 0.05" at
    n = 40, where even 0 correct is not significant)."""
    _check(alternative, alpha, power)
    if n < 1 or not 0 <= threshold <= 1:
        raise ValueError(f"need n >= 1 and a threshold in [0, 1], got {n}, {threshold}")
    level = alpha / 2 if alternative == "two-sided" else alpha
    k = np.arange(n + 1)
    if alternative == "less":
        reject = k[stats.binom.cdf(k, n, threshold) <= level]  # counts low enough to reject
        if not reject.size or threshold == 0:
            return math.inf
        return _smallest(lambda delta: float(stats.binom.cdf(reject.max(), n, threshold - delta)), power, threshold)
    reject = k[stats.binom.sf(k - 1, n, threshold) <= level]  # counts high enough to reject
    if not reject.size or threshold == 1:
        return math.inf
    return _smallest(lambda delta: float(stats.binom.sf(reject.min() - 1, n, threshold + delta)), power, 1 - threshold)


def mde_means(a, b, paired: bool, alpha: float = 0.05, power: float = 0.8, alternative: str = "greater") -> float:
    """Smallest difference of means a t-test of these samples detects: the standardised effect
    from statsmodels' ``TTestPower`` (paired) or ``TTestIndPower`` times the observed standard
    deviation (of the differences, or pooled); 0 when the values do not vary."""
    _check(alternative, alpha, power)
    a, b = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64).ravel() for v in (a, b))
    alt = "larger" if alternative != "two-sided" else "two-sided"
    if paired:
        sd = float(np.std(a - b, ddof=1))
        es = TTestPower().solve_power(effect_size=None, nobs=a.size, alpha=alpha, power=power, alternative=alt)
    else:
        sd = math.sqrt((np.var(a, ddof=1) * (a.size - 1) + np.var(b, ddof=1) * (b.size - 1)) / (a.size + b.size - 2))
        es = TTestIndPower().solve_power(effect_size=None, nobs1=a.size, ratio=b.size / a.size, alpha=alpha,
                                         power=power, alternative=alt)
    return float(np.ravel(es)[0]) * sd


@dataclass(frozen=True)
class SeedSummary:
    """Per-seed differences A - B (mean over the images of each seed), whether they all lie on the
    claimed side of delta0 (``agree``), their spread (max - min) and standard deviation."""

    per_seed: tuple
    agree: bool
    spread: float
    sd: float


def seed_summary(a, b, delta0: float = 0.0, alternative: str = "greater") -> SeedSummary:
    """``SeedSummary`` of (S, N) or (N,) correctness (or values) A and B, per seed.

    Raises:
        ValueError: shapes differ.
    """
    _check(alternative)
    a2, b2 = (np.atleast_2d(np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64)) for v in (a, b))
    if a2.shape[0] != b2.shape[0]:
        raise ValueError(f"a and b must have one row per seed: {a2.shape[0]} and {b2.shape[0]} rows")
    d = a2.mean(axis=1) - b2.mean(axis=1)
    side = {"greater": d > delta0, "less": d < delta0, "two-sided": np.sign(d - delta0) == np.sign(d[0] - delta0)}
    return SeedSummary(tuple(float(v) for v in d), bool(side[alternative].all()), float(np.ptp(d)),
                       float(np.std(d, ddof=1)) if d.size > 1 else 0.0)


__all__ = ["ALTERNATIVES", "HypothesisTest", "correctness", "accuracy_interval", "mcnemar", "paired_test", "unpaired_test",
           "one_sample_test", "mean_test", "holm", "mde_paired", "mde_unpaired", "mde_one_sample", "mde_means",
           "SeedSummary", "seed_summary"]
