"""Checks of a notebook's results.json after a run through the runner (shared by the smoke and the
scaled paper-profile tests; a helper module, not a test file)."""

from __future__ import annotations

from robust_utils.methods.leaderboard import check_leaderboard

VERDICTS = {"reproduced", "not reproduced", "inconclusive", "not tested at this profile"}
# Each paper's whole ledger: the same claims at every profile ("not tested at this profile" included).
LEDGER_SIZES = {"01_probabilistic_loss": 18, "02_hr_loss": 35, "03_stochastic_lwta": 15, "04_adversary_critic": 36,
                "05_sdr_learnable": 29}


def assert_ledger(results: dict, notebook: str) -> None:
    """The paper's whole ledger is there, each claim once, each with a verdict and its evidence."""
    claims = results["claims"]
    n = LEDGER_SIZES[notebook]
    assert len(claims) == n and len({c["claim"] for c in claims}) == n
    assert all(c["verdict"] in VERDICTS and c["evidence"] for c in claims)


def check_01(results: dict) -> None:
    cal = results["values"]["calibration"]
    assert set(cal) == {"scalar", "diagonal"} and 0 < cal["scalar"]["mean_true_tau"] <= 1
    assert {"figures1_2_seven.png", "eps_sweep.png", "regression.png"} <= set(results["figures"])
    assert set(results["values"]["fgsm"]) == {"CE", "calibrated (EM)", "label smoothing", "eq. 6"}
    grid = results["parameters"]["reg_eps_grid"]
    assert len(results["values"]["regression"]) == 2 * 4 * len(grid)  # targets x losses x eps


def check_02(results: dict) -> None:
    table = results["tables"]["Table 1 (MNIST)"]
    assert len(table) == 12 and all(0.0 <= row["ours"] <= 1.0 for row in table)
    assert {row["cell"] for row in table} >= {"CE, eps=0.1", "HRCE, eps=0.25", "CEHR, eps=0"}
    assert len(results["tables"]["Table 1 (CIFAR-10)"]) == 12
    assert {"figure1_val_accuracy.png", "confusion_matrices.png", "eps_sweep.png"} <= set(results["figures"])


def check_03(results: dict) -> None:
    table = results["tables"]["Table 1 (CIFAR-10)"]
    assert len(table) == 32  # 8 models x (natural, PGD, FGSM, CW)
    assert {"Stochastic LWTA / PGD", "Smoothing, PGD, FGSM, CW + Noise Injection / CW"} <= {row["cell"] for row in table}
    assert all(0.0 <= row["ours"] <= 1.0 for row in table)
    assert {"figure1_pgd_examples.png", "figure3_slwta_examples.png", "figure4_confidence.png"} <= set(results["figures"])
    attacks = {(r["model"], r["attack"]) for r in results["values"]["adaptive"]}
    eot = results["parameters"]["eot_samples"]
    assert ("Stochastic LWTA", "transfer from expected activation") in attacks
    assert ("Noise Injection", "transfer from noise-free network") in attacks
    assert ("Stochastic LWTA", f"EOT-PGD ({eot} draws)") in attacks


def check_04(results: dict) -> None:
    table = results["tables"]["Table 1 (MNIST)"]
    assert len(table) == 40  # 2 networks x 5 defenses x (error, 3 x rho_adv)
    assert {"MLP/Critic rho ours", "LeNet-5/Reference error %"} <= {row["cell"] for row in table}
    assert all(row["ours"] >= 0 for row in table)
    assert {"critic_training.png", "figure2_mlp_critic.png", "figure4_lenet5.png"} <= set(results["figures"])
    assert len(results["values"]["proxy_table2"]) == 10 and len(results["values"]["l2_budgets"]) == 10


def check_05(results: dict) -> None:
    table = results["tables"]["Table 1 (MNIST)"]
    assert len(table) == 16 and all(0.0 <= row["ours"] <= 1.0 for row in table)
    assert {"Regular Samples / Learnable SDR MLP", "LocalSearch Attack / DropConnect"} <= {row["cell"] for row in table}
    assert {"variance_schedule.png", "eps_sweep.png"} <= set(results["figures"])
    adaptive = results["values"]["adaptive_attacks"]
    assert len(adaptive) == 8 and {"EOT-PGD", "transfer from mean network"} <= set(adaptive[0])
    assert results["values"]["schedule_raised_after_epochs"]  # schedule_every 1: the thresholds moved at least once


def check_06(results: dict) -> None:
    board = results["leaderboards"]["Leaderboard (MNIST)"]
    p = results["parameters"]
    budgets = [f"Linf {e:g}" for e in p["linf_eps"]] + [f"L2 {e:g}" for e in p["l2_eps"]]
    assert {"defense", "clean", "audit", *(f"AA {b}" for b in budgets), *(f"robust {b}" for b in budgets)} <= set(board["columns"])
    rows = {r["defense"]: r for r in board["rows"]}
    assert len(rows) == 14 and {"HR loss", "SDR-Learnable", "Adversary critic", "PNI MLP (PGD-AT)",
                                "Stochastic LWTA MLP (PGD-AT)", "Probabilistic loss (EM soft labels)"} <= set(rows)
    aa = [c for c in board["columns"] if c.startswith("AA ")]
    assert all(0.0 <= r[c] <= 1.0 for r in rows.values() for c in aa if r[c] is not None)
    # AutoAttack's own count (its rand version's rule) is reported for the random models only
    assert all((r[c] is None) == (c.endswith("(own count)") and not r["random"]) for r in rows.values() for c in aa)
    # the headline is the per-example worst case, never above any single attack's accuracy at its budget
    assert "robust Linf 0.1" in board["columns"] and check_leaderboard(board) == []
    assert rows["SDR-Learnable"]["random"] and not rows["HR loss"]["random"]
    assert rows["HR loss"]["protocol: paper"] == 0.945  # Picot et al. Table 1, HRCE/MNIST at eps 0.1
    values = results["values"]
    assert values["crosscheck_ours_weaker"] is False and len(values["paragraphs"]) == 14
    assert all(a[0]["check"] == "determinism probe" for a in values["audits"].values())
    assert "claimed_vs_measured.png" in results["figures"]


CHECKS = {"01_probabilistic_loss": check_01, "02_hr_loss": check_02, "03_stochastic_lwta": check_03,
          "04_adversary_critic": check_04, "05_sdr_learnable": check_05, "06_adaptive_evaluation": check_06}
