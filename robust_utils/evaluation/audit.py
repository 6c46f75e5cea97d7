"""Gradient-masking audit of a defended model: the checks of Carlini et al. 2019 ("On evaluating
adversarial robustness", section 5 and the checklist of its appendix), Athalye, Carlini and
Wagner 2018 ("Obfuscated gradients give a false sense of security", section 3: shattered,
stochastic and vanishing gradients) and Croce and Hein 2020 (AutoAttack's own checks).

A failed check says the evaluation, not the defense, is the likely culprit: a robust accuracy
measured by an attack that fails one of these is not an upper bound to trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import attacks
from ..core.checks import check_eps, check_images, check_labels, check_positive_int
from ..core.switch import temporarily
from ..attacks.grad import input_gradient
from .autoattack import square
from ..core.stats import binomial_se
from .robustness import run_attack
from .sanity import sanity_checks

COLUMNS = ["check", "status", "evidence"]


@dataclass(frozen=True)
class Audit:
    """What ``audit`` returns.

    Attributes:
        table: DataFrame with columns check, status ("pass", "fail" or "info") and evidence
            (the measured numbers, rounded).
        verdict: one line, written from the table.
        passed: no check failed.   random: the forward pass is random in the mode given.
        robust_accuracy: the worst case over every attack the audit ran at eps (per point for a
            deterministic model; the lowest mean accuracy for a random one), in [0, 1].
        accuracies: {attack label: accuracy} behind the table.
    """

    table: pd.DataFrame
    verdict: str
    passed: bool
    random: bool
    robust_accuracy: float
    accuracies: dict = field(default_factory=dict)


def is_random(model: nn.Module, x: torch.Tensor) -> bool:
    """True when two forward passes of x in the model's current mode give different logits."""
    with torch.inference_mode():
        return not torch.equal(model(x), model(x))


def _row(check: str, ok: bool | None, evidence: str) -> dict:
    return {"check": check, "status": "info" if ok is None else "pass" if ok else "fail", "evidence": evidence}


def audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", *,
          twin: nn.Module | None = None, eps_sweep: Sequence[float] | None = None, steps: Sequence[int] = (10, 50, 200),
          restarts: int = 5, eot_samples: Sequence[int] = (1, 10, 30), square_queries: int = 1000, passes: int = 5,
          z: float = 2.0, zero_tol: float = 0.05, grad_tol: float = 0.01, seed: int = 0,
          batch_size: int = 200) -> Audit:
    """Audit a model's robust accuracy at eps for the signs of gradient masking.

    Checks, in order (each comparison with a slack of z binomial standard errors on n points):
      1. determinism probe: is the forward pass random in the given mode, and in train mode?
         (info; a random model is attacked through ``attacks.eot``);
      2. logits, not probabilities: outputs that are rows of a probability simplex make CE's
         gradient vanish (Carlini et al. 2019, 5.3);
      3. zero/NaN gradient rate of CE w.r.t. the input at most ``grad_tol`` (shattered or
         vanishing gradients, Athalye et al. 2018, 3);
      4.-5. the eps sweep: accuracy never rises with eps, and the largest eps drives it to
         <= ``zero_tol`` (an unbounded attack must succeed);
      6. iterative (PGD) at least as strong as single-step (FGSM);
      7. white-box at least as strong as black-box (Square, ``square_queries`` queries);
      8. white-box at least as strong as transfer from the undefended ``twin`` (if given);
      9. PGD converged in steps: the last two of ``steps`` agree;
      10. PGD converged in restarts: 1 restart and ``restarts`` agree;
      11. (random models) EOT converged: the last two of ``eot_samples`` agree.
    PGD uses step size 2.5 eps / steps (Madry et al. 2018) and a random start.

    Args:
        model: maps x -> logits (N, K); its train/eval mode is the one audited and left as is.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        eps: the budget audited, pixel units of [0, 1], in ``norm`` ("inf" or "2").
        twin: the same architecture trained without the defense (for the transfer check).
        eps_sweep: budgets of the sweep (default: eps and 4 eps, capped at 0.5 for Linf, and for
            Linf 0.5, where every image can be turned into the same grey image).
        steps: PGD step counts, increasing; the largest is the white-box attack.
        restarts: restarts of the strongest PGD.   eot_samples: increasing EOT sample counts
            (random models only; the largest is used by every white-box attack).
        square_queries: Square's queries per point.   passes: forward passes that classify an
            adversarial image of a random model (mean accuracy).
        z, zero_tol, grad_tol: the thresholds above.   seed: seeds the attacks (the global RNG is
            restored afterwards).   batch_size: points per attack batch.
    Returns:
        Audit.
    Raises:
        ValueError: bad x, y, eps, norm, steps, restarts, eot_samples, passes or sweep (before any work).
    """
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
    eps_sweep = sorted({check_eps(e, norm) for e in eps_sweep} | {eps})
    n = len(y)

    probe = x[:batch_size]
    random = is_random(model, probe)
    with temporarily(list(model.modules()), training=True):
        random_train = is_random(model, probe)
    rows = [_row("determinism probe", None,
                 f"forward pass {'random' if random else 'deterministic'} in the mode audited "
                 f"({'train' if model.training else 'eval'}), {'random' if random_train else 'deterministic'} in train mode"
                 + (f"; attacked through EOT with up to {eot_samples[-1]} samples" if random else ""))]

    with torch.inference_mode():
        out = model(probe)
    simplex = bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out)).to(out), atol=1e-3))
    rows.append(_row("outputs are logits, not probabilities", not simplex,
                     f"outputs in [{out.min():.3g}, {out.max():.3g}], row sums {out.sum(1).mean():.3g}"))

    def ce(logits, yy):
        return F.cross_entropy(logits, yy, reduction="sum")

    grads = torch.cat([input_gradient(model, xb, yb, ce)[1].flatten(1) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
    bad = ((grads.abs().amax(1) == 0) | ~torch.isfinite(grads).all(1)).float().mean().item()
    rows.append(_row(f"zero or NaN input gradients in at most {grad_tol:.0%} of points", bad <= grad_tol,
                     f"{bad:.1%} of {n} points"))

    target = attacks.eot(model, eot_samples[-1]) if random else model

    def acc(x_adv: torch.Tensor) -> torch.Tensor:
        """Per-point accuracy, (N,) float: 0/1, or the mean over ``passes`` draws for a random model."""
        with torch.inference_mode():
            hits = [torch.cat([model(b).argmax(1) for b in x_adv.split(batch_size)]) == y
                    for _ in range(passes if random else 1)]
        return torch.stack(hits).float().mean(0)

    def pgd(e, s, r=1, net=None):
        return acc(run_attack(net or target, x, y, lambda m, xb, yb: attacks.pgd(m, xb, yb, e, 2.5 * e / s, s, norm=norm,
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
        sweep = {e: (per_point[f"PGD-{steps[-1]}"] if e == eps else pgd(e, steps[-1])).mean().item() for e in eps_sweep}
        if random:
            for m in eot_samples[:-1]:
                per_point[f"PGD-{steps[-1]}, EOT {m}"] = acc(run_attack(
                    attacks.eot(model, m), x, y,
                    lambda mm, xb, yb: attacks.pgd(mm, xb, yb, eps, 2.5 * eps / steps[-1], steps[-1], norm=norm), batch_size))
            per_point[f"PGD-{steps[-1]}, EOT {eot_samples[-1]}"] = per_point[f"PGD-{steps[-1]}"]
    a = {k: v.mean().item() for k, v in per_point.items()}

    white_label = f"PGD-{steps[-1]} x {restarts} restarts"
    white = min(a[white_label], a[f"PGD-{steps[-1]}"])
    single = "FGSM" if norm == "inf" else "FGM (L2, 1 step)"
    sq = f"Square ({square_queries} queries)"
    table = sanity_checks(sweep, n, (single, a[single]), (f"PGD-{steps[-1]}", white), white_box=("white-box PGD", white),
                          black_box=(sq, a[sq]),
                          transfer=("transfer from the undefended twin", a["transfer from the undefended twin"]) if twin is not None else None,
                          zero_tol=zero_tol, z=z)
    for _, r in table.iterrows():
        rows.append(_row(r["check"], bool(r["passed"]), r["evidence"]))

    def converged(label: str, lo: str, hi: str) -> dict:
        d = a[lo] - a[hi]
        return _row(label, d <= z * binomial_se(a[lo], a[hi], n), f"{lo}: {a[lo]:.3f}, {hi}: {a[hi]:.3f}")

    if len(steps) > 1:
        rows.append(converged("PGD converged in steps", f"PGD-{steps[-2]}", f"PGD-{steps[-1]}"))
    if restarts > 1:
        rows.append(converged("PGD converged in restarts", f"PGD-{steps[-1]}", white_label))
    if random and len(eot_samples) > 1:
        rows.append(converged("EOT converged in samples", f"PGD-{steps[-1]}, EOT {eot_samples[-2]}",
                              f"PGD-{steps[-1]}, EOT {eot_samples[-1]}"))

    table = pd.DataFrame(rows, columns=COLUMNS)
    worst = torch.stack(list(per_point.values())).amin(0).mean().item() if not random else min(a.values())
    failed = table.loc[table.status == "fail", "check"].tolist()
    if failed:
        verdict = (f"gradient masking or an unconverged evaluation suspected at {_eps_text(eps, norm)}: "
                   f"{len(failed)} check(s) failed ({'; '.join(failed)}); robust accuracy <= {worst:.3f}, not a trusted bound")
    else:
        verdict = (f"no sign of gradient masking at {_eps_text(eps, norm)}: all {int((table.status == 'pass').sum())} checks "
                   f"passed; robust accuracy <= {worst:.3f} (worst case over {len(per_point)} attacks)")
    return Audit(table, verdict, not failed, random, worst, a)


def _eps_text(eps: float, norm: str) -> str:
    return f"{'Linf' if norm == 'inf' else 'L2'} eps {eps:g}"
