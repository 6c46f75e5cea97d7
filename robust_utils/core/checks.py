"""Input checks shared by the attacks, losses and evaluation helpers (errors before any work)."""

from __future__ import annotations

import math

import torch


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError unless x is a floating (N, ...) tensor with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must lie in the pixel box [0, 1]; got range [{x.min():.4g}, {x.max():.4g}]")


def check_labels(y: torch.Tensor, n: int, name: str = "y") -> None:
    """Raise ValueError unless y is an int64 (n,) tensor."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (n,):
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name} must be an int64 tensor of shape ({n},), got {got}")


def check_eps(eps: float, norm: str = "inf") -> float:
    """Validate a perturbation budget in pixel units of [0, 1]; Linf budgets must lie in [0, 1]."""
    if norm not in ("inf", "2"):
        raise ValueError(f"unknown norm {norm!r}; valid: 'inf', '2'")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number, got {eps!r}") from None
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if norm == "inf" and eps > 1:
        raise ValueError(f"Linf eps is in pixel units of [0, 1] and must be <= 1, got {eps}")
    return eps


def check_number(value, name: str, minimum: float | None = None, strict: bool = False) -> float:
    """A finite float (booleans rejected), optionally >= minimum (> minimum with ``strict``).

    Raises:
        ValueError: not a number, not finite, or below the bound; the message names ``name``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g} and finite, got {value}")
    return value


def check_positive_int(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
