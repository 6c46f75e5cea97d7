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

Per-example accounting (``AutoAttackResult.correct``):

    standard (deterministic models): a point is robust iff the model classifies AutoAttack's x_adv
        correctly. This is exact: AutoAttack runs every member on every point still correct and
        keeps the image of the member that fooled it, so x_adv is correct iff every member failed,
        and a deterministic model gives the same answer at every pass.
    rand (random models): pyautoattack returns the *clean* image for every point it judged robust
        on its own draw of the randomness (and for points it never attacked), so re-classifying its
        x_adv with fresh passes overstates robustness. Each member (APGD-CE, APGD-DLR, 20 EOT
        samples per gradient) is therefore run again on *every* point, through the same
        ``APGDAttack`` object AutoAttack built (``check_faithful`` settings), and its final iterate
        is re-classified with ``passes`` fresh forward passes: the last iterate that fooled the
        attack's own draw where there is one (what AutoAttack itself would keep), else the iterate
        of highest loss (APGD's x_max, Croce & Hein 2020, Algorithm 1). The choice uses the
        attack's own information only, never the measuring passes (a minimum over candidates
        measured on the same passes would bias the number down). A point's correctness is the
        minimum over the members of its probability of being correct. AutoAttack's own count is
        kept beside it (``own_accuracy``, ``by_attack``): its rule (one initial draw, then a point
        falls as soon as one member fools it on the member's own draw) applied to the same runs,
        so the members run once (``own_count_from_runs``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.checks import check_eps, check_images, check_labels, check_positive_int
from .worst_case import WorstCase, correct_probability

VERSIONS = ("standard", "rand")
LOSSES = {"apgd-ce": "ce", "apgd-dlr": "dlr"}  # the rand version's members and their APGD losses
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
        x_adv: (N, C, H, W) float32 in [0, 1], ||x_adv - x||_norm <= eps. Standard: AutoAttack's output,
            the adversarial image where an attack succeeded, x elsewhere. Rand: per point, the final
            iterate of the member that left it least likely to be classified correctly.
        clean_accuracy: accuracy on x, in [0, 1] (random model: mean over ``passes`` fresh passes).
        robust_accuracy: mean of ``correct``: the per-example worst case (module docstring).
        by_attack: {attack name: robust accuracy after it}, cumulative, in the order run, as
            AutoAttack counts it (for a random model, on its own draws; empty without ``own_count``).
        warnings: AutoAttack's own checks that fired (a random forward pass, outputs that look
            like probabilities, zero gradients, Square stronger than the white-box attacks; the
            standard version only: the rand version runs its members directly).
        version, norm ("inf" or "2"), eps (pixel units of [0, 1]), seed: the run's settings.
        correct: (N,) float32 in [0, 1], per point: correct under every member (standard: 0/1), or
            the minimum over the members of the probability of being correct (rand).
        members: {member: (N,) float32} per-point probabilities for the rand version; {} for standard.
        own_accuracy: AutoAttack's own robust accuracy (its count; None when not run).
        passes: fresh forward passes per re-classified image (1 for standard).
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
    correct: torch.Tensor = field(default=None, repr=False)
    members: dict = field(default_factory=dict, repr=False)
    own_accuracy: float | None = None
    passes: int = 1

    def add_to(self, suite: WorstCase, prefix: str = "AA") -> None:
        """Add this run to a ``WorstCase`` at its budget: each member of the rand version ("AA
        apgd-ce", "AA apgd-dlr") with AutoAttack's own count beside the last, or the standard
        version as one attack ("AA standard"), whose per-point result is exact."""
        if self.members:
            for name, c in self.members.items():
                suite.add(f"{prefix} {name}", c)
            if self.own_accuracy is not None:
                suite.add_own_count(f"{prefix} {list(self.members)[-1]}", self.own_accuracy)
        else:
            suite.add(f"{prefix} {self.version}", self.correct)


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


class _Capture:
    """Route AutoAttack's logger into a ``_Collect`` for the duration of a ``with`` block."""

    def __enter__(self) -> _Collect:
        self.logger, self.collect = logging.getLogger("auto-attack"), _Collect()
        self.old = self.logger.level, self.logger.propagate
        self.logger.addHandler(self.collect)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        return self.collect

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.collect)
        self.logger.setLevel(self.old[0])
        self.logger.propagate = self.old[1]


def final_iterates(aa, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each member of a rand-version AutoAttack run on every point.

    Through the ``APGDAttack`` that ``aa`` built (its settings: 100 iterations, 20 EOT samples per
    gradient, AutoAttack's seed per attack, seeded as APGD's ``perturb`` seeds itself): per point
    the last iterate that fooled the attack's own draw where one did, else the iterate of highest
    loss (x_max). The caller's RNG state is not restored here (``autoattack`` forks it).

    Returns:
        ({member: (N, C, H, W) final iterate}, {member: (N,) bool, fooled on the attack's own draw}).
    """
    iterates, fooled = {}, {}
    for name in aa.attacks_to_run:
        aa.apgd.loss = LOSSES[name]
        aa.apgd.seed = aa.get_seed()
        aa.apgd.init_hyperparam(x)
        torch.random.manual_seed(aa.apgd.seed)
        if x.device.type == "cuda":
            torch.cuda.random.manual_seed(aa.apgd.seed)
        chosen, hit = [], []
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            x_max, still, _, x_hit = aa.apgd.attack_single_run(xb.detach().clone().float(), yb)
            hit.append((still == 0).detach().flatten().cpu())
            chosen.append(torch.where((still == 0).view(-1, *([1] * (xb.dim() - 1))), x_hit, x_max).detach())
        iterates[name], fooled[name] = torch.cat(chosen), torch.cat(hit)
    return iterates, fooled


def own_count_from_runs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fooled: dict[str, torch.Tensor],
              batch_size: int = 500) -> dict[str, float]:
    """AutoAttack's own count for a random model, from the members' runs on every point: a point
    stays robust only if it was classified correctly on one initial draw (AutoAttack attacks only
    those) and no member fooled it on the member's own draw. Returns the cumulative robust accuracy
    after each member, in order (AutoAttack's ``by_attack``): the count pyautoattack's sequential
    run would report for the same draws, without running the members twice."""
    left = correct_probability(model, x, y, 1, batch_size).bool()
    out = {}
    for name, f in fooled.items():
        left = left & ~f.to(left.device)
        out[name] = float(left.float().mean())
    return out


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf",
               version: str = "standard", seed: int = 0, batch_size: int = 500, passes: int = 10,
               own_count: bool = True) -> AutoAttackResult:
    """Robust accuracy under AutoAttack (Croce and Hein 2020) at the reference settings, per example.

    Use ``version="rand"`` for a model whose forward pass is random (AutoAttack's own rule): the
    robust accuracy is then the per-example worst case over the members' final iterates,
    re-classified with ``passes`` fresh passes, and AutoAttack's own count is kept beside it (module
    docstring). The global RNG is left as it was.

    Args:
        model: maps x -> logits (N, K), K >= 4 for the targeted attacks; train/eval mode untouched.
        x: (N, C, H, W) float32 in [0, 1].   y: (N,) int64.
        eps: budget in pixel units of [0, 1], measured in ``norm`` ("inf" or "2").
        version: "standard" or "rand".   seed: the attacks' seed.   batch_size: points per attack batch.
        passes: fresh forward passes per re-classified image (rand only).
        own_count: rand only: also compute AutoAttack's own count (``own_count_from_runs``: its rule,
            one draw per check, applied to the same runs of the members; the standard version
            always counts through pyautoattack's own evaluation).
    Returns:
        AutoAttackResult.
    Raises:
        ValueError: bad x, y, eps, norm, version, batch_size or passes, or a pyautoattack whose
            settings differ from the reference's (the message lists them).
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(batch_size, "batch_size")
    check_positive_int(passes, "passes")
    aa = build(model, eps, norm, version, seed)
    problems = check_faithful(aa, version)
    if problems:
        raise ValueError("pyautoattack does not match the reference AutoAttack: " + "; ".join(problems))
    rand = version == "rand"
    x_adv, by_attack, iterates = x, {}, {}
    with _Capture() as collect, torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        if not rand:
            aa.verbose = True  # the per-batch "k out of m successfully perturbed" lines give the per-attack counts
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
            aa.verbose = False
        else:
            iterates, fooled = final_iterates(aa, x, y, batch_size)
            if own_count:
                by_attack = own_count_from_runs(model, x, y, fooled, batch_size)
    reps = passes if rand else 1
    clean = float(correct_probability(model, x, y, reps, batch_size).mean())
    members = {k: correct_probability(model, v, y, reps, batch_size) for k, v in iterates.items()}
    if rand:  # per point, the final iterate of the member that left it least likely correct
        stacked = torch.stack(list(members.values()))
        correct, worst = stacked.min(0)
        x_adv = torch.stack(list(iterates.values()))[worst.to(x.device), torch.arange(len(y), device=x.device)]
    else:
        correct = correct_probability(model, x_adv, y, 1, batch_size)
        # AutoAttack's own initial accuracy, minus the points each attack fooled, in order
        left = round((clean if collect.initial is None else collect.initial) * len(y))
        for name in aa.attacks_to_run:
            left -= collect.fooled.get(name, 0)
            by_attack[name] = left / len(y)
    own = by_attack[aa.attacks_to_run[-1]] if by_attack else None
    return AutoAttackResult(x_adv.detach(), clean, float(correct.mean()), by_attack, tuple(collect.warnings), version,
                            norm, float(eps), int(seed), correct, members, own, reps)


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
