"""Gradient-masking audit of a defended model: the checks of Carlini et al. 2019 ("On evaluating
adversarial robustness", section 5 and the checklist of its appendix), Athalye, Carlini and
Wagner 2018 ("Obfuscated gradients give a false sense of security", section 3: shattered,
stochastic and vanishing gradients) and Croce and Hein 2020 (AutoAttack's own checks).

A failed check says the evaluation, not the defense, is the likely culprit: a robust accuracy
measured by an attack that fails one of these is not an upper bound to trust. Every comparison
is a test on the same points (exact McNemar for a deterministic model, the paired t-test on the
probabilities of being correct for a random one); a check that saw no violation passes only if it
could have seen one of ``drop`` (10 points), else it is "inconclusive" (``sanity``). The audit's
robust accuracy is the per-example worst case over every attack it ran at eps (``WorstCase``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import attacks
from ..attacks.grad import input_gradient
from ..core.checks import check_eps, check_images, check_labels, check_positive_int
from ..core.switch import temporarily
from ..nn.randomness import random_layers
from .autoattack import square
from .robustness import run_attack
from .sanity import at_least_as_strong, compare, never_rises, reaches_zero
from .worst_case import WorstCase, correct_probability

COLUMNS = ["check", "status", "evidence"]


@dataclass(frozen=True)
class Audit:
    """What ``audit`` returns.

    Attributes:
        table: DataFrame with columns check, status ("pass", "fail", "inconclusive" or "info") and
            evidence (the measured numbers, rounded, with p-values and smallest detectable differences).
        verdict: one line, written from the table.
        passed: no check failed.   random: the forward pass is random in the mode given.
        robust_accuracy: the per-example worst case over every attack the audit ran at eps (for a
            random model, per point on the probabilities of being correct), in [0, 1].
        accuracies: {attack label: accuracy} behind the table.
        per_example: (N,) float32, each point's worst case.   worst_case: the ``WorstCase`` (its table
            says which attack was worst where).   n: points audited.   mde: the largest smallest
            detectable difference among the comparisons that found nothing significant (the
            largest drop the audit could have missed; 0 if every comparison was significant).
        eps, norm: the budget audited.
    """

    table: pd.DataFrame
    verdict: str
    passed: bool
    random: bool
    robust_accuracy: float
    accuracies: dict = field(default_factory=dict)
    per_example: torch.Tensor | None = field(default=None, repr=False)
    worst_case: WorstCase | None = field(default=None, repr=False)
    n: int = 0
    mde: float = 0.0
    eps: float = 0.0
    norm: str = "inf"


def _row(check: str, ok: bool | None, evidence: str) -> dict:
    return {"check": check, "status": "info" if ok is None else "pass" if ok else "fail", "evidence": evidence, "mde": 0.0}


def determinism_row(model: nn.Module, probe: torch.Tensor, eot_max: int) -> tuple[dict, bool]:
    """(row, random): is the forward pass random in the mode audited (two passes of ``probe``
    compared, or a known random layer, ``nn.randomness``), and in train mode? (info)."""
    with torch.inference_mode():
        random = not torch.equal(model(probe), model(probe)) or bool(random_layers(model))
    with temporarily(list(model.modules()), training=True), torch.inference_mode():
        random_train = not torch.equal(model(probe), model(probe))
    return _row("determinism probe", None,
                f"forward pass {'random' if random else 'deterministic'} in the mode audited "
                f"({'train' if model.training else 'eval'}), {'random' if random_train else 'deterministic'} in train mode"
                + (f"; attacked through EOT with up to {eot_max} samples" if random else "")), random


def logits_row(model: nn.Module, probe: torch.Tensor) -> dict:
    """Outputs that are rows of a probability simplex make CE's gradient vanish (Carlini et al. 2019, 5.3)."""
    with torch.inference_mode():
        out = model(probe)
    simplex = bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out)).to(out), atol=1e-3))
    return _row("outputs are logits, not probabilities", not simplex,
                f"outputs in [{out.min():.3g}, {out.max():.3g}], row sums {out.sum(1).mean():.3g}")


def gradient_row(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grad_tol: float, batch_size: int) -> dict:
    """Zero or NaN input gradients of CE in at most ``grad_tol`` of the points (shattered or
    vanishing gradients, Athalye et al. 2018, section 3)."""
    def ce(logits, yy):
        return F.cross_entropy(logits, yy, reduction="sum")

    grads = torch.cat([input_gradient(model, xb, yb, ce)[1].flatten(1) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
    bad = ((grads.abs().amax(1) == 0) | ~torch.isfinite(grads).all(1)).float().mean().item()
    return _row(f"zero or NaN input gradients in at most {grad_tol:.0%} of points", bad <= grad_tol, f"{bad:.1%} of {len(y)} points")


def converged_row(check: str, lo: tuple[str, torch.Tensor], hi: tuple[str, torch.Tensor], alpha: float, drop: float) -> dict:
    """The stronger setting ``hi`` (more steps, restarts or EOT samples) must not leave significantly
    fewer points correct than ``lo``: fails when accuracy under ``lo`` is significantly higher."""
    row = at_least_as_strong(lo, hi, None, alpha, drop)
    row["check"] = check
    row["evidence"] = f"{lo[0]}: {float(lo[1].mean()):.3f}, {hi[0]}: {float(hi[1].mean()):.3f} ({row['evidence'].split('(', 1)[1]}"
    return row


def _attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, random: bool, twin, sweep_eps,
             steps, restarts, eot_samples, square_queries, passes, seed, batch_size) -> tuple[dict, dict]:
    """({label: (N,) correctness at eps}, {eps: (N,) correctness of the strongest PGD}); seeded, RNG restored."""
    target = attacks.eot(model, eot_samples[-1]) if random else model

    def acc(x_adv: torch.Tensor) -> torch.Tensor:
        return correct_probability(model, x_adv, y, passes if random else 1, batch_size)

    def pgd(e, s, r=1, net=None, m=None):
        return acc(run_attack(net or m or target, x, y, lambda mm, xb, yb: attacks.pgd(mm, xb, yb, e, 2.5 * e / s, s, norm=norm,
                                                                                       restarts=r), batch_size))

    per_point: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for s in steps:
            per_point[f"PGD-{s}"] = pgd(eps, s)
        per_point[f"PGD-{steps[-1]} x {restarts} restarts"] = pgd(eps, steps[-1], restarts) if restarts > 1 else per_point[f"PGD-{steps[-1]}"]
        if norm == "inf":
            per_point["FGSM"] = acc(run_attack(target, x, y, lambda m, xb, yb: attacks.fgsm(m, xb, yb, eps), batch_size))
        else:  # the single-step L2 attack: one full step along the normalised gradient
            per_point["FGM (L2, 1 step)"] = pgd(eps, 1)
        per_point[f"Square ({square_queries} queries)"] = acc(square(model, x, y, eps, norm, square_queries, seed))
        if twin is not None:
            per_point["transfer from the undefended twin"] = pgd(eps, steps[-1], restarts, net=twin)
        sweep = {e: (per_point[f"PGD-{steps[-1]}"] if e == eps else pgd(e, steps[-1])) for e in sweep_eps}
        if random:
            for m in eot_samples[:-1]:
                per_point[f"PGD-{steps[-1]}, EOT {m}"] = pgd(eps, steps[-1], m=attacks.eot(model, m))
            per_point[f"PGD-{steps[-1]}, EOT {eot_samples[-1]}"] = per_point[f"PGD-{steps[-1]}"]
    return per_point, sweep


def attack_rows(per_point: dict, sweep: dict, eps: float, norm: str, random: bool, steps, restarts, eot_samples,
                square_queries: int, zero_tol: float, alpha: float, drop: float) -> list[dict]:
    """The sweep, strength and convergence checks (4-11 of ``audit``) on the per-point results."""
    white_label, top = f"PGD-{steps[-1]} x {restarts} restarts", f"PGD-{steps[-1]}"
    white = torch.minimum(per_point[white_label], per_point[top])  # per point, the stronger of the two
    single = "FGSM" if norm == "inf" else "FGM (L2, 1 step)"
    rows = [never_rises(sweep, None, alpha, drop),
            reaches_zero(f"the largest eps ({max(sweep):g})", sweep[max(sweep)], None, zero_tol, alpha, drop),
            at_least_as_strong((top, white), (single, per_point[single]), None, alpha, drop),
            at_least_as_strong(("white-box PGD", white), (f"Square ({square_queries} queries)",
                                                          per_point[f"Square ({square_queries} queries)"]), None, alpha, drop)]
    if "transfer from the undefended twin" in per_point:
        rows.append(at_least_as_strong(("white-box PGD", white), ("transfer from the undefended twin",
                                                                  per_point["transfer from the undefended twin"]), None, alpha, drop))
    if len(steps) > 1:
        rows.append(converged_row("PGD converged in steps", (f"PGD-{steps[-2]}", per_point[f"PGD-{steps[-2]}"]),
                                  (top, per_point[top]), alpha, drop))
    if restarts > 1:
        rows.append(converged_row("PGD converged in restarts", (top, per_point[top]),
                                  (white_label, per_point[white_label]), alpha, drop))
    if random and len(eot_samples) > 1:
        lo, hi = (f"PGD-{steps[-1]}, EOT {m}" for m in eot_samples[-2:])
        rows.append(converged_row("EOT converged in samples", (lo, per_point[lo]), (hi, per_point[hi]), alpha, drop))
    return rows


def _validate(x, y, eps, norm, steps, restarts, eot_samples, passes, square_queries, eps_sweep) -> tuple:
    check_images(x)
    check_labels(y, x.shape[0])
    eps = check_eps(eps, norm)
    steps = [check_positive_int(s, "steps") for s in steps]
    eot_samples = [check_positive_int(m, "eot_samples") for m in eot_samples]
    if not steps or steps != sorted(set(steps)) or not eot_samples or eot_samples != sorted(set(eot_samples)):
        raise ValueError(f"steps and eot_samples must be increasing, got {steps} and {eot_samples}")
    check_positive_int(restarts, "restarts")
    check_positive_int(passes, "passes")
    check_positive_int(square_queries, "square_queries")
    if eps_sweep is None:
        eps_sweep = sorted({eps, min(4 * eps, 0.5), 0.5} if norm == "inf" else {eps, 2 * eps, 4 * eps})
    return eps, steps, eot_samples, sorted({check_eps(e, norm) for e in eps_sweep} | {eps})


def audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", *,
          twin: nn.Module | None = None, eps_sweep: Sequence[float] | None = None, steps: Sequence[int] = (10, 50, 200),
          restarts: int = 5, eot_samples: Sequence[int] = (1, 10, 30), square_queries: int = 1000, passes: int = 5,
          alpha: float = 0.05, drop: float = 0.10, zero_tol: float = 0.05, grad_tol: float = 0.01, seed: int = 0,
          batch_size: int = 200) -> Audit:
    """Audit a model's robust accuracy at eps for the signs of gradient masking.

    Checks, in order: 1. determinism probe (info; a random model is attacked through
    ``attacks.eot``); 2. logits, not probabilities; 3. zero/NaN input-gradient rate at most
    ``grad_tol``; 4.-5. the eps sweep of the strongest PGD: accuracy never rises with eps, and the
    largest eps drives it to <= ``zero_tol``; 6. iterative (PGD) at least as strong as single-step
    (FGSM); 7. white-box at least as strong as black-box (Square, ``square_queries`` queries); 8.
    white-box at least as strong as transfer from the undefended ``twin`` (if given); 9. PGD
    converged in steps (the last two of ``steps``); 10. in restarts (1 vs ``restarts``); 11.
    (random models) EOT converged (the last two of ``eot_samples``). Comparisons 4-11 are tests at
    level ``alpha`` on the same points; a check passes only if it could have seen a violation of
    ``drop``. PGD uses step size 2.5 eps / steps (Madry et al. 2018) and a random start.

    The verdict says "no sign of gradient masking" only when every check passed (so each could
    have seen a ``drop`` drop); "inconclusive at n = ..." when none failed but some could not.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is the one audited and left as is.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        eps: the budget audited, pixel units of [0, 1], in ``norm`` ("inf" or "2").
        twin: the model trained the same way without the defense (for the transfer check).
        eps_sweep: budgets of the sweep (default: eps and 4 eps, capped at 0.5 for Linf, and Linf 0.5).
        steps: PGD step counts, increasing; the largest is the white-box attack.
        restarts: restarts of the strongest PGD.   eot_samples: increasing EOT sample counts
            (random models only; the largest is used by every white-box attack).
        square_queries: Square's queries per point.   passes: fresh forward passes that classify an
            adversarial image of a random model (its probability of being correct).
        alpha, drop, zero_tol, grad_tol: the thresholds above.   seed: seeds the attacks (the
            global RNG is restored afterwards).   batch_size: points per attack batch.
    Returns:
        Audit.
    Raises:
        ValueError: bad x, y, eps, norm, steps, restarts, eot_samples, passes or sweep (before any work).
    """
    eps, steps, eot_samples, eps_sweep = _validate(x, y, eps, norm, steps, restarts, eot_samples, passes,
                                                   square_queries, eps_sweep)
    probe = x[:batch_size]
    first, random = determinism_row(model, probe, eot_samples[-1])
    rows = [first, logits_row(model, probe), gradient_row(model, x, y, grad_tol, batch_size)]
    per_point, sweep = _attacks(model, x, y, eps, norm, random, twin, eps_sweep, steps, restarts, eot_samples,
                                square_queries, passes, seed, batch_size)
    rows += attack_rows(per_point, sweep, eps, norm, random, steps, restarts, eot_samples, square_queries, zero_tol,
                        alpha, drop)
    suite = WorstCase(len(y), _eps_text(eps, norm))
    for label, c in per_point.items():
        if not any(c is per_point[k] for k in suite.attacks):  # an alias (1 restart, the largest EOT) counts once
            suite.add(label, c)
    table = pd.DataFrame(rows, columns=COLUMNS)
    mde = max(r["mde"] for r in rows)
    verdict = _verdict(table, eps, norm, suite, len(y), mde, drop)
    return Audit(table, verdict, not (table.status == "fail").any(), random, suite.robust_accuracy,
                 {k: float(v.mean()) for k, v in per_point.items()}, suite.per_example(), suite, len(y), mde, eps, norm)


def _verdict(table: pd.DataFrame, eps: float, norm: str, suite: WorstCase, n: int, mde: float, drop: float) -> str:
    failed = table.loc[table.status == "fail", "check"].tolist()
    unsure = table.loc[table.status == "inconclusive", "check"].tolist()
    bound = f"robust accuracy <= {suite.robust_accuracy:.3f} (per-example worst case over {len(suite.attacks)} attacks)"
    if failed:
        return (f"gradient masking or an unconverged evaluation suspected at {_eps_text(eps, norm)}: "
                f"{len(failed)} check(s) failed ({'; '.join(failed)}); {bound}, not a trusted bound")
    if unsure:
        return (f"inconclusive at n = {n}: no check failed at {_eps_text(eps, norm)}, but {len(unsure)} could not have "
                f"seen a {drop * 100:g}-point drop (smallest detectable difference up to {mde:.3f}); {bound}")
    return (f"no sign of gradient masking at {_eps_text(eps, norm)}: all {int((table.status == 'pass').sum())} checks "
            f"passed, each able to see a {drop * 100:g}-point drop; {bound}")


def _eps_text(eps: float, norm: str) -> str:
    return f"{'Linf' if norm == 'inf' else 'L2'} eps {eps:g}"


__all__ = ["COLUMNS", "Audit", "audit", "determinism_row", "logits_row", "gradient_row", "converged_row", "attack_rows"]
