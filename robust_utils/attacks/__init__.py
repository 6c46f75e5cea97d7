"""Adversarial attacks in pixel space [0, 1], one concept per module.

    fgsm      Fast gradient sign method (Goodfellow et al. 2015), Linf, one step.
    pgd       Projected gradient descent (Madry et al. 2018) in Linf or L2, with random start and
              restarts; BIM (Kurakin et al. 2016) with ``random_start=False``.
    cw_l2     Carlini & Wagner 2017 L2 attack (untargeted), Adam in tanh space, binary search on c.
    deepfool  DeepFool (Moosavi-Dezfooli et al. 2016), multi-class L2 (their Algorithm 2).

Common contract: the model maps x (N, C, H, W) in [0, 1] to logits (N, K); its train/eval mode
and its parameters' ``.grad`` are never touched; x and y are validated before any work; the whole
batch is attacked at once; x is never modified in place; the result is a new detached tensor in
[0, 1] with x's dtype and device. Attacks need gradients: call them outside
``torch.inference_mode``. The shared gradient helper is ``_grad.input_gradient``.
"""

from .cw import cw_l2
from .deepfool import deepfool
from .fgsm import fgsm
from .pgd import pgd

__all__ = ["fgsm", "pgd", "cw_l2", "deepfool"]
