"""The papers' published numbers, verbatim, each with paper, table (or section), row and column.

This is the only place in the companion where a number is typed in by hand. Notebooks look
values up here; every value is the paper's, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PAPERS = {
    "prob_loss": "Anonymous authors, \"Building Neural Networks that are Robust to Adversarial Examples Using "
                 "Probabilistic Loss Function\", submitted to ICLR 2026 (under review). "
                 "https://openreview.net/forum?id=dBJpBmn5MH",
    "picot": "M. Picot, P. Piantanida, F. Messina, F. Labeau, \"Modelling the uncertainty of a deep neural network "
             "enhances its adversarial robustness\", GRETSI symposium (no public copy found).",
    "kaspar": "M. Kaspar, O. Hicheur, C. Bourdrez, \"Robustness of Neural Networks\", student report, Data Science "
              "Lab, Université Paris Dauphine, 11 December 2024 (unpublished).",
    "matyasko": "A. Matyasko, L.-P. Chau, \"Improved Network Robustness with Adversary Critic\", NeurIPS 2018. "
                "https://arxiv.org/abs/1810.12576 (code: https://github.com/aam-at/adversary_critic)",
    "khan": "D. A. Khan, L. Li, N. Sha, Z. Liu, A. Jimenez, B. Raj, \"Non-Determinism in Neural Networks for "
            "Adversarial Robustness\". https://arxiv.org/abs/1905.10906",
    "panousis": "K. P. Panousis, S. Chatzis, S. Theodoridis, \"Stochastic Local Winner-Takes-All Networks Enable "
                "Profound Adversarial Robustness\", arXiv 2112.02671. https://arxiv.org/abs/2112.02671 "
                "(code and AutoAttack logs: https://github.com/konpanousis/Adversarial-LWTA-AutoAttack)",
    "rakin": "A. S. Rakin, Z. He, D. Fan, \"Parametric Noise Injection: Trainable Randomness to Improve Deep Neural "
             "Network Robustness against Adversarial Attack\", CVPR 2019. https://arxiv.org/abs/1811.09310 "
             "(code: https://github.com/elliothe/CVPR_2019_PNI)",
}


@dataclass(frozen=True)
class Published:
    """One published number: ``value`` at (paper, table, row, column), with a note on its meaning."""

    paper: str
    table: str
    row: str
    column: str
    value: float
    note: str = ""


def _picot_table1() -> list[Published]:
    # Table 1: test accuracy; rows eps (FGSM, Linf, pixel scale [0, 1]); columns are
    # training/attack combinations x dataset. CE: trained CE, attacked with CE; HRCE: trained HR,
    # attacked with CE; HR: trained HR, attacked with HR; CEHR: trained CE, attacked with HR.
    # Each triple is (MNIST, CIFAR-10, SVHN), averaged over 5 runs (section 3).
    rows = {
        "0": {"CE": (0.985, 0.656, 0.865), "HRCE": (0.986, 0.685, 0.901),
              "HR": (0.986, 0.685, 0.901), "CEHR": (0.985, 0.656, 0.865)},
        "0.1": {"CE": (0.907, 0.296, 0.797), "HRCE": (0.945, 0.337, 0.836),
                "HR": (0.977, 0.324, 0.835), "CEHR": (0.977, 0.288, 0.801)},
        "0.25": {"CE": (0.852, 0.282, 0.672), "HRCE": (0.861, 0.320, 0.704),
                 "HR": (0.974, 0.306, 0.698), "CEHR": (0.972, 0.271, 0.674)},
    }
    out = []
    for eps, combos in rows.items():
        for combo, values in combos.items():
            for dataset, v in zip(("MNIST", "CIFAR-10", "SVHN"), values):
                out.append(Published("picot", "Table 1", f"eps={eps}", f"{combo}/{dataset}", v,
                                     "test accuracy under FGSM, mean of 5 runs"))
    return out


def _khan_table1() -> list[Published]:
    # Table 1: MNIST test accuracy of the 784-100-100-100-10 MLP variants; attacks run with
    # Foolbox (FGSM and DeepFool white-box, LocalSearch black-box), percentages as fractions.
    columns = ("Vanilla MLP", "SDR-decay MLP", "Learnable SDR MLP", "DropConnect")
    rows = {
        "Regular Samples": (0.9759, 0.9755, 0.9787, 0.9795),
        "FGSM Attack": (0.0, 0.0461, 0.9486, 0.459),
        "DeepFool Attack": (0.0, 0.0387, 0.7842, 0.4548),
        "LocalSearch Attack": (0.0, 0.0285, 0.8889, 0.2653),
    }
    return [Published("khan", "Table 1", row, col, v, "MNIST test accuracy")
            for row, values in rows.items() for col, v in zip(columns, values)]


def _matyasko_tables() -> list[Published]:
    # Table 1 (a: MLP 1200-1200-1200, b: LeNet-5), MNIST, mean of 10 runs: test error in percent
    # and rho_adv (eq. 8) under DeepFool, Carlini-Wagner L2 and the paper's attack. Table 2:
    # Amazon Mechanical Turk labels of the paper's high-confidence adversarial images, percent
    # labelled with the adversarial target ("change") or with the original label ("no change").
    # Values as in the paper and the authors' poster (poster.pdf in github.com/aam-at/adversary_critic).
    defenses = ("Reference", "AT", "VAT", "Margin", "Critic")
    table1 = {
        "MLP": ((1.46, 0.131, 0.124, 0.173), (0.90, 0.228, 0.210, 0.299), (0.84, 0.244, 0.215, 0.355),
                (0.84, 0.262, 0.230, 0.453), (1.18, 0.290, 0.272, 0.575)),
        "LeNet-5": ((0.64, 0.157, 0.148, 0.207), (0.55, 0.215, 0.191, 0.286), (0.60, 0.225, 0.195, 0.330),
                    (0.54, 0.248, 0.225, 0.470), (0.93, 0.288, 0.278, 0.590)),
    }
    table2 = {
        "MLP": ((0.57, 98.74), (19.02, 77.21), (35.08, 59.68), (60.47, 34.52), (87.99, 9.86)),
        "LeNet-5": ((2.54, 96.53), (19.1, 75.94), (26.8, 67.73), (81.77, 13.15), (92.29, 6.51)),
    }
    out = []
    for net, rows in table1.items():
        for defense, values in zip(defenses, rows):
            for column, v in zip(("error %", "rho DeepFool", "rho CW", "rho ours"), values):
                out.append(Published("matyasko", "Table 1", f"{net}/{defense}", column, v,
                                     "MNIST; test error in percent, or rho_adv (eq. 8); mean of 10 runs"))
    for net, rows in table2.items():
        for defense, values in zip(defenses, rows):
            for column, v in zip(("% change", "% no change"), values):
                out.append(Published("matyasko", "Table 2", f"{net}/{defense}", column, v,
                                     "MTurk labels of high-confidence adversarial images, percent"))
    return out


def _kaspar_tables() -> list[Published]:
    # Table 1 (results "from local"): CIFAR-10 test accuracy in percent, WideResNet-34-1; caption:
    # eps = 0.3, alpha = 0.01, kappa = 0.01, c = 1e-4. Table 2 ("from the platform"): the final model;
    # its PGD column aggregates L2 and Linf PGD (sum of two accuracies, hence 114.6).
    columns = ("Natural", "PGD", "FGSM", "CW")
    rows = {
        "Regular training": (63.67, 1.37, 0.98, 34.08),
        "Noise Injection": (57.42, 1.07, 1.37, 26.46),
        "Smoothing": (57.81, 1.07, 2.34, 29.59),
        "Smoothing, PGD": (62.89, 0.39, 5.27, 26.86),
        "Smoothing, PGD, FGSM": (56.64, 0.39, 6.54, 23.67),
        "Smoothing, PGD, FGSM, CW": (58.98, 0.59, 6.35, 34.08),
        "Smoothing, PGD, FGSM, CW + Noise Injection": (59.12, 14.26, 53.28, 56.9),
        "Stochastic LWTA": (67.9, 36.23, 11.33, 68.75),
    }
    out = [Published("kaspar", "Table 1", row, col, v, "CIFAR-10 test accuracy, percent")
           for row, values in rows.items() for col, v in zip(columns, values)]
    out += [Published("kaspar", "Table 2", "Stochastic LWTA", col, v, "CIFAR-10, evaluation platform, percent")
            for col, v in zip(("Natural", "PGD L2 + Linf (sum)", "FGSM", "CW"), (68.8, 114.6, 11.5, 66.0))]
    return out


def _lwta_pni_numbers() -> list[Published]:
    # Panousis et al.: second-hand, the paper's table as listed by a Papers-with-Code mirror (to be
    # verified against the PDF), and the authors' AutoAttack logs in their repository
    # (log.txt at commit 511cadc, log_rand.txt); Rakin et al.: PNI's Table 3, ResNet-20.
    return [
        Published("panousis", "Table (PwC mirror)", "WRN-34-1", "clean", 81.87, "CIFAR-10, percent; Papers-with-Code mirror of the paper's table"),
        Published("panousis", "Table (PwC mirror)", "WRN-34-1", "AutoAttack", 74.71, "CIFAR-10, percent; Papers-with-Code mirror of the paper's table"),
        Published("panousis", "AA log (width 1)", "standard AA", "clean", 86.78, "authors' log.txt, percent"),
        Published("panousis", "AA log (width 1)", "standard AA", "after FAB-T", 74.54,
                  "authors' log.txt, Square not reached, percent"),
        Published("panousis", "AA log (width 1)", "AA rand (EOT)", "clean", 86.56, "authors' log_rand.txt, percent"),
        Published("panousis", "AA log (width 1)", "AA rand (EOT)", "robust", 76.08, "authors' log_rand.txt, percent"),
        Published("rakin", "Table 3", "ResNet-20", "no defense: clean", 92.1, "CIFAR-10, percent"),
        Published("rakin", "Table 3", "ResNet-20", "no defense: PGD", 0.0, "PGD eps 8/255, 7 steps, percent"),
        Published("rakin", "Table 3", "ResNet-20", "PNI-W (noise on at test): clean", 84.9, "CIFAR-10, percent"),
        Published("rakin", "Table 3", "ResNet-20", "PNI-W (noise on at test): PGD", 45.9, "PGD eps 8/255, 7 steps"),
        Published("rakin", "Table 3", "ResNet-20", "PNI-W (noise off at test): PGD", 31.6, "PGD eps 8/255, 7 steps"),
    ]


PUBLISHED: list[Published] = _picot_table1() + _khan_table1() + _matyasko_tables() + _kaspar_tables() + \
    _lwta_pni_numbers() + [
    # Khan et al., section 6: SDR-Learnable trained without the variance threshold schedule.
    Published("khan", "Section 6", "DeepFool Attack", "Learnable SDR MLP, no variance schedule", 0.4015,
              "MNIST test accuracy"),
    Published("khan", "Section 6", "LocalSearch Attack", "Learnable SDR MLP, no variance schedule", 0.4405,
              "MNIST test accuracy"),
    # Section 3, last paragraph: MNIST, FGSM with the CE loss at eps = 0.1.
    Published("picot", "Section 3", "||I - C||_F", "HR", 0.23, "confusion matrix under CE-FGSM eps=0.1, MNIST"),
    Published("picot", "Section 3", "||I - C||_F", "CE", 0.40, "confusion matrix under CE-FGSM eps=0.1, MNIST"),
]


def lookup(paper: str, table: str, row: str, column: str) -> float:
    """The published value at (paper, table, row, column).

    Raises:
        KeyError: no such entry (the message lists the paper's tables).
    """
    for p in PUBLISHED:
        if (p.paper, p.table, p.row, p.column) == (paper, table, row, column):
            return p.value
    tables = sorted({p.table for p in PUBLISHED if p.paper == paper})
    raise KeyError(f"no published value for {paper!r} {table!r} row {row!r} column {column!r}; "
                   f"tables of {paper!r}: {tables}")


def table(paper: str, table: str) -> pd.DataFrame:
    """A published table as a DataFrame (rows x columns), values verbatim."""
    entries = [p for p in PUBLISHED if p.paper == paper and p.table == table]
    if not entries:
        raise KeyError(f"no published table {table!r} for paper {paper!r}")
    df = pd.DataFrame([{"row": p.row, "column": p.column, "value": p.value} for p in entries])
    return df.pivot(index="row", columns="column", values="value").loc[list(dict.fromkeys(p.row for p in entries))]
