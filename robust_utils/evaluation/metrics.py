"""Clean accuracy, the accuracy of a model with a random forward pass, and confusion matrices.

Predictions run under ``torch.inference_mode`` in batches; nothing here changes the model's
train/eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from torch import nn

from ..core.checks import check_images, check_labels, check_positive_int


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels argmax_k logits, (N,) int64, computed in batches under inference_mode."""
    check_positive_int(batch_size, "batch_size")
    with torch.inference_mode():
        return torch.cat([model(xb).argmax(1) for xb in x.split(batch_size)]) if len(x) else torch.empty(0, dtype=torch.int64)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Clean accuracy in [0, 1]: the fraction of x classified as y.

    Args:
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    return (predict(model, x, batch_size) == y).float().mean().item()


@dataclass(frozen=True)
class StochasticAccuracy:
    """Accuracy of a model with a random forward pass, measured over K passes.

    Attributes:
        mean: mean over the K passes of the single-pass accuracy (the expected accuracy of one
            prediction, which is how Khan et al. 2019 use their model: "a single pass").
        all_passes: fraction of the samples classified correctly in every one of the K passes.
        per_pass: the K single-pass accuracies.   se: their standard error (0 for K = 1).
    """

    mean: float
    all_passes: float
    per_pass: tuple[float, ...]
    se: float


def stochastic_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int = 10,
                        batch_size: int = 1000) -> StochasticAccuracy:
    """Accuracy as the mean over ``passes`` stochastic forward passes, and as "correct in all passes".

    Each pass predicts the whole set in batches of ``batch_size`` (a stochastic layer draws new
    weights in every forward call, so every batch of every pass sees a fresh draw). For a
    deterministic model every pass gives the same number and ``all_passes == mean``.

    Args:
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.   passes: K >= 1.
    Raises:
        ValueError: bad x, y, passes or batch_size.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(passes, "passes")
    correct = torch.stack([predict(model, x, batch_size) == y for _ in range(passes)])  # (K, N) bool
    per_pass = correct.float().mean(dim=1)
    se = float(per_pass.std() / passes**0.5) if passes > 1 else 0.0
    return StochasticAccuracy(float(per_pass.mean()), float(correct.all(dim=0).float().mean()),
                              tuple(per_pass.tolist()), se)


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> np.ndarray:
    """Column-normalised confusion matrix C[y_hat, y] = p(Y_hat = y_hat | Y = y) (Picot et al., section 3).

    Rows are the predicted class, columns the true class, as in the paper; each column sums to 1
    (a class absent from y_true gives a zero column).

    Returns:
        (K, K) float64 numpy array.
    """
    c = sklearn_confusion_matrix(y_true.cpu().numpy(), y_pred.cpu().numpy(), labels=list(range(num_classes)))
    col = c.sum(axis=1, keepdims=True)
    rows_true = np.divide(c, col, out=np.zeros_like(c, dtype=np.float64), where=col > 0)
    return rows_true.T


def identity_gap(c: np.ndarray) -> float:
    """||I_K - C||_F, the Frobenius distance of a confusion matrix from perfect classification."""
    return float(np.linalg.norm(np.eye(c.shape[0]) - c, ord="fro"))


__all__ = ["predict", "accuracy", "StochasticAccuracy", "stochastic_accuracy", "confusion_matrix", "identity_gap"]
