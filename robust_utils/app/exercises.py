"""Fixed inputs and a readable comparison for the notebooks' exercises (nbgrader autograder cells).

Each paper notebook has 2-4 exercises in nbgrader's conventions: a solution cell where the student
writes one piece of the method (between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), then an
autograder cell that compares the student's function with robust_utils on the small, fixed
tensors made here (well under a second on a CPU). ``python -m robust_utils assign`` writes the
student copies (see ``robust_utils.assign``).

Everything here is seeded through its own ``torch.Generator`` or inside ``torch.random.fork_rng``,
so running an exercise never changes the global random state, and so never the numbers of the
instructor notebook's later cells. This module is teaching infrastructure, not a paper's method.
"""

from __future__ import annotations

import torch
from torch import nn


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def fixed_images(n: int = 8, shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-structured random images: class k is a fixed random pattern plus noise.

    x_i = 0.6 * pattern[y_i] + 0.4 * noise_i with pattern and noise uniform in [0, 1), so the images
    lie in [0, 1] and the classes are separable (a model, or the EM of notebook 01, finds
    structure in them). Labels cycle through the classes (i mod K), so every class appears when
    n >= K.

    Args:
        n: number of images (>= 1).   shape: (C, H, W).   num_classes: K >= 2.   seed: the generator's seed.
    Returns:
        x (n, C, H, W) float32 in [0, 1] and y (n,) int64 in [0, K), on the CPU.
    Raises:
        ValueError: n < 1 or num_classes < 2.
    """
    if n < 1 or num_classes < 2:
        raise ValueError(f"need n >= 1 and num_classes >= 2, got n={n}, num_classes={num_classes}")
    g = _generator(seed)
    patterns = torch.rand((num_classes, *shape), generator=g)
    y = torch.arange(n) % num_classes
    x = 0.6 * patterns[y] + 0.4 * torch.rand((n, *shape), generator=g)
    return x, y


def fixed_logits(n: int = 8, num_classes: int = 10, scale: float = 3.0,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and labels for the loss exercises.

    Args:
        n: rows (>= 1).   num_classes: K >= 2.   scale: standard deviation of the logits.   seed: the seed.
    Returns:
        logits (n, K) float32 ~ N(0, scale^2) and y (n,) int64 uniform in [0, K), on the CPU.
    """
    g = _generator(seed)
    return scale * torch.randn((n, num_classes), generator=g), torch.randint(0, num_classes, (n,), generator=g)


def tiny_classifier(in_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, hidden: int = 32,
                    seed: int = 0) -> nn.Module:
    """A small seeded MLP (Flatten, Linear, ReLU, Linear) in eval mode, for the attack exercises.

    Built inside ``torch.random.fork_rng``, so the global random state is left as it was.

    Args:
        in_shape: (C, H, W) of its input.   num_classes: K.   hidden: width.   seed: the initialisation seed.
    Returns:
        nn.Module mapping (N, C, H, W) float32 to logits (N, K) float32, on the CPU.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d = 1
        for s in in_shape:
            d *= s
        return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)).eval()


def check_close(name: str, actual, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Assert that a student's result equals the reference, with a message a student can act on.

    Args:
        name: what is compared, e.g. "hr_loss(logits, y)".
        actual: the student's result (a tensor, or a number for 0-dim references).
        expected: robust_utils' result.   atol, rtol: as ``torch.allclose``.
    Raises:
        AssertionError: not a tensor or number, a different shape, non-finite values, or values
            further apart than the tolerance (the message gives the largest difference).
    """
    expected = expected.detach().cpu()
    if isinstance(actual, (int, float)):
        actual = torch.tensor(float(actual))
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name}: expected a tensor, got {type(actual).__name__}")
    actual = actual.detach().cpu().to(expected.dtype)
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{name}: contains NaN or inf")
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        diff = (actual - expected).abs().max().item()
        raise AssertionError(f"{name}: differs from the reference by up to {diff:.3g} (tolerance {atol:g} + {rtol:g}·|x|)")


__all__ = ["fixed_images", "fixed_logits", "tiny_classifier", "check_close"]
