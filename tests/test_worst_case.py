"""Per-example robust accuracy: the worst case over every attack at a budget, the raise when a
single attack reads lower than the suite, and the leaderboard's rule (methods.leaderboard)."""

import math

import pandas as pd
import pytest
import torch

from robust_utils.evaluation.worst_case import WORST, AccountingError, WorstCase, correct_probability
from robust_utils.methods import leaderboard


def test_the_worst_case_is_per_example_not_the_minimum_of_accuracies():
    wc = WorstCase(4, "Linf 0.1")
    wc.add("PGD", torch.tensor([1, 1, 0, 0], dtype=torch.bool))
    wc.add("Square", torch.tensor([0, 1, 1, 0], dtype=torch.bool))
    assert wc.accuracies() == {"PGD": 0.5, "Square": 0.5}
    assert wc.robust_accuracy == 0.25  # min of the accuracies would say 0.5
    assert wc.per_example().tolist() == [0, 1, 0, 0]
    assert wc.worst_attack() == ["Square", "PGD", "PGD", "PGD"]
    t = wc.table()
    assert list(t.attack) == ["PGD", "Square", WORST] and t.accuracy.tolist() == [0.5, 0.5, 0.25]
    assert t["lowest on"].tolist()[:2] == [2, 2] and t["only"].tolist()[:2] == [1, 1]


def test_probabilities_of_a_random_model_are_combined_per_point():
    wc = WorstCase(3)
    wc.add("APGD-CE", torch.tensor([0.9, 0.2, 0.5]))
    wc.add("EOT-PGD", torch.tensor([0.4, 0.6, 0.5]))
    wc.add_own_count("APGD-CE", 0.0)
    assert wc.robust_accuracy == pytest.approx((0.4 + 0.2 + 0.5) / 3)
    assert wc.table().set_index("attack").loc["APGD-CE", "own count"] == 0.0  # shown, never part of the worst case


def test_a_single_attack_reading_lower_than_the_suite_raises():
    wc = WorstCase(4, "Linf 0.1")
    wc.add("PGD", torch.tensor([1.0, 1.0, 0.0, 0.0]))
    wc.add_reading("paper's protocol", 0.5)
    assert wc.robust_accuracy == 0.5  # equal: fine
    wc.add_reading("a protocol run on other points", 0.25)
    with pytest.raises(AccountingError, match="read lower than the per-example worst case 0.5000"):
        wc.robust_accuracy
    with pytest.raises(AccountingError):
        wc.table()
    wc.add("FGSM", torch.tensor([1.0, 0.0, 0.0, 0.0]))  # a later attack brings the suite below the reading
    assert wc.robust_accuracy == 0.25


def test_bad_input_is_refused():
    wc = WorstCase(3)
    wc.add("PGD", torch.ones(3))
    for args, match in ((("PGD", torch.ones(3)), "already added"), (("FGSM", torch.ones(4)), "shape"),
                        (("FGSM", torch.ones(1, 3)), "shape"), (("FGSM", torch.tensor([0.0, 2.0, 1.0])), r"\[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            wc.add(*args)
    with pytest.raises(ValueError, match="no attack"):
        WorstCase(3).per_example()
    with pytest.raises(ValueError, match="positive int"):
        WorstCase(0)
    with pytest.raises(ValueError, match="cannot merge"):
        wc.merge(WorstCase(4))


def test_merge_keeps_names_readings_and_own_counts():
    audit = WorstCase(2)
    audit.add("PGD-50", torch.tensor([1.0, 0.0]))
    audit.add_reading("FGSM (aggregate)", 0.5)
    audit.add_own_count("PGD-50", 0.0)
    wc = WorstCase(2)
    wc.add("AA standard", torch.tensor([0.0, 1.0]))
    wc.merge(audit, "audit ")
    assert wc.attacks == ["AA standard", "audit PGD-50"] and wc.robust_accuracy == 0.0
    assert wc.own_counts() == {"audit PGD-50": 0.0} and wc.accuracies()["audit FGSM (aggregate)"] == 0.5


def test_correct_probability_counts_fresh_passes(trained_mlp, mnist_test):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    det = correct_probability(trained_mlp, x, y, passes=3)
    assert set(det.unique().tolist()) <= {0.0, 1.0}  # a deterministic model: every pass agrees
    noisy = torch.nn.Sequential(torch.nn.Dropout(0.5), trained_mlp).train()
    torch.manual_seed(0)
    p = correct_probability(noisy, x, y, passes=20)
    assert p.shape == (50,) and ((p > 0) & (p < 1)).any()


def test_the_leaderboard_rule_holds_and_can_fail():
    good = {"columns": ["defense", "AA Linf 0.1", "AA Linf 0.1 (own count)", "audit Linf 0.1", "robust Linf 0.1"],
            "rows": [{"defense": "SDR", "AA Linf 0.1": 0.41, "AA Linf 0.1 (own count)": 0.05, "audit Linf 0.1": 0.4,
                      "robust Linf 0.1": 0.38},
                     {"defense": "MLP", "AA Linf 0.1": 0.0, "AA Linf 0.1 (own count)": None, "audit Linf 0.1": None,
                      "robust Linf 0.1": 0.0}]}
    assert leaderboard.check_leaderboard(good) == []  # own counts are not single-attack readings
    leaderboard.assert_leaderboard(pd.DataFrame(good["rows"]))
    bad = [dict(good["rows"][0], **{"robust Linf 0.1": 0.45})]
    problems = leaderboard.check_leaderboard(bad)
    assert problems == ["SDR: robust Linf 0.1 0.4500 > AA Linf 0.1 0.4100", "SDR: robust Linf 0.1 0.4500 > audit Linf 0.1 0.4000"]
    with pytest.raises(AccountingError, match="SDR"):
        leaderboard.assert_leaderboard(bad)
    assert leaderboard.check_leaderboard([{"defense": "x", "AA Linf 0.1": 0.2}])[0].startswith("no 'robust <budget>' column")


def test_the_leaderboard_worst_case_joins_autoattack_the_audit_and_the_protocol():
    from robust_utils.evaluation.autoattack import AutoAttackResult
    from robust_utils.evaluation.audit import Audit

    aa = AutoAttackResult(torch.zeros(4, 1, 2, 2), 1.0, 0.5, {}, (), "rand", "inf", 0.1, 0,
                          correct=torch.tensor([0.5, 0.5, 0.5, 0.5]),
                          members={"apgd-ce": torch.tensor([1.0, 0.5, 0.5, 0.5]), "apgd-dlr": torch.tensor([0.5, 0.5, 0.5, 1.0])},
                          own_accuracy=0.25, passes=2)
    suite = WorstCase(4, "Linf eps 0.1")
    suite.add("PGD-50", torch.tensor([0.0, 1.0, 1.0, 1.0]))
    audit = Audit(pd.DataFrame(), "", True, True, 0.75, {}, suite.per_example(), suite, 4, 0.0, 0.1, "inf")
    own = leaderboard.OwnEvaluation("PGD-40", "accuracy", 0.75, None, torch.tensor([1.0, 1.0, 0.0, 1.0]), ("inf", 0.1))
    cols, suites = leaderboard.worst_case_columns([("inf", 0.1), ("inf", 0.3)], 4, {"AA Linf 0.1": aa}, audit,
                                                  leaderboard.OwnEvaluation("x", "accuracy", 0.75, None, own.correct, ("inf", 0.1)))
    wc = suites["Linf 0.1"]
    assert wc.attacks == ["AA apgd-ce", "AA apgd-dlr", "audit PGD-50", "protocol: x"]
    assert cols["robust Linf 0.1"] == pytest.approx((0 + 0.5 + 0 + 0.5) / 4) and cols["audit Linf 0.1"] == 0.75
    assert cols["protocol Linf 0.1"] == 0.75 and wc.own_counts() == {"AA apgd-dlr": 0.25}
    assert "robust Linf 0.3" not in cols and suites["Linf 0.3"].attacks == []  # nothing ran there
    assert leaderboard.check_leaderboard([{"defense": "d", "AA Linf 0.1": aa.robust_accuracy, **cols}]) == []


def test_paragraph_uses_the_worst_case_and_the_own_count():
    row = pd.Series({"defense": "PNI MLP (PGD-AT)", "architecture": "MLP", "random": True, "clean": 0.95,
                     "protocol": "PGD-40 at the training eps 0.1 (Madry et al.)", "protocol: paper": None,
                     "protocol: ours": 0.70, "AA Linf 0.1": 0.55, "AA Linf 0.1 (own count)": 0.30, "robust Linf 0.1": 0.50})
    twin = pd.Series({**row.to_dict(), "defense": "PGD-AT MLP", "random": False, "AA Linf 0.1 (own count)": None,
                      "robust Linf 0.1": 0.52})
    text = leaderboard.paragraph(row, twin, leaderboard.robust_label("inf", 0.1), "inconclusive at n = 40")
    assert "Under AutoAttack it keeps 55.0% at Linf 0.1." in text
    assert "AutoAttack's own count, one draw of the randomness per check, reads 30.0% at Linf 0.1." in text
    assert "the per-example worst case over every attack run there, is 50.0%" in text
    assert "(PGD-AT MLP) keeps 52.0% at Linf 0.1, so the defense loses 2.0 points over it there." in text
    assert "reads 20.0 points higher than the worst case" in text and math.isfinite(row["clean"])


def test_own_evaluation_uses_notebook_04s_deepfool_clip_and_returns_per_example_results(trained_mlp, mnist_test,
                                                                                      monkeypatch):
    from robust_utils import attacks
    from robust_utils.methods.defenses import Defense

    x, y = mnist_test[0][:20], mnist_test[1][:20]
    seen = {}
    real = attacks.deepfool

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(attacks, "deepfool", spy)
    d04 = Defense("CE (LeNet-5, nb 04)", "Reference", "04_adversary_critic", "matyasko", "MLP", trained_mlp, None, False, True)
    own = leaderboard.own_evaluation(d04, x, y, {"eval_steps": 5, "eval_clip": 0.1})
    assert seen == {"steps": 5, "max_step": 0.1} and own.kind == "rho_adv" and own.correct is None and own.budget is None
    d06 = Defense("PGD-AT MLP", "PGD-AT MLP", "06_adaptive_evaluation", "", "MLP", trained_mlp, "Vanilla MLP (nb 05)",
                  False, True)
    own = leaderboard.own_evaluation(d06, x, y, {"eps": 0.1})
    assert own.budget == ("inf", 0.1) and own.correct.shape == (20,) and own.ours == pytest.approx(own.correct.mean().item())
