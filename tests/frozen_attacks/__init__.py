"""A frozen copy of robust_utils.attacks before the speed work of issue 21 (commit d08af17).

tests/test_speed_equivalence.py runs these and the current attacks on fixed inputs and compares
the results. Never edit these files: they are the reference the faster code is held to.
"""

from .cw import cw_l2
from .deepfool import deepfool
from .eot import EOT, eot
from .fgsm import fgsm, fgsm_smallest_eps, foolbox_eps_grid
from .high_confidence import closest_target, high_confidence, high_confidence_unrolled
from .local_search import local_search
from .pgd import pgd

__all__ = ["cw_l2", "deepfool", "EOT", "eot", "fgsm", "fgsm_smallest_eps", "foolbox_eps_grid", "closest_target",
           "high_confidence", "high_confidence_unrolled", "local_search", "pgd"]
