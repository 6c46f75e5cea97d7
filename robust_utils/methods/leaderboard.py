"""Notebook 06's cross-defense evaluation: each defense under its paper's own protocol and under
AutoAttack at common budgets, the per-example worst case over every attack run at a budget, the
leaderboard, and a paragraph per defense written from the numbers.

Columns, per budget B (e.g. "Linf 0.1", ``budget_text``): "AA B" (AutoAttack, per-example
accounting: re-classified final iterates for a random model), "AA B (own count)" (AutoAttack's own
count, random models only), "audit B" and "protocol B" (where the audit or the paper's protocol
ran at B), and "robust B": the per-example worst case over all of them. The rule
``check_leaderboard`` verifies: "robust B" is never above any single attack's column at B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import torch

from .. import attacks
from .. import evaluation
from ..evaluation import reference
from ..evaluation.audit import Audit
from ..evaluation.autoattack import AutoAttackResult, autoattack
from ..evaluation.worst_case import AccountingError, WorstCase, correct_probability
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
ATTACK_PREFIXES = ("AA ", "audit ", "protocol ")  # the single-attack columns ``check_leaderboard`` compares
OWN = " (own count)"


@dataclass(frozen=True)
class OwnEvaluation:
    """A defense under its paper's protocol: the protocol, its kind ("accuracy" or "rho_adv"), our
    number, the paper's published number (None when the paper has no MNIST value for it), and for
    an accuracy the per-example correctness (N,) float32 (probabilities for a random model) and the
    budget ("inf", eps) when the protocol has a fixed one (None for an eps search or rho_adv)."""

    protocol: str
    kind: str
    ours: float
    paper: float | None
    correct: torch.Tensor | None = field(default=None, repr=False)
    budget: tuple | None = None


def own_evaluation(d: Defense, x: torch.Tensor, y: torch.Tensor, params: dict, passes: int = 5) -> OwnEvaluation:
    """Run ``d``'s paper's own evaluation on (x, y).

    Args:
        d: a ``defenses.Defense``.   x: (N, 1, 28, 28) float32 in [0, 1].   y: (N,) int64.
        params: the source notebook's parameters (``defenses.source_parameters``), plus for notebook
            06's models "eps" (the training eps); notebook 04's need "eval_steps" and "eval_clip"
            (DeepFool's steps and its per-step L2 clip, as notebook 04 runs it).
        passes: forward passes per image of a random model.
    Raises:
        KeyError: a parameter the protocol needs is missing.
    """
    text, kind = PROTOCOLS[d.notebook]
    m = d.model
    if d.notebook == "04_adversary_critic":
        steps, clip = params["eval_steps"], params["eval_clip"]
        ours = evaluation.rho_adv(m, x, y, lambda mm, xb, yb: attacks.deepfool(mm, xb, yb, steps=steps, max_step=clip))
        return OwnEvaluation(text, kind, ours, reference.lookup("matyasko", "Table 1", _MATYASKO[d.key], "rho DeepFool"))
    if d.notebook == "05_sdr_learnable":
        fg = attacks.fgsm_smallest_eps(m, x, y, attacks.foolbox_eps_grid(1.0, params["fgsm_grid_points"]))
        c = correct_probability(m, fg.x_adv, y, passes, 1000)
        return OwnEvaluation(text, kind, float(c.mean()), reference.lookup("khan", "Table 1", "FGSM Attack", d.key), c)
    if d.notebook == "06_adaptive_evaluation":
        e = params["eps"]
        x_adv = evaluation.run_attack(m, x, y, lambda mm, xb, yb: attacks.pgd(mm, xb, yb, e, 2.5 * e / 40, 40), 200)
        c = correct_probability(m, x_adv, y, passes if d.random else 1, 200)
        return OwnEvaluation(text.format(eps=e), kind, float(c.mean()), None, c, ("inf", float(e)))
    e = params["fgsm_eps"] if d.notebook == "01_probabilistic_loss" else 0.1
    c = correct_probability(m, evaluation.run_attack(m, x, y, lambda mm, xb, yb: attacks.fgsm(mm, xb, yb, e), 200), y, 1, 200)
    paper = reference.lookup("picot", "Table 1", "eps=0.1", _PICOT[d.key]) if d.notebook == "02_hr_loss" else None
    return OwnEvaluation(text.format(fgsm_eps=e), kind, float(c.mean()), paper, c, ("inf", float(e)))


def budget_text(norm: str, eps: float) -> str:
    """'Linf 0.1' / 'L2 1.5'."""
    return f"{'Linf' if norm == 'inf' else 'L2'} {eps:g}"


def budget_label(norm: str, eps: float) -> str:
    """'AA Linf 0.1' / 'AA L2 1.5': the AutoAttack column at a budget."""
    return f"AA {budget_text(norm, eps)}"


def robust_label(norm: str, eps: float) -> str:
    """'robust Linf 0.1': the per-example worst case over every attack at a budget (the sort key)."""
    return f"robust {budget_text(norm, eps)}"


def autoattack_runs(d: Defense, x: torch.Tensor, y: torch.Tensor, budgets, seed: int, passes: int = 5,
                    batch_size: int = 500) -> dict[str, AutoAttackResult]:
    """AutoAttack on ``d`` at each (norm, eps) of ``budgets``: the standard version for a
    deterministic model, the rand version (per-example accounting, ``passes`` fresh passes, and
    AutoAttack's own count) for a random one. Returns {budget_label: AutoAttackResult}."""
    return {budget_label(norm, eps): autoattack(d.model, x, y, eps, norm, version="rand" if d.random else "standard",
                                                seed=seed, batch_size=batch_size, passes=passes)
            for norm, eps in budgets}


def autoattack_columns(runs: Mapping[str, AutoAttackResult], random: bool) -> dict[str, float | None]:
    """{"AA B": re-classified robust accuracy, "AA B (own count)": AutoAttack's own count for a random
    model (None for a deterministic one, where the two are the same number)}."""
    out: dict[str, float | None] = {}
    for label, r in runs.items():
        out[label] = r.robust_accuracy
        out[label + OWN] = r.own_accuracy if random else None
    return out


def autoattack_accuracies(d: Defense, x: torch.Tensor, y: torch.Tensor, budgets, seed: int, passes: int = 5,
                          batch_size: int = 500) -> dict[str, float | None]:
    """``autoattack_columns(autoattack_runs(...), d.random)``: the AA columns of ``d``'s row."""
    return autoattack_columns(autoattack_runs(d, x, y, budgets, seed, passes, batch_size), d.random)


def worst_case(norm: str, eps: float, n: int, aa: AutoAttackResult | None = None, audit: Audit | None = None,
               own: OwnEvaluation | None = None, strict: bool = True) -> WorstCase:
    """The per-example worst case at (norm, eps) over AutoAttack's members (``aa``), the audit's
    attacks (if ``audit`` ran at this budget) and the paper's protocol (if it is an accuracy at
    this budget); every part must be on the same n points, in one order.

    Raises:
        ValueError: nothing at this budget (unless ``strict=False``: an empty suite), or parts on
            different numbers of points.
    """
    wc = WorstCase(n, budget_text(norm, eps))
    if aa is not None:
        aa.add_to(wc)
    if audit is not None and audit.norm == norm and math.isclose(audit.eps, eps) and audit.worst_case is not None:
        wc.merge(audit.worst_case, "audit ")
    if own is not None and own.correct is not None and own.budget is not None and own.budget[0] == norm \
            and math.isclose(own.budget[1], eps):
        wc.add(f"protocol: {own.protocol}", own.correct)
    if strict and not wc.attacks:
        raise ValueError(f"no attack ran at {budget_text(norm, eps)}")
    return wc


def worst_case_columns(budgets, n: int, runs: Mapping[str, AutoAttackResult], audit: Audit | None = None,
                       own: OwnEvaluation | None = None) -> tuple[dict[str, float], dict[str, WorstCase]]:
    """({column: value}, {budget text: WorstCase}) for one defense: per budget, "robust B" and, where
    they ran there, "audit B" (the audit's own worst case) and "protocol B" (the paper's protocol).
    A budget where nothing ran gets an empty suite and no columns."""
    cols: dict[str, float] = {}
    suites: dict[str, WorstCase] = {}
    for norm, eps in budgets:
        bt = budget_text(norm, eps)
        wc = worst_case(norm, eps, n, runs.get(budget_label(norm, eps)), audit, own, strict=False)
        suites[bt] = wc
        if not wc.attacks:
            continue
        if audit is not None and audit.norm == norm and math.isclose(audit.eps, eps):
            cols[f"audit {bt}"] = audit.robust_accuracy
        if own is not None and own.budget is not None and own.budget[0] == norm and math.isclose(own.budget[1], eps):
            cols[f"protocol {bt}"] = own.ours
        cols[f"robust {bt}"] = wc.robust_accuracy
    return cols, suites


def check_leaderboard(board, tol: float = 1e-6) -> list[str]:
    """The rule "robust accuracy <= every single attack's accuracy at that budget" on a leaderboard.

    Args:
        board: rows as results.json records them ({"columns": [...], "rows": [{...}]}), a list of
            row dicts, or a DataFrame. For every column "robust B", the single-attack columns at B
            are "AA B", "audit B" and "protocol B" (own counts excluded); missing values are skipped.
    Returns:
        The violations, one line each (empty: the rule holds). A board without any "robust" column
        gives one line saying so (the rule cannot be checked).
    """
    rows = board["rows"] if isinstance(board, Mapping) else board.to_dict("records") if isinstance(board, pd.DataFrame) else board
    problems = []
    robust_cols = sorted({c for r in rows for c in r if str(c).startswith("robust ")})
    if not robust_cols:
        return ["no 'robust <budget>' column: the worst-case rule cannot be checked"]
    for r in rows:
        for rc in robust_cols:
            bt = rc[len("robust "):]
            if _missing(r.get(rc)):
                continue
            for c in (p + bt for p in ATTACK_PREFIXES):
                if not _missing(r.get(c)) and r[rc] > r[c] + tol:
                    problems.append(f"{r.get('defense', '?')}: {rc} {r[rc]:.4f} > {c} {r[c]:.4f}")
    return problems


def assert_leaderboard(board, tol: float = 1e-6) -> None:
    """Raise ``AccountingError`` listing the violations of ``check_leaderboard`` (if any)."""
    problems = check_leaderboard(board, tol)
    if problems:
        raise AccountingError("; ".join(problems))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def paragraph(row: pd.Series, twin_row: pd.Series | None, headline: str, audit_verdict: str) -> str:
    """One paragraph on a defense, from its leaderboard row (and its twin's), nothing else.

    Args:
        row: the defense's leaderboard row (columns defense, architecture, random, clean, protocol,
            protocol: paper, protocol: ours, the AA columns and, if present, "robust B").
        twin_row: the row of the model trained the same way without the defense, or None.
        headline: the headline column, "AA B" or "robust B"; the comparisons use "robust B" when the
            row has it.   audit_verdict: the audit's verdict line.
    """
    bt = headline.split(" ", 1)[1]
    key = f"robust {bt}" if f"robust {bt}" in row.index else f"AA {bt}"
    aa = [c for c in row.index if c.startswith("AA ") and not c.endswith(OWN)]
    # (whether the model came from the cache is left out: the text must not depend on what ran before)
    parts = [f"**{row['defense']}** ({row['architecture']}; {'random' if row['random'] else 'deterministic'} forward pass): "
             f"clean accuracy {row['clean']:.1%}."]
    if not _missing(row["protocol: ours"]):
        fmt = "{:.3f}" if row["protocol"].startswith("rho_adv") else "{:.1%}"
        paper = "" if _missing(row["protocol: paper"]) else f" (the paper: {fmt.format(row['protocol: paper'])})"
        parts.append(f"Under the paper's own protocol, {row['protocol']}, it scores {fmt.format(row['protocol: ours'])}{paper}.")
    parts.append("Under AutoAttack it keeps " + ", ".join(f"{row[c]:.1%} at {c[3:]}" for c in aa) + ".")
    own = [c for c in row.index if c.endswith(OWN) and not _missing(row[c])]
    if own:
        parts.append("AutoAttack's own count, one draw of the randomness per check, reads "
                     + ", ".join(f"{row[c]:.1%} at {c[3:-len(OWN)]}" for c in own) + ".")
    if key.startswith("robust"):
        parts.append(f"Its robust accuracy at {bt}, the per-example worst case over every attack run there, is {row[key]:.1%}.")
    if twin_row is not None:
        gain = row[key] - twin_row[key]
        parts.append(f"The same model trained without the defense ({twin_row['defense']}) keeps {twin_row[key]:.1%} at {bt}, "
                     f"so the defense {'adds' if gain >= 0 else 'loses'} {abs(gain) * 100:.1f} points over it there.")
    if not _missing(row["protocol: ours"]) and not row["protocol"].startswith("rho_adv"):
        gap = row["protocol: ours"] - row[key]
        if gap > 0.05:
            parts.append(f"The paper's protocol reads {gap * 100:.1f} points higher than "
                         f"{'the worst case' if key.startswith('robust') else 'AutoAttack'} at {bt}.")
    parts.append(f"Audit: {audit_verdict}.")
    return " ".join(parts)


__all__ = ["PROTOCOLS", "OwnEvaluation", "own_evaluation", "budget_text", "budget_label", "robust_label",
           "autoattack_runs", "autoattack_columns", "autoattack_accuracies", "worst_case", "worst_case_columns",
           "check_leaderboard", "assert_leaderboard", "paragraph"]
