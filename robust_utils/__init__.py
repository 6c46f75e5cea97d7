"""robust_utils: the thin shared library of the adversarial-robustness paper companion.

Modules (one concept each):
    runtime    device selection ("auto"), seeding, thread count
    data       datasets as tensors in [0, 1], data root, checksums
    models     MLP (plain or with stochastic layers), the paper's 2-conv + 2-fc MNIST CNN, LeNet-5
    layers     stochastic linear layers: SDR (Khan et al.), DropConnect; the mean-network switch
    losses     cross-entropy and the HR loss (Picot et al.)
    attacks    FGSM (and Foolbox's smallest-eps search), PGD (Linf / L2), CW-L2, DeepFool,
               LocalSearch (black-box), EOT for random models
    train      one fit loop with callbacks and a checkpoint cache
    sdr        SDR-decay's sigma update, the variance thresholds and their schedule
    evaluate   clean / robust accuracy, eps grids, confusion matrices, random models, sanity checks
    reference  the papers' published numbers, verbatim
    claims     checking a paper's claims against our numbers
    results    results.json and figure output of a notebook
    plots      the figures the notebooks share
    runner     papermill batch regeneration (``python -m robust_utils run``)

torchvision is deliberately not imported anywhere in this package: see README.md.
"""

__version__ = "0.1.0"
