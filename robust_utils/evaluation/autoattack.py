"""AutoAttack (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML), through the ``pyautoattack`` package.

The reference implementation (github.com/fra31/auto-attack) is not on the package registry;
``pyautoattack`` 0.2.0 is a packaging of it. We use it because it is faithful to the reference's
published settings, which ``PUBLISHED_SETTINGS`` lists and ``check_faithful`` verifies on the
objects it builds (tests/test_autoattack.py runs it, so an upgrade that changes them fails CI):

    standard (deterministic models): APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations,
        9 target classes), FAB-T (100 iterations, 9 target classes), Square (5,000 queries, p_init 0.8);
    rand (randomised models): APGD-CE and APGD-DLR, 100 iterations, 1 restart, each gradient the
        mean of 20 EOT samples;
    APGD: step size 2 eps, momentum 0.75, checkpoints at 22% of the iterations, shrinking by 3%
        down to 6%, rho 0.75 (Croce and Hein 2020, Algorithm 1 and section 3.1).

The attacks are run in AutoAttack's order, each on the points still classified correctly
("worst case over the ensemble"); the robust accuracy after each attack is reported.
torchattacks' ``AutoAttack`` defaults to 10 steps and is not this.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.checks import check_eps, check_images, check_labels, check_positive_int

VERSIONS = ("standard", "rand")
NORMS = {"inf": "Linf", "2": "L2"}

PUBLISHED_SETTINGS = {
    "standard": {"attacks": ["apgd-ce", "apgd-t", "fab-t", "square"], "apgd.n_iter": 100, "apgd.n_restarts": 1,
                 "apgd.eot_iter": 1, "apgd.rho": 0.75, "apgd_targeted.n_iter": 100, "apgd_targeted.n_restarts": 1,
                 "apgd_targeted.n_target_classes": 9, "fab.n_iter": 100, "fab.n_restarts": 1,
                 "fab.n_target_classes": 9, "square.n_queries": 5000, "square.p_init": 0.8},
    "rand": {"attacks": ["apgd-ce", "apgd-dlr"], "apgd.n_iter": 100, "apgd.n_restarts": 1, "apgd.eot_iter": 20,
             "apgd.rho": 0.75},
}


@dataclass(frozen=True)
class AutoAttackResult:
    """What ``autoattack`` returns.

    Attributes:
        x_adv: (N, C, H, W) float32 in [0, 1]; the adversarial image where an attack succeeded,
            x elsewhere; ||x_adv - x||_norm <= eps.
        clean_accuracy: accuracy on x, in [0, 1].
        robust_accuracy: accuracy after the whole ensemble.
        by_attack: {attack name: robust accuracy after it}, cumulative, in the order run (for a
            random model, within AutoAttack's own draws of the randomness).
        warnings: AutoAttack's own checks that fired (a random forward pass, outputs that look
            like probabilities, zero gradients, Square stronger than the white-box attacks).
        version, norm ("inf" or "2"), eps (pixel units of [0, 1]), seed: the run's settings.
    """

    x_adv: torch.Tensor = field(repr=False)
    clean_accuracy: float
    robust_accuracy: float
    by_attack: dict
    warnings: tuple
    version: str
    norm: str
    eps: float
    seed: int


class _Collect(logging.Handler):
    """Collects AutoAttack's log: its checks' warnings, and the points each attack fooled."""

    _FOOLED = re.compile(r"^(\S+) - \d+/\d+ - (\d+) out of \d+ successfully perturbed")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.warnings: list[str] = []
        self.fooled: dict[str, int] = {}
        self.initial: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        if record.levelno >= logging.WARNING:
            self.warnings.append(text)
        elif text.startswith("initial accuracy: "):
            self.initial = float(text.split(": ")[1].rstrip("%")) / 100
        elif m := self._FOOLED.match(text):
            self.fooled[m[1]] = self.fooled.get(m[1], 0) + int(m[2])


def build(model: nn.Module, eps: float, norm: str = "inf", version: str = "standard", seed: int = 0):
    """A ``pyautoattack.AutoAttack`` at the reference settings of ``version``.

    Args:
        model: maps x (N, C, H, W) in [0, 1] to logits (N, K); its train/eval mode is left as is.
        eps: budget in pixel units of [0, 1] in ``norm`` ("inf" or "2").
        version: "standard" (deterministic models) or "rand" (random forward passes).
        seed: seeds every attack of the ensemble.
    Raises:
        ValueError: unknown version or norm, a bad eps.
    """
    from pyautoattack import AutoAttack

    if version not in VERSIONS:
        raise ValueError(f"unknown AutoAttack version {version!r}; valid: {', '.join(VERSIONS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: 'inf', '2'")
    eps = check_eps(eps, norm)
    device = next(model.parameters()).device
    aa = AutoAttack(model, eps=eps, norm=NORMS[norm], version=version, seed=int(seed), device=device)
    aa.verbose = False
    return aa


def check_faithful(aa, version: str) -> list[str]:
    """The differences between a built AutoAttack and ``PUBLISHED_SETTINGS[version]`` (empty: faithful)."""
    problems = []
    for name, want in PUBLISHED_SETTINGS[version].items():
        if name == "attacks":
            got = list(aa.attacks_to_run)
        else:
            obj, attr = name.split(".")
            got = getattr(getattr(aa, obj), {"rho": "thr_decr"}.get(attr, attr))
        if got != want:
            problems.append(f"{name}: {got!r}, the reference's is {want!r}")
    return problems


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf",
               version: str = "standard", seed: int = 0, batch_size: int = 500) -> AutoAttackResult:
    """Robust accuracy under AutoAttack (Croce and Hein 2020) at the reference settings.

    Use ``version="rand"`` for a model whose forward pass is random (AutoAttack's own rule); the
    returned accuracies are then one draw of that randomness (classify ``x_adv`` again with
    ``metrics.stochastic_accuracy`` for the mean over passes). The global RNG is left as it was.

    Args:
        model: maps x -> logits (N, K), K >= 4 for the targeted attacks; train/eval mode untouched.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        eps: budget in pixel units of [0, 1], measured in ``norm`` ("inf" or "2").
        version: "standard" or "rand".   seed: the attacks' seed.   batch_size: points per attack batch.
    Returns:
        AutoAttackResult.
    Raises:
        ValueError: bad x, y, eps, norm, version or batch_size, or a pyautoattack whose settings
            differ from the reference's (the message lists them).
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    aa = build(model, eps, norm, version, seed)
    problems = check_faithful(aa, version)
    if problems:
        raise ValueError("pyautoattack does not match the reference AutoAttack: " + "; ".join(problems))
    logger = logging.getLogger("auto-attack")
    collect = _Collect()
    old = logger.level, logger.propagate
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    aa.verbose = True  # the per-batch "k out of m successfully perturbed" lines give the per-attack counts
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(old[0])
        logger.propagate = old[1]
    with torch.inference_mode():
        clean = (torch.cat([model(xb).argmax(1) for xb in x.split(batch_size)]) == y).float().mean().item()
        robust = (torch.cat([model(xb).argmax(1) for xb in x_adv.split(batch_size)]) == y).float().mean().item()
    # AutoAttack's own initial accuracy (for a random model: its draw of the randomness), minus the
    # points each attack fooled, in order
    left = round((clean if collect.initial is None else collect.initial) * len(y))
    by_attack = {}
    for name in aa.attacks_to_run:
        left -= collect.fooled.get(name, 0)
        by_attack[name] = left / len(y)
    return AutoAttackResult(x_adv.detach(), clean, robust, by_attack, tuple(collect.warnings), version, norm,
                            float(eps), int(seed))


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", queries: int = 5000,
           seed: int = 0) -> torch.Tensor:
    """Square Attack (Andriushchenko et al. 2020), score-based black-box: AutoAttack's member, alone,
    at its settings (p_init 0.8, one restart). Uses the model's outputs only, never its gradients.

    Args:
        model: maps x -> logits (N, K).   x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        eps: budget in pixel units of [0, 1] in ``norm`` ("inf" or "2").   queries: per point.
    Returns:
        (N, C, H, W) float32 in [0, 1] within eps of x. The global RNG is left as it was.
    Raises:
        ValueError: bad x, y, eps, norm or queries.
    """
    from pyautoattack.square import SquareAttack

    check_images(x)
    check_labels(y, x.shape[0])
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: 'inf', '2'")
    eps = check_eps(eps, norm)
    check_positive_int(queries, "queries")
    attack = SquareAttack(model, p_init=0.8, n_queries=queries, eps=eps, norm=NORMS[norm], n_restarts=1, seed=int(seed),
                          verbose=False, device=x.device, resc_schedule=False)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        return attack.perturb(x, y).detach()
