"""Soft labels and regression weights of the "probabilistic loss function" paper (paper 000).

Paper 000: anonymous authors, "Building Neural Networks that are Robust to Adversarial Examples Using
Probabilistic Loss Function", submitted to ICLR 2026, https://openreview.net/forum?id=dBJpBmn5MH (no
public code). The two variance readings below are ours: the paper's equations admit both.

Classification (Algorithm 1, eq. 9-13): ``em_calibrate`` runs an EM on a Gaussian mixture whose
mixing weights are a fixed *per-sample* prior (0.9 on the label, 0.1/(K-1) elsewhere) and returns
the posterior responsibilities tau (M, K), the soft targets of ``losses.soft_cross_entropy``.
``label_smoothing_targets`` is the same prior without the EM (the baseline to compare against).

Regression (eq. 7, 8, 14, Algorithm 2): per-sample loss weights w_i in (0, 1] for
``losses.weighted_mse``: ``global_weights`` (one Gaussian), ``cluster_weights`` (k-means clusters),
``posterior_weights`` (EM with a uniform prior over clusters, the same EM code as Algorithm 1).

Where the paper is ambiguous or wrong, the choice made here is stated in the docstring concerned.
All statistics are computed in float64; tensors come back on the device of the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from ..core.checks import check_labels, check_number, check_positive_int

VARIANCES = ("scalar", "diagonal")


# ----------------------------------------------------------------------------- checks


def _features(x: torch.Tensor, name: str = "x", min_rows: int = 1) -> torch.Tensor:
    """x (M, D) or (M, ...) floating and finite -> (M, D) float64 (flattened)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"{name} must be a floating (M, D) tensor, got {tuple(x.shape)} {x.dtype}")
    if x.shape[0] < min_rows or x[0].numel() == 0:
        raise ValueError(f"{name} needs at least {min_rows} row(s) and one feature, got shape {tuple(x.shape)}")
    x = x.flatten(1).to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def _class_labels(y: torch.Tensor, m: int, num_classes: int) -> None:
    check_labels(y, m)
    if m and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")


def _num_classes(num_classes: int) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


# ----------------------------------------------------------------------------- the EM (shared)


def _smoothed(y: torch.Tensor, num_classes: int, on_label: float) -> torch.Tensor:
    """(M, K) float64: ``on_label`` at y, (1 - on_label)/(K - 1) elsewhere."""
    t = torch.full((y.shape[0], num_classes), (1.0 - on_label) / (num_classes - 1), dtype=torch.float64,
                   device=y.device)
    return t.scatter_(1, y[:, None], on_label)


def _sq_dist(x: torch.Tensor, mu: torch.Tensor, inv_var: torch.Tensor | None = None) -> torch.Tensor:
    """(M, K): ||x_i - mu_k||^2, or sum_d (x_id - mu_kd)^2 * inv_var_kd; expanded into matmuls, >= 0."""
    if inv_var is None:
        inv_var = torch.ones_like(mu)
    d2 = (x * x) @ inv_var.T - 2 * x @ (mu * inv_var).T + (mu * mu * inv_var).sum(1)
    return d2.clamp_min_(0.0)


def _log_g(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """(M, K) log component densities: scalar -||x-mu_k||^2/(2 var_k) (eq. 7/8/10, no normaliser);
    diagonal -1/2 sum_d [(x_d - mu_kd)^2 / s_kd + log(2 pi s_kd)] (a normalised diagonal Gaussian)."""
    if diagonal:
        return -0.5 * (_sq_dist(x, mu, 1.0 / var) + torch.log(2 * math.pi * var).sum(1))
    return -_sq_dist(x, mu) / (2 * var)


def _m_step(x: torch.Tensor, tau: torch.Tensor, diagonal: bool, var_floor: float):
    """Means (K, D) and variances ((K,) scalar or (K, D) diagonal), weighted by tau (M, K) / sum_i tau_ik."""
    weight = tau.sum(0).clamp_min(torch.finfo(torch.float64).tiny)  # a component that died keeps mu = 0
    mu = (tau.T @ x) / weight[:, None]
    if diagonal:
        var = (tau.T @ (x * x)) / weight[:, None] - mu * mu
    else:
        var = (tau * _sq_dist(x, mu)).sum(0) / weight
    return mu, var.clamp_min(var_floor)


def _em(x: torch.Tensor, log_prior: torch.Tensor, tau: torch.Tensor, diagonal: bool, tol: float, max_iter: int,
        var_floor: float):
    """EM with fixed per-sample mixing weights exp(log_prior) (M, K), started by an M-step on tau (M, K).

    Returns (tau, means, variances, iterations, converged, changes); all tensors float64.
    """
    mu, var = _m_step(x, tau, diagonal, var_floor)
    changes: list[float] = []
    for _ in range(max_iter):
        log_post = log_prior + _log_g(x, mu, var, diagonal)
        new_tau = (log_post - torch.logsumexp(log_post, dim=1, keepdim=True)).exp()
        new_mu, new_var = _m_step(x, new_tau, diagonal, var_floor)
        change = max((new_mu - mu).abs().max(), (new_var - var).abs().max(), (new_tau - tau).abs().max())
        changes.append(float(change))
        tau, mu, var = new_tau, new_mu, new_var
        if changes[-1] < tol:
            return tau, mu, var, len(changes), True, changes
    return tau, mu, var, len(changes), False, changes


def _check_em_args(tol, max_iter, var_floor) -> tuple[float, int, float]:
    tol = check_number(tol, "tol", 0.0, strict=True)
    max_iter = check_positive_int(max_iter, "max_iter")
    var_floor = check_number(var_floor, "var_floor", 0.0, strict=True)
    return tol, max_iter, var_floor


# ----------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Calibration:
    """The result of ``em_calibrate``.

    Attributes:
        tau: (M, K) float32 on x's device, the posterior class probabilities (rows sum to 1): the
            soft targets for ``losses.soft_cross_entropy`` / ``train.fit(..., targets=tau)``.
        means: (K, D) float64, the class means mu_k.
        variances: (K,) float64 (variance="scalar", in squared feature units summed over D) or
            (K, D) float64 (variance="diagonal", per feature).
        iterations: E/M iterations run (>= 1).   converged: the last change was < tol.
        changes: per iteration, max(|d mu|, |d sigma^2|, |d tau|) against the previous iteration.
        prior: the prior mass on the label.   variance: "scalar" or "diagonal".
    """

    tau: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    iterations: int
    converged: bool
    changes: list[float]
    prior: float
    variance: str

    def _check(self, y: torch.Tensor) -> None:
        _class_labels(y, self.tau.shape[0], self.tau.shape[1])

    def mean_true_tau(self, y: torch.Tensor) -> float:
        """Mean over samples of tau_{i, y_i} (the prior's value, e.g. 0.9, when the EM changed nothing)."""
        self._check(y)
        return float(self.tau.gather(1, y.to(self.tau.device)[:, None]).mean())

    def mean_entropy(self) -> float:
        """Mean entropy of the tau rows, in nats (0 for one-hot rows, log K for uniform rows)."""
        return float(-torch.special.xlogy(self.tau.double(), self.tau.double()).sum(1).mean())

    def flips(self, y: torch.Tensor) -> int:
        """Number of samples whose most probable class argmax_k tau_ik differs from the label y_i."""
        self._check(y)
        return int((self.tau.argmax(1) != y.to(self.tau.device)).sum())

    def summary(self, y: torch.Tensor) -> dict:
        """{"mean_true_tau", "mean_entropy" (nats), "flips", "iterations", "converged", "variance", "prior"}."""
        return {"mean_true_tau": self.mean_true_tau(y), "mean_entropy": self.mean_entropy(), "flips": self.flips(y),
                "iterations": self.iterations, "converged": self.converged, "variance": self.variance,
                "prior": self.prior}


def em_calibrate(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10, prior: float = 0.9,
                 variance: str = "scalar", tol: float = 1e-4, max_iter: int = 100,
                 var_floor: float = 1e-3) -> Calibration:
    """Soft labels by EM on a Gaussian mixture with a per-sample prior: paper 000, Algorithm 1 (eq. 10-12).

    Model: x_i ~ sum_k pi_ik g_k(x_i) with the *fixed* mixing weights pi_ik = prior if k == y_i,
    else (1 - prior)/(K - 1) (Algorithm 1, line 1). Start: tau = pi, then an M-step (class
    statistics from the labels). Then repeat until the change is < tol or max_iter iterations:
      E-step (eq. 10), in log space: log tau_ik = log pi_ik + log g_k(x_i) - logsumexp_k(same);
      M-step (eq. 11, 12): mu_k = sum_i tau_ik x_i / sum_i tau_ik, and the variances below.
    The change of an iteration is max(max|d mu|, max|d sigma^2|, max|d tau|) (Algorithm 1, line 5).

    variance="scalar" (default; the form of eq. 7/8 and of the paper's E-step, which has no
    normalising constant): g_k(x) = exp(-||x - mu_k||^2 / (2 sigma_k^2)),
    sigma_k^2 = max(sum_i tau_ik ||x_i - mu_k||^2 / sum_i tau_ik, var_floor), summed over the D
    features (not divided by D). In high dimension ||x_i - mu_k||^2 ~ sigma_k^2 for every class, so
    the likelihood ratios are O(1) and tau stays close to the prior: label smoothing with a
    per-sample modulation (our reading 2).
    variance="diagonal" (a proper diagonal Gaussian as in a GMM, sklearn's covariance_type="diag"):
    log g_k(x) = -1/2 sum_d [(x_d - mu_kd)^2 / s_kd + log(2 pi s_kd)],
    s_kd = max(sum_i tau_ik (x_id - mu_kd)^2 / sum_i tau_ik, var_floor) (the floor because e.g. the
    border pixels of MNIST have zero variance). Log-likelihood gaps between classes are then
    hundreds of nats on raw pixels: tau is nearly one-hot at the best-fitting class, which may
    differ from the label (a "flip"), and the prior barely matters (our reading 1).

    Deviations from the paper's text (which has typos):
      * eq. 10 multiplies the *current* tau by the likelihood; iterated literally that compounds
        the likelihood at every pass and is not an EM. The fixed prior pi is used as the mixing
        weight instead (a proper EM for known per-sample mixing weights). Its denominator sums
        over the K classes (the paper writes k = 0..M-1).
      * eq. 11 divides by M and eq. 12 by M - 1: both are replaced by sum_i tau_ik (the weighted
        maximum-likelihood statistics; with 1/M every mean would shrink by about 1/K).
      * eq. 12's (X_j - mu_k)^2 is read as a squared norm (scalar) or per feature (diagonal).
      * Algorithm 1 "Require"s the testing set; calibrate on the *training* set you train on.

    Args:
        x: (M, D) float features (e.g. raw pixels flattened; (M, ...) is flattened), any units.
        y: (M,) int64 labels in [0, num_classes), on x's device.
        num_classes: K >= 2.   prior: mass on the label, in (1/K, 1) (the paper's 0.9).
        variance: "scalar" or "diagonal".   tol: > 0, in the units of x (and x^2, and probability).
        max_iter: >= 1 E/M iterations at most.
        var_floor: > 0, lower bound of every variance (squared units of x); also guards the
            degenerate all-identical data (zero variance) in scalar mode.
    Returns:
        Calibration (tau float32 (M, K) on x's device).
    Raises:
        ValueError: x not floating (M, D) or not finite; y not int64 (M,) or out of range;
            num_classes < 2; prior outside (1/K, 1); unknown variance; tol <= 0; max_iter < 1;
            var_floor <= 0.
    """
    x64 = _features(x)
    num_classes = _num_classes(num_classes)
    _class_labels(y, x64.shape[0], num_classes)
    prior = check_number(prior, "prior")
    if not 1.0 / num_classes < prior < 1.0:
        raise ValueError(f"prior must lie in (1/K, 1) = ({1.0 / num_classes:.4g}, 1), got {prior}")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    tol, max_iter, var_floor = _check_em_args(tol, max_iter, var_floor)

    pi = _smoothed(y.to(x64.device), num_classes, prior)
    tau, mu, var, iterations, converged, changes = _em(x64, pi.log(), pi, variance == "diagonal", tol, max_iter,
                                                       var_floor)
    return Calibration(tau.to(torch.float32), mu, var, iterations, converged, changes, prior, variance)


def label_smoothing_targets(y: torch.Tensor, num_classes: int, mass: float = 0.1) -> torch.Tensor:
    """Label-smoothed targets: 1 - mass on the label, mass/(K - 1) on every other class.

    The prior of paper 000's Algorithm 1 (line 1, with mass = 1 - 0.9) without the EM: the baseline
    that ``em_calibrate`` should be compared with. mass = 0 gives one-hot targets.

    Args:
        y: (M,) int64 in [0, num_classes).   num_classes: K >= 2.   mass: in [0, 1).
    Returns:
        (M, K) float32 on y's device; rows sum to 1.
    Raises:
        ValueError: bad y, num_classes < 2, mass outside [0, 1).
    """
    num_classes = _num_classes(num_classes)
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise ValueError(f"y must be an int64 (M,) tensor, got {getattr(y, 'shape', type(y).__name__)}")
    _class_labels(y, y.shape[0], num_classes)
    mass = check_number(mass, "mass", 0.0)
    if not mass < 1:
        raise ValueError(f"mass must lie in [0, 1), got {mass}")
    return _smoothed(y, num_classes, 1.0 - mass).to(torch.float32)


# ----------------------------------------------------------------------------- regression weights


@dataclass(frozen=True)
class ClusterWeights:
    """The result of ``cluster_weights``.

    Attributes:
        weights: (M,) float32 on x's device, w_i in (0, 1] (1 at a cluster mean).
        labels: (M,) int64 on x's device, the k-means cluster of each sample, in [0, C).
        means: (C, D) float64, mu_t (the mean of the members).
        variances: (C,) float64, sigma_t^2 (eq. 8; 0 for a singleton cluster).
    """

    weights: torch.Tensor
    labels: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor


def _kernel_weights(d2: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """exp(-d2 / (2 var)), and 1 where var == 0 (then every sample concerned sits at its mean)."""
    return torch.where(var > 0, torch.exp(-d2 / (2 * var.clamp_min(torch.finfo(torch.float64).tiny))), 1.0)


def global_weights(x: torch.Tensor) -> torch.Tensor:
    """Outlier weights around the global mean: paper 000, eq. 7.

    w_i = exp(-||x_i - mu||^2 / (2 sigma^2)), mu = (1/M) sum_k x_k,
    sigma^2 = sum_k ||x_k - mu||^2 / (M - 1) (the paper's unbiased scalar variance, summed over the
    D features). Exactly 1 for a sample equal to the mean; all 1 when every sample is the same.
    Mathematically w_i > 0; a sample more than ~14 sigma away underflows to 0 in float32.

    Args:
        x: (M, D) float features, M >= 2 ((M, ...) is flattened).
    Returns:
        (M,) float32 weights in (0, 1], on x's device (for ``losses.weighted_mse``).
    Raises:
        ValueError: x not floating, not finite, fewer than 2 rows.
    """
    x64 = _features(x, min_rows=2)
    d2 = (x64 - x64.mean(0)).pow(2).sum(1)
    var = d2.sum() / (x64.shape[0] - 1)
    return _kernel_weights(d2, var).to(torch.float32)


def _kmeans(x64: torch.Tensor, clusters: int, seed: int) -> torch.Tensor:
    """(M,) int64 k-means labels (sklearn, n_init=10, random_state=seed) on x's device."""
    if not isinstance(clusters, int) or isinstance(clusters, bool) or not 1 <= clusters <= x64.shape[0]:
        raise ValueError(f"clusters must be an int in [1, M = {x64.shape[0]}], got {clusters!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    km = KMeans(n_clusters=clusters, random_state=seed, n_init=10).fit(x64.cpu().numpy())
    return torch.from_numpy(km.labels_.astype(np.int64)).to(x64.device)


def cluster_weights(x: torch.Tensor, clusters: int, seed: int = 0) -> ClusterWeights:
    """Outlier weights within k-means clusters: paper 000, eq. 8.

    sklearn ``KMeans(n_clusters=clusters, random_state=seed, n_init=10)`` on x; for each cluster t
    with n_t members: mu_t = their mean, sigma_t^2 = sum_members ||x - mu_t||^2 / (n_t - 1); then
    w_i = exp(-||x_i - mu_t(i)||^2 / (2 sigma_t(i)^2)). The means are recomputed from the final
    labels (not k-means' centres), so a sample equal to its cluster's mean gets exactly 1.
    Singleton clusters (n_t = 1, sigma_t^2 undefined) and clusters of identical points
    (sigma_t^2 = 0) get weight 1: each member is its cluster's mean (variances reports 0).

    Args:
        x: (M, D) float features ((M, ...) is flattened).
        clusters: C, an int in [1, M].   seed: KMeans' random_state, an int >= 0.
    Returns:
        ClusterWeights (weights (M,) float32 in (0, 1], labels (M,) int64, means, variances).
    Raises:
        ValueError: bad x, clusters outside [1, M], bad seed.
    """
    x64 = _features(x)
    labels = _kmeans(x64, clusters, seed)
    counts = torch.bincount(labels, minlength=clusters).to(torch.float64)
    mu = torch.zeros(clusters, x64.shape[1], dtype=torch.float64, device=x64.device).index_add_(0, labels, x64)
    mu /= counts.clamp_min(1)[:, None]
    d2 = (x64 - mu[labels]).pow(2).sum(1)
    var = torch.zeros(clusters, dtype=torch.float64, device=x64.device).index_add_(0, labels, d2)
    var /= (counts - 1).clamp_min(1)
    return ClusterWeights(_kernel_weights(d2, var[labels]).to(torch.float32), labels, mu, var)


def posterior_weights(x: torch.Tensor, clusters: int, seed: int = 0, tol: float = 1e-4, max_iter: int = 100,
                      var_floor: float = 1e-3) -> torch.Tensor:
    """Outlier weights under a fitted Gaussian mixture: paper 000, Algorithm 2 and eq. 14.

    The EM of ``em_calibrate`` (scalar variances, fixed mixing weights) with the uniform prior
    pi_il = 1/C over C clusters, started from the k-means partition (tau = one-hot k-means
    labels, then an M-step; sklearn ``KMeans(n_clusters=C, random_state=seed, n_init=10)``).
    Then w_i = sum_l tau_il exp(-||x_i - mu_l||^2 / (2 sigma_l^2)) (eq. 14), a tau-average of
    values in (0, 1], so w_i <= 1 (equal to 1 only at a mean that owns all the posterior mass).

    Choices: Algorithm 2, line 1 sets tau = 1/M while the text says 1/N (N = clusters there); 1/M
    (M = samples) would not be a distribution over clusters, so the prior is 1/C. (Any constant
    prior cancels in the E-step's normalisation; but a uniform *initial* tau gives every cluster
    the global mean and variance, a symmetric point the EM never leaves, hence the k-means start.)
    The mixing weights stay fixed at 1/C as in Algorithm 1 (not re-estimated as in a standard
    GMM). sigma_l^2 is the EM's weighted variance (divided by sum_i tau_il, not n_l - 1 as in
    eq. 8), floored at var_floor.

    Args:
        x: (M, D) float features ((M, ...) is flattened).   clusters: C in [1, M].
        seed: KMeans' random_state.   tol, max_iter, var_floor: as in ``em_calibrate``.
    Returns:
        (M,) float32 weights in (0, 1], on x's device.
    Raises:
        ValueError: bad x, clusters outside [1, M], bad seed, tol <= 0, max_iter < 1, var_floor <= 0.
    """
    x64 = _features(x)
    tol, max_iter, var_floor = _check_em_args(tol, max_iter, var_floor)
    labels = _kmeans(x64, clusters, seed)
    tau0 = torch.nn.functional.one_hot(labels, clusters).to(torch.float64)
    log_prior = torch.full_like(tau0, -math.log(clusters))
    tau, mu, var, *_ = _em(x64, log_prior, tau0, False, tol, max_iter, var_floor)
    return (tau * _log_g(x64, mu, var, False).exp()).sum(1).clamp_max(1.0).to(torch.float32)
