"""Notebook 06's cross-defense evaluation: each defense under its paper's own protocol and under
AutoAttack at common budgets, the leaderboard, and a paragraph per defense written from the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from .. import attacks
from .. import evaluation
from ..evaluation import reference
from ..evaluation.autoattack import autoattack
from .defenses import Defense

#: The paper's own protocol per source notebook: (description, kind of number).
PROTOCOLS = {
    "01_probabilistic_loss": ("FGSM, eps {fgsm_eps:g} (the paper's budget)", "accuracy"),
    "02_hr_loss": ("FGSM on CE, eps 0.1 (Table 1)", "accuracy"),
    "04_adversary_critic": ("rho_adv under DeepFool (Table 1)", "rho_adv"),
    "05_sdr_learnable": ("FGSM with Foolbox 1.x's eps search up to 1 (Table 1)", "accuracy"),
    "06_adaptive_evaluation": ("PGD-40 at the training eps {eps:g} (Madry et al.)", "accuracy"),
}
_PICOT = {"ce": "CE/MNIST", "hr": "HRCE/MNIST"}
_MATYASKO = {"Reference": "LeNet-5/Reference", "AT": "LeNet-5/AT", "Critic": "LeNet-5/Critic"}


@dataclass(frozen=True)
class OwnEvaluation:
    """A defense under its paper's protocol: the protocol, its kind ("accuracy" or "rho_adv"),
    our number, and the paper's published number (None when the paper has no MNIST value for it)."""

    protocol: str
    kind: str
    ours: float
    paper: float | None


def own_evaluation(d: Defense, x: torch.Tensor, y: torch.Tensor, params: dict, passes: int = 5) -> OwnEvaluation:
    """Run ``d``'s paper's own evaluation on (x, y).

    Args:
        d: a ``defenses.Defense``.   x: (N, 1, 28, 28) float32 in [0, 1].   y: (N,) int64.
        params: the source notebook's parameters (``defenses.source_parameters``), plus for notebook
            06's models "eps" (the training eps).   passes: forward passes per image of a random model.
    """
    text, kind = PROTOCOLS[d.notebook]
    m = d.model
    if d.notebook == "04_adversary_critic":
        ours = evaluation.rho_adv(m, x, y, lambda mm, xb, yb: attacks.deepfool(mm, xb, yb, steps=params["eval_steps"]))
        paper = reference.lookup("matyasko", "Table 1", _MATYASKO[d.key], "rho DeepFool")
        return OwnEvaluation(text, kind, ours, paper)
    if d.notebook == "05_sdr_learnable":
        fg = attacks.fgsm_smallest_eps(m, x, y, attacks.foolbox_eps_grid(1.0, params["fgsm_grid_points"]))
        ours = evaluation.stochastic_accuracy(m, fg.x_adv, y, passes=passes).mean
        return OwnEvaluation(text, kind, ours, reference.lookup("khan", "Table 1", "FGSM Attack", d.key))
    if d.notebook == "06_adaptive_evaluation":
        e = params["eps"]
        att = lambda mm, xb, yb: attacks.pgd(mm, xb, yb, e, 2.5 * e / 40, 40)
        ours = evaluation.attack_accuracy(m, x, y, att, passes=passes if d.random else 1).mean
        return OwnEvaluation(text.format(eps=e), kind, ours, None)
    e = params["fgsm_eps"] if d.notebook == "01_probabilistic_loss" else 0.1
    ours = evaluation.attack_accuracy(m, x, y, lambda mm, xb, yb: attacks.fgsm(mm, xb, yb, e)).mean
    paper = reference.lookup("picot", "Table 1", "eps=0.1", _PICOT[d.key]) if d.notebook == "02_hr_loss" else None
    return OwnEvaluation(text.format(fgsm_eps=e), kind, ours, paper)


def budget_label(norm: str, eps: float) -> str:
    """'AA Linf 0.1' / 'AA L2 1.5'."""
    return f"AA {'Linf' if norm == 'inf' else 'L2'} {eps:g}"


def autoattack_accuracies(d: Defense, x: torch.Tensor, y: torch.Tensor, budgets, seed: int, passes: int = 5,
                          batch_size: int = 500) -> dict[str, float]:
    """Robust accuracy of ``d`` under AutoAttack at each (norm, eps) of ``budgets``: the standard
    version for a deterministic model; for a random one the rand version, and the accuracy is the
    mean over ``passes`` fresh forward passes on its adversarial images."""
    out = {}
    for norm, eps in budgets:
        r = autoattack(d.model, x, y, eps, norm, version="rand" if d.random else "standard", seed=seed,
                       batch_size=batch_size)
        out[budget_label(norm, eps)] = (evaluation.stochastic_accuracy(d.model, r.x_adv, y, passes=passes).mean
                                        if d.random else r.robust_accuracy)
    return out


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def paragraph(row: pd.Series, twin_row: pd.Series | None, headline: str, audit_verdict: str) -> str:
    """One paragraph on a defense, from its leaderboard row (and its twin's), nothing else.

    Args:
        row: the defense's leaderboard row (columns defense, architecture, random, clean, protocol, protocol: paper, protocol: ours, and the AA columns).
        twin_row: its undefended twin's row, or None.   headline: the AA column compared with the twin.
        audit_verdict: the audit's verdict line.
    """
    aa = [c for c in row.index if c.startswith("AA ")]
    # (whether the model came from the cache is left out: the text must not depend on what ran before)
    parts = [f"**{row['defense']}** ({row['architecture']}; {'random' if row['random'] else 'deterministic'} forward pass): "
             f"clean accuracy {row['clean']:.1%}."]
    if not _missing(row["protocol: ours"]):
        fmt = "{:.3f}" if row["protocol"].startswith("rho_adv") else "{:.1%}"
        paper = "" if _missing(row["protocol: paper"]) else f" (the paper: {fmt.format(row['protocol: paper'])})"
        parts.append(f"Under the paper's own protocol, {row['protocol']}, it scores {fmt.format(row['protocol: ours'])}{paper}.")
    parts.append("Under AutoAttack it keeps " + ", ".join(f"{row[c]:.1%} at {c[3:]}" for c in aa) + ".")
    if twin_row is not None:
        gain = row[headline] - twin_row[headline]
        parts.append(f"Its undefended twin ({twin_row['defense']}) keeps {twin_row[headline]:.1%} at {headline[3:]}, "
                     f"so the defense {'adds' if gain >= 0 else 'loses'} {abs(gain) * 100:.1f} points there.")
    if not _missing(row["protocol: ours"]) and not row["protocol"].startswith("rho_adv"):
        gap = row["protocol: ours"] - row[headline]
        if gap > 0.05:
            parts.append(f"The paper's protocol reads {gap * 100:.1f} points higher than AutoAttack at {headline[3:]}.")
    parts.append(f"Audit: {audit_verdict}.")
    return " ".join(parts)
