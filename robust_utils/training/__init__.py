"""training: ``fit`` and the training objectives that are not one paper's own (imports core, nn, attacks).

    loop         ``fit``: seeded shuffles, optimiser and LR-schedule specs, callbacks, the
                 checkpoint store (cache + bundle)
    objective    the objective protocol that ``fit`` calls, its base class and checks
    adversarial  adversarial training: FGSM, PGD, the student report's attack mixture
    regularisers virtual adversarial training, margin maximisation
    objectives   the objectives by name (``make_objective``)

``fit``, ``FitResult``, ``make_optimizer`` and ``make_lr_schedule`` are re-exported here, so a
notebook writes ``training.fit(...)``.
"""

from .loop import FitResult, fit, make_lr_schedule, make_optimizer

__all__ = ["FitResult", "fit", "make_lr_schedule", "make_optimizer"]
