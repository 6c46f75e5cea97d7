"""Robust accuracy as a per-example worst case over every attack run at one budget.

A point counts as robust at a budget only if it survives every attack run on it there
(AutoAttack's members, the audit's attacks, the paper's own protocol), as RobustBench and
AutoAttack count it (Croce & Hein 2020, section 4; Croce et al. 2021, RobustBench). Per attack,
the evaluation keeps a per-example "still correct" value: a boolean for a deterministic model; for
a random model the probability of being correct, measured by re-classifying that attack's final
iterate with fresh forward passes (never the clean image returned where the attack gave up).
Robust accuracy is the mean over examples of the minimum over the attacks.

An attack suite can never read higher than one of its members: ``WorstCase`` raises
``AccountingError`` when a single attack's accuracy (given only as a number, e.g. a protocol run
elsewhere on the same points) is lower than the suite's, because that is a bug (different points,
a different model mode, a lost attack), not a number to print.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..core.checks import check_labels, check_positive_int
from .metrics import predict

WORST = "worst case (per example)"


class AccountingError(RuntimeError):
    """A single attack reads lower than the per-example worst case over the suite it belongs to."""


def correct_probability(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, passes: int = 1,
                        batch_size: int = 1000) -> torch.Tensor:
    """Per-example probability of being classified correctly, over ``passes`` fresh forward passes.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is left as is.
        x_adv: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.   passes: >= 1 (1 for a deterministic model).
    Returns:
        (N,) float32 in [0, 1]: the fraction of the passes that predicted y (0/1 for one pass).
    Raises:
        ValueError: bad y, passes or batch_size.
    """
    check_labels(y, x_adv.shape[0])
    check_positive_int(passes, "passes")
    return torch.stack([predict(model, x_adv, batch_size) == y for _ in range(passes)]).float().mean(0)


class WorstCase:
    """The per-example worst case over the attacks run at one budget; fed attack by attack.

    Args:
        n: the number of points (every attack must be run on the same n points, in one order).
        budget: a label for the budget, e.g. "Linf 0.1" (for the table).
    Example:
        wc = WorstCase(len(y), "Linf 0.1")
        wc.add("PGD-40", correct_probability(model, x_pgd, y, passes))
        wc.add_reading("paper's protocol", 0.62)   # a number only, checked against the suite
        wc.robust_accuracy, wc.table()
    """

    def __init__(self, n: int, budget: str = ""):
        self.n = check_positive_int(n, "n")
        self.budget = budget
        self._correct: dict[str, torch.Tensor] = {}
        self._readings: dict[str, float] = {}
        self._own: dict[str, float] = {}

    def add(self, attack: str, correct) -> None:
        """Record an attack's per-example correctness: (n,) bool, or float in [0, 1] (a random
        model's probability of being correct on the attack's final iterate).

        Raises:
            ValueError: a repeated attack name, a wrong shape, values outside [0, 1].
        """
        c = torch.as_tensor(correct).detach().flatten().float().cpu()
        if attack in self._correct or attack in self._readings:
            raise ValueError(f"attack {attack!r} was already added")
        if c.numel() != self.n or torch.as_tensor(correct).dim() != 1:
            raise ValueError(f"{attack}: per-example correctness must have shape ({self.n},), got "
                             f"{tuple(torch.as_tensor(correct).shape)}")
        if not bool(torch.isfinite(c).all()) or c.min() < 0 or c.max() > 1:
            raise ValueError(f"{attack}: correctness must hold booleans or probabilities in [0, 1]")
        self._correct[attack] = c

    def add_images(self, attack: str, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, passes: int = 1,
                   batch_size: int = 1000) -> torch.Tensor:
        """Classify an attack's final iterates ``x_adv`` (n, C, H, W) with ``passes`` fresh passes and
        ``add`` the result; returns the (n,) correctness."""
        c = correct_probability(model, x_adv, y, passes, batch_size)
        self.add(attack, c)
        return c

    def add_reading(self, attack: str, accuracy: float) -> None:
        """Record an attack known only by its accuracy on the same points (checked: it must not be
        lower than the suite's robust accuracy).

        Raises:
            ValueError: a repeated name, an accuracy outside [0, 1].
        """
        if attack in self._correct or attack in self._readings:
            raise ValueError(f"attack {attack!r} was already added")
        if not 0 <= float(accuracy) <= 1:
            raise ValueError(f"{attack}: accuracy must lie in [0, 1], got {accuracy}")
        self._readings[attack] = float(accuracy)

    def add_own_count(self, attack: str, accuracy: float) -> None:
        """Record an attack's own count on a random model (e.g. AutoAttack's, which counts a point as
        fooled when one draw misclassified it): shown beside the re-classified numbers, never part
        of the worst case nor of the check."""
        self._own[attack] = float(accuracy)

    def merge(self, other: "WorstCase", prefix: str = "") -> None:
        """Add every attack, reading and own count of ``other`` (on the same n points), names prefixed.

        Raises:
            ValueError: a different n, or a name already present.
        """
        if other.n != self.n:
            raise ValueError(f"cannot merge a suite on {other.n} points into one on {self.n}")
        for k, v in other.items():
            self.add(prefix + k, v)
        for k, v in other.accuracies().items():
            if k not in other.attacks:
                self.add_reading(prefix + k, v)
        for k, v in other.own_counts().items():
            self.add_own_count(prefix + k, v)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """[(attack, (n,) correctness)] in the order added."""
        return list(self._correct.items())

    def own_counts(self) -> dict[str, float]:
        """{attack: its own count} as recorded by ``add_own_count``."""
        return dict(self._own)

    @property
    def attacks(self) -> list[str]:
        """The attacks with per-example correctness, in the order added."""
        return list(self._correct)

    def per_example(self) -> torch.Tensor:
        """(n,) float32: each point's minimum over the attacks of its correctness.

        Raises:
            ValueError: no per-example attack was added.
        """
        if not self._correct:
            raise ValueError("no attack with per-example correctness was added")
        return torch.stack(list(self._correct.values())).amin(0)

    def accuracies(self) -> dict[str, float]:
        """{attack: accuracy} for every attack, per-example ones first, then the readings."""
        return {**{k: float(v.mean()) for k, v in self._correct.items()}, **self._readings}

    def check(self, tol: float = 1e-9) -> None:
        """Raise ``AccountingError`` if any single attack reads lower than the suite's robust accuracy."""
        suite = float(self.per_example().mean())
        low = {k: v for k, v in self.accuracies().items() if v < suite - tol}
        if low:
            raise AccountingError(f"{self.budget or 'this budget'}: attack(s) {low} read lower than the per-example worst "
                                  f"case {suite:.4f} over {self.attacks}: they cannot be on the same points and model")

    @property
    def robust_accuracy(self) -> float:
        """Mean over examples of the per-example worst case, in [0, 1] (checked first)."""
        self.check()
        return float(self.per_example().mean())

    def worst_attack(self) -> list[str]:
        """Per example, the first attack (in the order added) attaining its minimum."""
        stacked = torch.stack(list(self._correct.values()))
        return [self.attacks[i] for i in stacked.argmin(0).tolist()]

    def table(self) -> pd.DataFrame:
        """Per attack: accuracy, "lowest on" (points where it attains the minimum, below 1), "only"
        (points where it alone attains it), the attack's own count where recorded; then the
        worst-case row. Checked first (``check``)."""
        robust = self.robust_accuracy
        stacked = torch.stack(list(self._correct.values()))
        low = (stacked == stacked.amin(0)) & (stacked.amin(0) < 1)
        only = low & (low.sum(0) == 1)
        rows = [{"attack": k, "accuracy": float(v.mean()), "lowest on": int(low[i].sum()), "only": int(only[i].sum()),
                 "own count": self._own.get(k)} for i, (k, v) in enumerate(self._correct.items())]
        rows += [{"attack": k, "accuracy": v, "lowest on": None, "only": None, "own count": self._own.get(k)}
                 for k, v in self._readings.items()]
        rows += [{"attack": k, "accuracy": None, "lowest on": None, "only": None, "own count": v}
                 for k, v in self._own.items() if k not in self._correct and k not in self._readings]
        rows.append({"attack": WORST, "accuracy": robust, "lowest on": None, "only": None, "own count": None})
        df = pd.DataFrame(rows, columns=["attack", "accuracy", "lowest on", "only", "own count"])
        return df.astype({"lowest on": "Int64", "only": "Int64", "accuracy": "float64", "own count": "float64"})


__all__ = ["WORST", "AccountingError", "correct_probability", "WorstCase"]
