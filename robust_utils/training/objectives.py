"""The training objectives by name: the baselines of Matyasko & Chau (NeurIPS 2018, Table 1) and
those of notebook 03 (CIFAR-10).

    at              FGSMAdversarialTraining (Goodfellow et al. 2015; Matyasko & Chau 2018, eq. 2).
    pgd_at          PGDAdversarialTraining (Madry et al. 2018); with clean_weight=0.5,
                    label="predicted": PNI's training (Rakin et al. 2019, eq. 10).
    vat             VirtualAdversarialTraining (Miyato et al., ICLR 2016).
    margin          MarginMaximization (Matyasko & Chau, IJCNN 2017).
    attack_mixture  AttackMixtureTraining: the student report's mixture of attacks (section 3.1).

The classes live in ``training.adversarial`` and ``training.regularisers``; the contract they share
is in ``training.objective``. A paper's own objectives (the adversary critic, the LWTA ELBO) are
in ``methods``.
"""

from __future__ import annotations

import inspect

from .adversarial import AttackMixtureTraining, FGSMAdversarialTraining, PGDAdversarialTraining
from .objective import ObjectiveBase
from .regularisers import (MarginMaximization, VirtualAdversarialTraining, margin_sensitivity, multiclass_hinge,
                           virtual_adversarial_perturbation)

OBJECTIVES: dict[str, type[ObjectiveBase]] = {
    "at": FGSMAdversarialTraining,
    "pgd_at": PGDAdversarialTraining,
    "vat": VirtualAdversarialTraining,
    "margin": MarginMaximization,
    "attack_mixture": AttackMixtureTraining,
}


def make_objective(name: str, **kwargs) -> ObjectiveBase:
    """An objective by name (a key of ``OBJECTIVES``) built with its keyword hyper-parameters.

    Raises:
        ValueError: an unknown name or keyword, or a bad hyper-parameter value.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}")
    cls = OBJECTIVES[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"unknown argument(s) {sorted(unknown)} for objective {name!r}; valid: {sorted(allowed)}")
    return cls(**kwargs)


__all__ = ["OBJECTIVES", "make_objective", "FGSMAdversarialTraining", "PGDAdversarialTraining", "AttackMixtureTraining",
           "VirtualAdversarialTraining", "MarginMaximization", "margin_sensitivity", "multiclass_hinge",
           "virtual_adversarial_perturbation"]
