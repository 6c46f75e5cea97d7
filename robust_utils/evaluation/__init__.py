"""evaluation: measuring models and judging claims (imports core, nn, attacks, training).

    metrics      clean accuracy, random models' accuracy over passes, confusion matrices
    robustness   accuracy under attack, eps grids, budgets, the Figure-1 training monitor
    minimal      minimal perturbations and rho_adv (Matyasko & Chau 2018, eq. 8)
    sanity       the sanity checks of Carlini et al. 2019
    worst_case   per-example robust accuracy: a point is robust only if it survives every attack
    audit        the gradient-masking audit          autoattack  AutoAttack (pyautoattack), Square
    crosscheck   our attacks against Foolbox 3        claims      verdicts on a paper's claims
    reference    the papers' published numbers        plots       the figures the notebooks share

The most used functions of metrics, robustness and minimal are re-exported here, so a notebook
writes ``evaluation.accuracy(...)``.
"""

from .metrics import StochasticAccuracy, accuracy, confusion_matrix, identity_gap, predict, stochastic_accuracy
from .minimal import MinimalPerturbation, minimal_perturbation, rho_adv
from .robustness import (RobustAccuracyMonitor, accuracy_table, adversarial_examples, adversarial_examples_by_eps,
                         attack_accuracy, correct_by_eps, robust_accuracy, run_attack, within_budget)
from .sanity import sanity_checks

__all__ = ["StochasticAccuracy", "accuracy", "confusion_matrix", "identity_gap", "predict", "stochastic_accuracy",
           "MinimalPerturbation", "minimal_perturbation", "rho_adv", "RobustAccuracyMonitor", "accuracy_table",
           "adversarial_examples", "adversarial_examples_by_eps", "attack_accuracy", "correct_by_eps", "robust_accuracy",
           "run_attack", "within_budget", "sanity_checks"]
