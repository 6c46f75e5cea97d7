"""The regression half of the probabilistic loss (paper 000, eq. 7, 8, 14): a real data set,
target outliers, a weighted training loop and an FGSM-style input perturbation.

The data are tabular features, not images in [0, 1], so ``train.fit`` (which validates pixel
boxes and caches checkpoints of image classifiers) does not apply; the models here train in a
second or two and are simply retrained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.checks import check_number, check_positive_int
from ..core.losses import weighted_mse


@dataclass(frozen=True)
class RegressionData:
    """Standardised features and targets (train statistics), float32 tensors.

    x_train (M, D), y_train (M,), x_test (M', D), y_test (M',); ``y_scale`` is the targets'
    standard deviation in the data set's units (multiply an RMSE by it to get those units).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_scale: float


def load_diabetes(test_fraction: float = 0.25, seed: int = 0, device: str | torch.device = "cpu") -> RegressionData:
    """scikit-learn's diabetes data (442 patients, 10 features, disease progression after a year;
    Efron et al. 2004; shipped with scikit-learn, nothing is downloaded), split at random with
    ``seed`` and standardised with the training split's mean and standard deviation.

    Raises:
        ValueError: test_fraction not in (0, 1).
    """
    from sklearn.datasets import load_diabetes as sklearn_load_diabetes

    check_number(test_fraction, "test_fraction", 0, strict=True)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    x, y = sklearn_load_diabetes(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    mx, sx = x[train].mean(0), x[train].std(0)
    my, sy = y[train].mean(), y[train].std()
    dev = torch.device(device)
    return RegressionData(((x[train] - mx) / sx).to(dev), ((y[train] - my) / sy).to(dev),
                          ((x[test] - mx) / sx).to(dev), ((y[test] - my) / sy).to(dev), float(sy))


def inject_outliers(y: torch.Tensor, fraction: float, shift: float = 5.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of targets y (M,) with ``fraction`` of them moved by +/- ``shift`` (in y's units, a
    random sign each) and the (M,) bool mask of the moved ones: outliers in the *targets*, the
    case eq. 7 is motivated by ("y is very different from the outputs of other input data").

    Raises:
        ValueError: fraction not in [0, 1), shift <= 0.
    """
    check_number(fraction, "fraction", 0)
    if fraction >= 1:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    check_number(shift, "shift", 0, strict=True)
    g = torch.Generator().manual_seed(seed)
    n = int(round(fraction * y.numel()))
    idx = torch.randperm(y.numel(), generator=g)[:n]
    sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    mask = torch.zeros(y.numel(), dtype=torch.bool)
    mask[idx] = True
    out = y.clone()
    out[idx.to(y.device)] += (shift * sign).to(y.device)
    return out, mask.to(y.device)


def fit_regressor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None,
                  epochs: int = 200, batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 1e-4,
                  seed: int = 0) -> list[float]:
    """Train ``model`` (x (M, D) -> (M, 1) or (M,)) with AdamW on the weighted squared error
    ``losses.weighted_mse`` (eq. 7/8/14 with per-sample weights, plain MSE for weights=None),
    seeded mini-batches; returns the per-epoch mean training loss. The model ends in eval mode.

    Raises:
        ValueError: mismatched shapes, bad epochs/batch size/lr.
    """
    if x.dim() != 2 or y.shape != (x.shape[0],) or (weights is not None and weights.shape != y.shape):
        raise ValueError(f"expected x (M, D), y (M,), weights (M,) or None; got {tuple(x.shape)}, {tuple(y.shape)}, "
                         f"{None if weights is None else tuple(weights.shape)}")
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_number(lr, "lr", 0, strict=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            total = 0.0
            for idx in torch.randperm(len(y), generator=gen).split(batch_size):
                idx = idx.to(x.device)
                opt.zero_grad(set_to_none=True)
                loss = weighted_mse(model(x[idx]).reshape(-1), y[idx], None if weights is None else weights[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(y))
    model.eval()
    return history


def rmse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root mean squared error of model(x) against y (M,), in y's units."""
    with torch.no_grad():
        return float(((model(x).reshape(-1) - y) ** 2).mean().sqrt())


def fgsm_regression(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The FGSM-style perturbation of a regressor's input (Goodfellow et al. 2015, eq. 6, with the
    squared error as the loss): x + eps * sign(grad_x ||f(x) - y||^2). Tabular features have no
    box, so nothing is clipped; eps is in the features' standardised units (Linf).

    Raises:
        ValueError: eps < 0.
    """
    check_number(eps, "eps", 0)
    x = x.detach().clone().requires_grad_(True)
    loss = ((model(x).reshape(-1) - y) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).detach()


__all__ = ["RegressionData", "load_diabetes", "inject_outliers", "fit_regressor", "rmse", "fgsm_regression"]
