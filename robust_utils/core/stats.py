"""Statistics of accuracies measured on a finite test set.

    binomial_se   the standard error of the difference of two accuracies, each measured on n points.
"""

from __future__ import annotations

import math


def binomial_se(a: float, b: float, n: int) -> float:
    """sqrt(a(1-a)/n + b(1-b)/n): the standard error of a - b for two accuracies in [0, 1] on n points each."""
    return math.sqrt(max(a * (1 - a), 0.0) / n + max(b * (1 - b), 0.0) / n)


__all__ = ["binomial_se"]
