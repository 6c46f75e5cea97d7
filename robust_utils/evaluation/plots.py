"""The figures the notebooks share. Each function returns the matplotlib Figure it drew."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], metrics: Sequence[str],
                    metric_labels: Sequence[str] | None = None, title: str = "", ylabel: str = "validation accuracy"):
    """Metric per epoch for several runs (Picot et al., Figure 1).

    Args:
        histories: {run label: FitResult.history}.   metrics: history keys to plot (one line style each).
        metric_labels: legend text per metric (default: the keys).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = ["-", "--", ":", "-."]
    labels = list(metric_labels or metrics)
    for ci, (run, hist) in enumerate(histories.items()):
        for mi, m in enumerate(metrics):
            ax.plot(hist["epoch"], hist[m], styles[mi % len(styles)], color=f"C{ci}", marker="o", ms=3,
                    label=f"{run}, {labels[mi]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_vs_eps(curves: Mapping[str, Mapping[float, float]], title: str = "", xlabel: str = "eps (Linf, pixel scale [0, 1])"):
    """Accuracy against the budget eps, one line per model/attack (the eps sweep)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, acc in curves.items():
        eps = sorted(acc)
        ax.plot(eps, [acc[e] for e in eps], marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_vs_eps(panels: Mapping[str, Mapping[str, Mapping[float, float]]], ylabel: str, xlabel: str, title: str = ""):
    """Any metric (e.g. a regressor's RMSE) against eps: one panel per entry of ``panels``
    ({panel title: {line label: {eps: value}}}), one line per label, shared y axis."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (sub, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            eps = sorted(values)
            ax.plot(eps, [values[e] for e in eps], marker="o", ms=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_title(sub)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: Mapping[str, np.ndarray], title: str = ""):
    """Side-by-side heatmaps of column-normalised confusion matrices C[y_hat, y]."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.0), squeeze=False)
    for ax, (label, c) in zip(axes[0], matrices.items()):
        sns.heatmap(c, ax=ax, vmin=0, vmax=1, cmap="viridis", square=True, cbar=False, annot=False)
        ax.set_xlabel("true class y")
        ax.set_ylabel("predicted class y_hat")
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_grid(rows: Mapping[str, torch.Tensor], captions: Mapping[str, Sequence[str]] | None = None, title: str = ""):
    """A grid of images: one row per entry of ``rows`` ((n, C, H, W) in [0, 1]), captions per image."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.6 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                img = imgs[c].detach().cpu()
                ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
                if captions and label in captions:
                    ax.set_title(captions[label][c], fontsize=7)
        axes[r][0].text(-0.1, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confidence_histograms(confidence: Mapping[str, torch.Tensor], correct: Mapping[str, torch.Tensor],
                          title: str = "", bins: int = 20):
    """Histograms of the predicted class's probability (the max softmax output) per model: left over
    all test images, right over the correctly classified ones (Kaspar et al. 2024, Figure 4).

    Args:
        confidence: {model label: (N,) float in [0, 1]}.   correct: {model label: (N,) bool}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    edges = np.linspace(0, 1, bins + 1)
    for label, conf in confidence.items():
        conf = conf.detach().cpu().numpy()
        ok = correct[label].detach().cpu().numpy()
        axes[0].hist(conf, bins=edges, histtype="step", density=True, label=label)
        axes[1].hist(conf[ok], bins=edges, histtype="step", density=True, label=label)
    for ax, sub in zip(axes, ("all test images", "correctly classified test images")):
        ax.set_xlabel("probability of the predicted class")
        ax.set_ylabel("density")
        ax.set_title(sub)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def variance_schedule(history: Mapping[str, Sequence[float]], title: str = ""):
    """The variance thresholds and mean sigma per epoch, held-out accuracy on a second axis
    (Khan et al. 2019, section 4.3; ``history`` from ``fit`` with a ``sdr.VarianceSchedule``)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ep = history["epoch"]
    ax.step(ep, history["sigma_low"], where="mid", color="C0", ls="--", label="threshold low")
    ax.step(ep, history["sigma_high"], where="mid", color="C0", ls=":", label="threshold high")
    ax.plot(ep, history["sigma_mean"], color="C0", marker="o", ms=3, label="mean sigma")
    ax.set_xlabel("epoch")
    ax.set_ylabel("sigma")
    ax.set_yscale("symlog", linthresh=0.01)
    ax2 = ax.twinx()
    ax2.plot(ep, history["heldout_acc"], color="C3", marker="s", ms=3, label="held-out accuracy")
    ax2.set_ylabel("held-out accuracy (one stochastic pass)", color="C3")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def claimed_vs_measured(points: Sequence[Mapping], xlabel: str, ylabel: str, title: str = ""):
    """Each defense's published robustness figure (x) against ours (y), with the diagonal y = x.

    Args:
        points: rows {"defense", "paper" (x, in [0, 1]), "measured" (y: ours under the strong
            suite, filled marker), and optionally "protocol" (y: ours under the paper's own
            evaluation, hollow marker joined to the filled one)}.
    """
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="measured = claimed")
    for i, p in enumerate(points):
        c = f"C{i % 10}"
        if p.get("protocol") is not None:
            ax.plot([p["paper"], p["paper"]], [p["protocol"], p["measured"]], color=c, lw=1, alpha=0.6)
            ax.scatter([p["paper"]], [p["protocol"]], facecolors="none", edgecolors=c, s=50)
        ax.scatter([p["paper"]], [p["measured"]], color=c, s=50, label=p["defense"])
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
