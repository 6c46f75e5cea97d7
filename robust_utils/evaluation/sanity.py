"""The basic sanity checks of an evaluation (Carlini et al. 2019, "On evaluating adversarial robustness")."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..core.checks import check_positive_int
from ..core.stats import binomial_se


def sanity_checks(sweep: Mapping[float, float], n: int, single_step: tuple[str, float], iterative: tuple[str, float],
                  white_box: tuple[str, float] | None = None, black_box: tuple[str, float] | None = None,
                  transfer: tuple[str, float] | None = None, zero_tol: float = 0.05, z: float = 2.0) -> pd.DataFrame:
    """The basic sanity checks of an evaluation (from the checklist of Carlini et al. 2019, "On
    evaluating adversarial robustness"), applied to measured accuracies. A failed check means the attack,
    not the defense, is the likely culprit (gradient masking, too few steps, a bug).

    Checks (each with a slack of z binomial standard errors for two accuracies on n points):
      1. accuracy never rises as eps grows (the ``sweep`` of the strongest attack);
      2. the largest eps of the sweep drives accuracy to ~0 (<= ``zero_tol``);
      3. the iterative attack is at least as strong as the single-step one (accuracy <=);
      4. white-box is at least as strong as black-box;
      5. white-box is at least as strong as the transfer attack (e.g. from the mean network).
    Checks 4-5 are skipped when their numbers are not given.

    Args:
        sweep: {eps: accuracy in [0, 1]}.   n: test points behind each accuracy.
        single_step, iterative, white_box, black_box, transfer: (label, accuracy) pairs.
    Returns:
        DataFrame with columns check, passed (bool), evidence (str, rounded numbers).
    Raises:
        ValueError: empty sweep, n < 1.
    """
    if not sweep:
        raise ValueError("sweep must hold at least one (eps, accuracy) pair")
    check_positive_int(n, "n")
    eps = sorted(sweep)
    acc = [sweep[e] for e in eps]
    rows = []
    rises = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1)
             if acc[i + 1] > acc[i] + z * binomial_se(acc[i], acc[i + 1], n)]
    rows.append({"check": "accuracy never rises as eps grows", "passed": not rises,
                 "evidence": ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(eps, acc))
                 + (f"; rises between eps {rises}" if rises else "")})
    rows.append({"check": f"the largest eps ({eps[-1]:g}) drives accuracy to ~0 (<= {zero_tol:g})",
                 "passed": acc[-1] <= zero_tol, "evidence": f"accuracy {acc[-1]:.3f}"})

    def stronger(a: tuple[str, float], b: tuple[str, float]) -> dict:
        ok = a[1] <= b[1] + z * binomial_se(a[1], b[1], n)
        return {"check": f"{a[0]} is at least as strong as {b[0]}", "passed": ok,
                "evidence": f"accuracy {a[1]:.3f} vs {b[1]:.3f}"}

    rows.append(stronger(iterative, single_step))
    if white_box is not None and black_box is not None:
        rows.append(stronger(white_box, black_box))
    if white_box is not None and transfer is not None:
        rows.append(stronger(white_box, transfer))
    return pd.DataFrame(rows, columns=["check", "passed", "evidence"])


__all__ = ["sanity_checks"]
