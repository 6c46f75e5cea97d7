"""Adversarial attacks in pixel space [0, 1], one concept per module.

    fgsm      Fast gradient sign method (Goodfellow et al. 2015), Linf, one step; and
              fgsm_smallest_eps, Foolbox 1.x's search for the smallest eps that fools the model.
    pgd       Projected gradient descent (Madry et al. 2018) in Linf or L2, with random start and
              restarts; BIM (Kurakin et al. 2016) with ``random_start=False``.
    cw_l2     Carlini & Wagner 2017 L2 attack (untargeted), Adam in tanh space, binary search on c.
    deepfool  DeepFool (Moosavi-Dezfooli et al. 2016), multi-class L2 (their Algorithm 2).
    local_search  LocalSearch (Narodytska & Kasiviswanathan 2016), black-box, Foolbox's defaults
              (and its corrected selection rule; see the docstring).
    high_confidence  Matyasko & Chau 2018's high-confidence targeted L2 attack (eq. 7): the test-time
              loop, the differentiable unrolled form used in training, and DeepFool's
              closest-boundary target rule.
    eot       Expectation over Transformation: wrap a random model so that any attack above
              averages over M independent draws of its randomness (drawn in one vectorised call,
              ``torch.func.vmap(..., randomness="different")``, where ``vectorizable`` allows).

Common contract: the model maps x (N, C, H, W) in [0, 1] to logits (N, K); its train/eval mode
and its parameters' ``.grad`` are never touched; x and y are validated before any work; the whole
batch is attacked at once; x is never modified in place; the result is a new detached tensor in
[0, 1] with x's dtype and device. Attacks need gradients: call them outside
``torch.inference_mode``. The shared gradient helper is ``grad.input_gradient``; the shared input
check is ``grad.check_batch``.

Speed (issue 21): inputs are checked once per call, never per step (``validate=False`` skips the
value check, a host synchronisation on CUDA, for callers that checked their data once, e.g. an
objective inside ``fit``); no host synchronisation inside the fixed-shape step loops (PGD, CW
except its early-abort test every steps/10 iterations); the attacks that shrink their batch to
the still-active samples (DeepFool, eq. 7's loop, the FGSM search, LocalSearch) read its size
once per step. On CUDA, PGD's steps replay one captured CUDA graph (``core.runtime``).

    protocols  the two kinds of attack (fixed-budget ``attack(model, x, y, eps)`` and
               minimal-perturbation ``attack(model, x, y)``, Foolbox 3's split) and frozen
               configurations with a ``label``: FGSM, PGD, DeepFool, CWL2; ``attack_fn`` by name.
"""

from .cw import cw_l2
from .deepfool import deepfool
from .eot import EOT, eot, vectorizable
from .high_confidence import (closest_target, high_confidence, high_confidence_unrolled, straight_through_indicator)
from .fgsm import SmallestEps, fgsm, fgsm_smallest_eps, foolbox_eps_grid
from .local_search import local_search
from .pgd import pgd
from .protocols import CWL2, FGSM, PGD, DeepFool, FixedBudgetAttack, MinimalPerturbationAttack, attack_fn

__all__ = ["fgsm", "fgsm_smallest_eps", "foolbox_eps_grid", "SmallestEps", "pgd", "cw_l2", "deepfool",
           "local_search", "eot", "EOT", "vectorizable", "high_confidence", "high_confidence_unrolled", "closest_target",
           "straight_through_indicator", "FixedBudgetAttack", "MinimalPerturbationAttack", "FGSM", "PGD", "DeepFool",
           "CWL2", "attack_fn"]
