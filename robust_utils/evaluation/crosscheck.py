"""Cross-check of our attacks against an independent, well-kept implementation: Foolbox 3
(Rauber et al. 2017/2020, ``foolbox`` 3.3.4).

Each of our attacks (FGSM, PGD in Linf and L2, CW-L2, DeepFool) and Foolbox's attack of the same
name run with the same settings on the same model and inputs, and the robust accuracies are
compared. Minimal-perturbation attacks (CW-L2, DeepFool) are turned into budgeted ones the same
way for both (``robustness.within_budget``: a point counts as robust when the attack needed more
than eps). Foolbox leaves the model's train/eval mode as it is (torchattacks would switch it to
eval, which silently removes the randomness of a stochastic model), so the comparison is valid
for deterministic models; for random ones both sides see their own draws.

Agreement: |ours - foolbox| <= tolerance, where tolerance = abs_tol + z * sqrt(2 p (1 - p) / n)
(p the mean of the two accuracies, n the number of points; PGD's random starts differ between the
two, so the numbers are two samples of the same quantity). "Ours weaker" (ours - foolbox >
tolerance) is what a test must never see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from .. import attacks
from ..core.checks import check_eps, check_images, check_labels
from .robustness import run_attack, within_budget


@dataclass(frozen=True)
class CrossCheck:
    """One attack of the cross-check: its name, norm ("inf" or "2"), budget eps (pixel units of
    [0, 1]) and the settings both implementations use."""

    attack: str
    norm: str
    eps: float
    steps: int = 0
    rel_stepsize: float = 0.0


#: Foolbox 3's defaults for each attack, which ours are run with too.
DEFAULT_CHECKS = (
    CrossCheck("FGSM", "inf", 0.1),
    CrossCheck("PGD", "inf", 0.1, steps=40, rel_stepsize=0.01 / 0.3),
    CrossCheck("PGD", "2", 1.5, steps=50, rel_stepsize=0.025),
    CrossCheck("CW-L2", "2", 1.5, steps=100),
    CrossCheck("DeepFool", "2", 1.5, steps=50),
)
CW = {"c": 1.0, "kappa": 0.0, "lr": 0.05, "binary_search_steps": 5}  # Foolbox: initial_const, confidence, stepsize
DEEPFOOL_OVERSHOOT = 0.02


def _ours(check: CrossCheck):
    if check.attack == "FGSM":
        return lambda m, x, y: attacks.fgsm(m, x, y, check.eps)
    if check.attack == "PGD":
        return lambda m, x, y: attacks.pgd(m, x, y, check.eps, check.rel_stepsize * check.eps, check.steps,
                                           norm=check.norm)
    if check.attack == "CW-L2":
        return lambda m, x, y: attacks.cw_l2(m, x, y, steps=check.steps, **CW)
    return lambda m, x, y: attacks.deepfool(m, x, y, steps=check.steps, overshoot=DEEPFOOL_OVERSHOOT)


def _foolbox(check: CrossCheck):
    import foolbox as fb

    if check.attack == "FGSM":
        return fb.attacks.FGSM()
    if check.attack == "PGD":
        cls = fb.attacks.LinfPGD if check.norm == "inf" else fb.attacks.L2PGD
        return cls(rel_stepsize=check.rel_stepsize, steps=check.steps, random_start=True)
    if check.attack == "CW-L2":
        return fb.attacks.L2CarliniWagnerAttack(binary_search_steps=CW["binary_search_steps"], steps=check.steps,
                                                stepsize=CW["lr"], confidence=CW["kappa"], initial_const=CW["c"],
                                                abort_early=True)
    return fb.attacks.L2DeepFoolAttack(steps=check.steps, candidates=10, overshoot=DEEPFOOL_OVERSHOOT, loss="logits")


def foolbox_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, check: CrossCheck,
                        batch_size: int = 200) -> torch.Tensor:
    """Foolbox's adversarial images for ``check``, (N, C, H, W) float32 in [0, 1].

    Budgeted attacks (FGSM, PGD) return images within eps; minimal-perturbation attacks (CW-L2,
    DeepFool) return their unbounded result (apply ``robustness.within_budget``).
    Raises:
        ValueError: bad x, y or check.
    """
    import foolbox as fb

    _validate(check)
    check_images(x)
    check_labels(y, x.shape[0])
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
    attack = _foolbox(check)
    eps = check.eps if check.attack in ("FGSM", "PGD") else None
    out = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        _, clipped, _ = attack(fmodel, xb, yb, epsilons=eps)
        out.append(clipped.detach())
    return torch.cat(out)


def _validate(check: CrossCheck) -> None:
    if check.attack not in ("FGSM", "PGD", "CW-L2", "DeepFool"):
        raise ValueError(f"unknown attack {check.attack!r}; valid: FGSM, PGD, CW-L2, DeepFool")
    check_eps(check.eps, check.norm)
    if check.attack == "FGSM" and check.norm != "inf" or check.attack in ("CW-L2", "DeepFool") and check.norm != "2":
        raise ValueError(f"{check.attack} is an {'Linf' if check.attack == 'FGSM' else 'L2'} attack, got norm {check.norm!r}")


def tolerance(p: float, n: int, abs_tol: float = 0.02, z: float = 2.0) -> float:
    """abs_tol + z * sqrt(2 p (1 - p) / n): the allowed |difference| of two accuracies near p on n points."""
    return abs_tol + z * math.sqrt(2 * max(p * (1 - p), 0.0) / n)


def cross_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, checks=DEFAULT_CHECKS, abs_tol: float = 0.02,
                z: float = 2.0, seed: int = 0, batch_size: int = 200) -> pd.DataFrame:
    """Robust accuracy under our attacks and Foolbox's, with the same settings, on the same points.

    Args:
        model: maps x -> logits (N, K); train/eval mode untouched (use a deterministic model).
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        checks: the ``CrossCheck``s to run.   abs_tol, z: the tolerance (module docstring).
        seed: seeds the random starts of both sides (the global RNG is restored afterwards).
    Returns:
        DataFrame, one row per check: attack, norm, eps, ours, foolbox, difference (ours - foolbox;
        > 0 means ours is weaker), tolerance, agree (|difference| <= tolerance), ours_weaker.
    Raises:
        ValueError: bad x, y or a check (before any attack runs).
    """
    check_images(x)
    check_labels(y, x.shape[0])
    for c in checks:
        _validate(c)
    rows = []
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for c in checks:
            ours = run_attack(model, x, y, _ours(c), batch_size)
            theirs = foolbox_adversarial(model, x, y, c, batch_size)
            if c.attack in ("CW-L2", "DeepFool"):
                ours, theirs = within_budget(x, ours, c.eps, c.norm), within_budget(x, theirs, c.eps, c.norm)
            with torch.inference_mode():
                a = (model(ours).argmax(1) == y).float().mean().item()
                b = (model(theirs).argmax(1) == y).float().mean().item()
            tol = tolerance((a + b) / 2, len(y), abs_tol, z)
            rows.append({"attack": c.attack, "norm": "Linf" if c.norm == "inf" else "L2", "eps": c.eps, "ours": a,
                         "foolbox": b, "difference": a - b, "tolerance": tol, "agree": abs(a - b) <= tol,
                         "ours_weaker": a - b > tol})
    return pd.DataFrame(rows)
