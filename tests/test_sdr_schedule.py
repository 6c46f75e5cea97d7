"""The variance-threshold schedule of SDR-Learnable (Khan et al. 2019, section 4.3): the paper's
plateau rule, our stopping rule (``max_drop``), and its state for an exact resume."""

import pytest
import torch

from robust_utils.methods import sdr
from robust_utils.nn import models


class _Accuracies:
    """Stands in for the held-out accuracy measurement: returns the given values in turn."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, *args, **kwargs):
        return type("A", (), {"mean": self.values.pop(0)})()


def _run(schedule, accuracies, monkeypatch):
    monkeypatch.setattr(sdr, "stochastic_accuracy", _Accuracies(accuracies))
    model = models.build_model("mlp", seed=0, device="cpu", widths=[4], layer="sdr-learnable")
    schedule.after_step(1, 1, model)
    return [schedule(epoch, model) for epoch in range(1, len(accuracies) + 1)]


def _schedule(**kw):
    x = torch.rand(8, 1, 28, 28)
    return sdr.VarianceSchedule(x, torch.arange(8) % 10, low=0.0, high=1.0, step=0.05, every=2, tol=0.0, **kw)


def test_the_papers_rule_keeps_raising_on_every_plateau(monkeypatch):
    out = _run(_schedule(), [0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.2, 0.2], monkeypatch)
    assert [o["raised"] for o in out] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert out[-1]["sigma_low"] == pytest.approx(0.15) and "stopped" not in out[-1]


def test_the_stopping_rule_stops_once_a_plateau_costs_more_than_max_drop(monkeypatch):
    out = _run(_schedule(max_drop=0.1), [0.9, 0.9, 0.85, 0.85, 0.7, 0.7, 0.7, 0.7], monkeypatch)
    # reference 0.9 (before the first raise); the plateau at 0.85 is within 0.1 (raise); the plateau at
    # 0.7 (its second epoch: a plateau needs a best to compare with) is not: the schedule stops for good
    assert [o["raised"] for o in out] == [0, 1, 0, 1, 0, 0, 0, 0]
    assert [o["stopped"] for o in out] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert out[-1]["sigma_low"] == pytest.approx(0.10)


def test_the_stopping_rule_can_leave_the_schedule_running(monkeypatch):
    out = _run(_schedule(max_drop=0.5), [0.9, 0.9, 0.85, 0.85, 0.7, 0.7], monkeypatch)
    assert [o["raised"] for o in out] == [0, 1, 0, 1, 0, 1] and not any(o["stopped"] for o in out)


def test_state_round_trip_resumes_the_schedule(monkeypatch):
    first = _schedule(max_drop=0.1)
    _run(first, [0.9, 0.9, 0.85, 0.85, 0.7, 0.7], monkeypatch)
    second = _schedule(max_drop=0.1)
    second.load_state_dict(first.state_dict())
    assert second.state_dict() == first.state_dict() and second._stopped


def test_keys_and_arguments():
    assert "max_drop" not in _schedule().cache_key()  # keys of the paper's rule are unchanged
    assert _schedule(max_drop=0.05).cache_key()["max_drop"] == 0.05
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_drop"):
            _schedule(max_drop=bad)
