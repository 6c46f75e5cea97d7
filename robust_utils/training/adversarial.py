"""Adversarial training: with FGSM (Goodfellow et al. 2015; Matyasko & Chau 2018, eq. 2), with PGD
(Madry et al. 2018, eq. 2.1; PNI's options, Rakin et al. 2019, eq. 10), and on a random mixture of
attacks (Kaspar, Hicheur & Bourdrez 2024, section 3.1). The contract of every objective is in
``training.objective``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..attacks.cw import cw_l2
from ..attacks.fgsm import fgsm
from ..attacks.pgd import pgd
from ..core.checks import check_positive_int
from ..core.losses import cross_entropy
from .objective import ATTACK_MODES, ObjectiveBase, check_hyper, check_objective_inputs, model_mode


# ----------------------------------------------------------------------------------------------
# Adversarial training with FGSM


class FGSMAdversarialTraining(ObjectiveBase):
    """Adversarial training with FGSM (Goodfellow et al. 2015, eq. 6; Matyasko & Chau 2018, eq. 2).

        loss = CE(f(x), y) + weight * CE(f(x + r), y),   r = eps * sign(grad_x CE(f(x), y)),

    r is computed with the current parameters by ``attacks.fgsm`` and is *detached* (no gradient
    flows through r, as in Goodfellow et al.); x + r is clipped to the pixel box [0, 1]. Costs
    three forward passes (the clean one, FGSM's, the adversarial one) and one input gradient.

    Args:
        eps: Linf budget in pixel units of [0, 1], 0 < eps <= 1.   weight: >= 0, finite.
    Call:
        obj(model, x, y): x (N, C, H, W) float in [0, 1], y (N,) int64 -> 0-dim float loss, nats.
    Raises:
        ValueError: bad eps or weight (in ``__init__``); bad x or y (at the call).
        RuntimeError: called inside ``torch.inference_mode``.
    """

    name = "at"
    _params = ("eps", "weight")

    def __init__(self, eps: float = 0.1, weight: float = 1.0) -> None:
        self.eps = check_hyper(eps, "eps", positive=True)
        if self.eps > 1:
            raise ValueError(f"eps is an Linf budget in pixel units of [0, 1] and must be <= 1, got {self.eps}")
        self.weight = check_hyper(weight, "weight", positive=False)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        loss = cross_entropy(model(x), y)
        if self.weight == 0:
            return loss
        x_adv = fgsm(model, x, y, self.eps)  # detached, in [0, 1]
        return loss + self.weight * cross_entropy(model(x_adv), y)


class PGDAdversarialTraining(ObjectiveBase):
    """PGD adversarial training (Madry et al. 2018, eq. 2.1), with the options of PNI's training
    (Rakin et al. 2019, eq. 10) and of the Stochastic-LWTA code (the Stochastic-LWTA and PNI authors' code, github.com/konpanousis/Adversarial-LWTA-AutoAttack and github.com/elliothe/CVPR_2019_PNI).

        loss = clean_weight * CE(f(x), y) + (1 - clean_weight) * CE(f(x + r), y)

    with r = ``attacks.pgd`` (random start, ``steps`` steps of size ``alpha``, projection onto the
    eps-ball and the box [0, 1]) computed with the current parameters and detached (Danskin's
    theorem: the gradient at the inner maximiser). clean_weight = 0 is Madry's loss (the
    default); 0.5 is PNI's eq. 10 (w_c = w_a = 0.5).

    Options:
        label: "true" attacks the label y (Madry); "predicted" attacks the model's own clean
            prediction, as PNI's code does against label leaking (Kurakin et al. 2017).
        attack_mode: "train" generates r with the model in the mode the caller set (train mode:
            batch-norm statistics move and stochastic layers use their training behaviour at
            every attack step); "eval" generates it in eval mode (the Stochastic-LWTA and PNI
            code: LWTA at its test temperature, batch norm frozen), the loss then in train mode.
        delay: epochs of clean training (loss = CE(f(x), y)) before the adversarial loss starts
            (PNI's ``--epoch_delay 5``); counted by ``end_epoch``, which ``training.fit`` calls.

    Args:
        eps: budget in pixel units of [0, 1] (Linf: <= 1).   alpha: step size, > 0.
        steps: PGD steps, >= 1.   norm: "inf" or "2".   clean_weight: in [0, 1].
        label: "true" or "predicted".   attack_mode: "train" or "eval".   delay: int >= 0.
    Call:
        obj(model, x, y): x (N, C, H, W) float in [0, 1], y (N,) int64 -> 0-dim float loss, nats.
        The random start uses torch's global RNG (seeded by ``training.fit``).
    Raises:
        ValueError: bad hyper-parameters (in ``__init__``); bad x or y (at the call).
        RuntimeError: called inside ``torch.inference_mode``.
    """

    name = "pgd_at"
    _params = ("eps", "alpha", "steps", "norm")
    _options = {"clean_weight": 0.0, "label": "true", "attack_mode": "train", "delay": 0}

    def __init__(self, eps: float = 0.3, alpha: float = 0.01, steps: int = 40, norm: str = "inf",
                 clean_weight: float = 0.0, label: str = "true", attack_mode: str = "train", delay: int = 0) -> None:
        if norm not in ("inf", "2"):
            raise ValueError(f"unknown norm {norm!r}; valid: 'inf', '2'")
        self.eps = check_hyper(eps, "eps", positive=True)
        if norm == "inf" and self.eps > 1:
            raise ValueError(f"eps is an Linf budget in pixel units of [0, 1] and must be <= 1, got {self.eps}")
        self.alpha = check_hyper(alpha, "alpha", positive=True)
        self.steps = check_positive_int(steps, "steps")
        self.norm = norm
        self.clean_weight = check_hyper(clean_weight, "clean_weight", positive=False)
        if self.clean_weight > 1:
            raise ValueError(f"clean_weight must lie in [0, 1], got {clean_weight!r}")
        if label not in ("true", "predicted"):
            raise ValueError(f"unknown label {label!r}; valid: 'true', 'predicted'")
        if attack_mode not in ATTACK_MODES:
            raise ValueError(f"unknown attack_mode {attack_mode!r}; valid: {', '.join(ATTACK_MODES)}")
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise ValueError(f"delay must be an int >= 0, got {delay!r}")
        self.label, self.attack_mode, self.delay = label, attack_mode, delay
        self.epochs_done = 0

    def cache_key(self) -> dict:
        """The hyper-parameters; the options only where they differ from their defaults (older keys stay valid)."""
        key = super().cache_key()
        key.update({k: getattr(self, k) for k, v in self._options.items() if getattr(self, k) != v})
        return key

    def _reset(self) -> None:
        self.epochs_done = 0

    def state_dict(self) -> dict:
        """The epochs done (for ``delay``), for an exact resume of ``fit``."""
        return {"epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        self.epochs_done = int(state["epochs_done"])

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Count finished epochs (for ``delay``); no metrics."""
        self.epochs_done = epoch
        return {}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        if self.epochs_done < self.delay:
            return cross_entropy(model(x), y)
        clean_logits = model(x) if (self.clean_weight > 0 or self.label == "predicted") else None
        target = clean_logits.argmax(1).detach() if self.label == "predicted" else y
        with model_mode(model, self.attack_mode):
            x_adv = pgd(model, x, target, self.eps, self.alpha, self.steps, norm=self.norm)
        loss = cross_entropy(model(x_adv), y)
        if self.clean_weight > 0:
            loss = self.clean_weight * cross_entropy(clean_logits, y) + (1 - self.clean_weight) * loss
        return loss

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, v in self._options.items() if getattr(self, k) != v)
        return super().__repr__()[:-1] + extra + ")"


# ----------------------------------------------------------------------------------------------
# The student report's adversarial training on a random mixture of attacks


class AttackMixtureTraining(ObjectiveBase):
    """Adversarial training on a random mixture of attacks (Kaspar, Hicheur & Bourdrez 2024,
    section 3.1): for each mini-batch a number k is drawn uniformly from {0, ..., 7}; k < 4 (p = 4/8)
    keeps the clean batch, otherwise the whole batch is replaced by one attack drawn uniformly
    from ``attacks``; loss = CE(f(x_k), y) on that one batch.

    Members of the mixture (each batch gets exactly one):
        "pgd":   ``attacks.pgd``, Linf ``eps``, step ``alpha``, ``pgd_steps`` steps, random start.
        "fgsm":  ``attacks.fgsm``, Linf ``eps``.
        "cw":    ``attacks.cw_l2`` with ``cw_kwargs`` (default: c = 1, kappa = 0, 10 Adam steps,
                 one value of c) -- an unbounded minimal-L2 attack.
        "noise": Gaussian noise x + N(0, noise_std^2), clipped to [0, 1]. This is our reading of
                 the report's "Smoothing" rows: Gaussian-noise augmentation (the training
                 distribution of randomized smoothing, Cohen et al. 2019), with the report's
                 "addition of random noise" as the mixture member. The report gives no noise level.

    With p_clean = 1/2 and a single member, that member is used on half of the batches. The
    attacks are generated in eval mode (``attack_mode="eval"``, batch norm frozen) or in the
    mode the caller set ("train"); the loss is computed in the caller's mode. ``end_epoch``
    returns the fraction of batches of the epoch that got each choice ("mix_clean",
    "mix_pgd", ...), so the history shows the draw.

    Args:
        attacks: a non-empty subset of ("pgd", "fgsm", "cw", "noise"), in any order.
        eps: Linf budget of PGD and FGSM, pixel units of [0, 1], in (0, 1].   alpha: PGD step, > 0.
        pgd_steps: >= 1.   noise_std: > 0, pixel units.   cw_kwargs: arguments of ``attacks.cw_l2``.
        attack_mode: "eval" or "train".
    Call:
        obj(model, x, y): x (N, C, H, W) float in [0, 1], y (N,) int64 -> 0-dim loss, nats. The
        draw uses torch's global RNG (seeded by ``training.fit``).
    Raises:
        ValueError: an unknown or repeated attack, bad numbers or CW arguments (in ``__init__``).
    """

    name = "attack_mixture"
    _params = ("attacks", "eps", "alpha", "pgd_steps", "noise_std", "cw_kwargs", "attack_mode")
    MEMBERS = ("pgd", "fgsm", "cw", "noise")

    def __init__(self, attacks: tuple[str, ...] | list[str] = MEMBERS, eps: float = 8 / 255, alpha: float = 0.007,
                 pgd_steps: int = 5, noise_std: float = 0.1, cw_kwargs: dict | None = None,
                 attack_mode: str = "eval") -> None:
        attacks = list(attacks)
        bad = [a for a in attacks if a not in self.MEMBERS]
        if not attacks or bad or len(set(attacks)) != len(attacks):
            raise ValueError(f"attacks must be distinct members of {self.MEMBERS}, got {attacks!r}")
        self.attacks = attacks
        self.eps = check_hyper(eps, "eps", positive=True)
        if self.eps > 1:
            raise ValueError(f"eps is an Linf budget in pixel units of [0, 1] and must be <= 1, got {self.eps}")
        self.alpha = check_hyper(alpha, "alpha", positive=True)
        self.pgd_steps = check_positive_int(pgd_steps, "pgd_steps")
        self.noise_std = check_hyper(noise_std, "noise_std", positive=True)
        self.cw_kwargs = {"c": 1.0, "kappa": 0.0, "steps": 10, "binary_search_steps": 1, **(cw_kwargs or {})}
        allowed = set(inspect.signature(cw_l2).parameters) - {"model", "x", "y"}
        if set(self.cw_kwargs) - allowed:
            raise ValueError(f"unknown cw_kwargs {sorted(set(self.cw_kwargs) - allowed)}; valid: {sorted(allowed)}")
        if attack_mode not in ATTACK_MODES:
            raise ValueError(f"unknown attack_mode {attack_mode!r}; valid: {', '.join(ATTACK_MODES)}")
        self.attack_mode = attack_mode
        self._counts = {c: 0 for c in ("clean", *self.attacks)}

    def draw(self) -> str:
        """One draw of the mixture: "clean" (k < 4 of k ~ U{0..7}) or one of ``attacks``, uniformly."""
        k = int(torch.randint(8, ()))
        if k < 4:
            return "clean"
        return self.attacks[int(torch.randint(len(self.attacks), ()))]

    def perturb(self, choice: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch for ``choice``: x itself, or its PGD / FGSM / CW / noise version (detached, in [0, 1])."""
        if choice == "clean":
            return x
        if choice == "noise":
            return (x + self.noise_std * torch.randn_like(x)).clamp_(0, 1)
        with model_mode(model, self.attack_mode):
            if choice == "pgd":
                return pgd(model, x, y, self.eps, self.alpha, self.pgd_steps)
            if choice == "fgsm":
                return fgsm(model, x, y, self.eps)
            return cw_l2(model, x, y, **self.cw_kwargs)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_objective_inputs(x, y)
        choice = self.draw()
        self._counts[choice] += 1
        return cross_entropy(model(self.perturb(choice, model, x, y)), y)

    def _reset(self) -> None:
        self._counts = dict.fromkeys(self._counts, 0)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Fractions of this epoch's batches per choice; resets the counts."""
        total = max(sum(self._counts.values()), 1)
        out = {f"mix_{c}": n / total for c, n in self._counts.items()}
        self._counts = dict.fromkeys(self._counts, 0)
        return out


__all__ = ["FGSMAdversarialTraining", "PGDAdversarialTraining", "AttackMixtureTraining"]
