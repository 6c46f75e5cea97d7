"""robust_utils.regression: the diabetes data, target outliers, the weighted training loop and the
FGSM-style perturbation of a regressor (paper 000, eq. 7, 8, 14)."""

import pytest
import torch

from robust_utils.methods import regression
from robust_utils.nn.models import build_model


@pytest.fixture(scope="module")
def diabetes():
    return regression.load_diabetes(test_fraction=0.25, seed=0)


def test_diabetes_split_is_standardised_and_seeded(diabetes):
    d = diabetes
    assert d.x_train.shape == (332, 10) and d.x_test.shape == (110, 10)
    assert torch.allclose(d.x_train.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(d.x_train.std(0), torch.ones(10), atol=1e-4)
    assert abs(float(d.y_train.mean())) < 1e-5 and 70 < d.y_scale < 85  # the targets' std is ~77
    again = regression.load_diabetes(seed=0)
    assert torch.equal(again.x_test, d.x_test)
    assert not torch.equal(regression.load_diabetes(seed=1).x_test, d.x_test)


def test_outliers_move_exactly_the_masked_targets_by_the_shift(diabetes):
    y = diabetes.y_train
    y2, mask = regression.inject_outliers(y, 0.1, shift=5.0, seed=3)
    assert int(mask.sum()) == round(0.1 * len(y))
    assert torch.equal(y2[~mask], y[~mask])
    assert torch.allclose((y2[mask] - y[mask]).abs(), torch.full((int(mask.sum()),), 5.0))
    with pytest.raises(ValueError):
        regression.inject_outliers(y, 1.0)


def test_weighted_training_fits_and_zero_weight_samples_are_ignored(diabetes):
    d = diabetes
    net = build_model("mlp", seed=0, device="cpu", in_features=10, widths=(32,), num_classes=1)
    hist = regression.fit_regressor(net, d.x_train, d.y_train, epochs=60, lr=3e-3, seed=0)
    assert hist[-1] < 0.6 * hist[0]
    assert regression.rmse(net, d.x_test, d.y_test) < 0.85  # better than predicting the mean (~1)
    # a sample with weight 0 has no influence: corrupting its target changes nothing
    w = torch.ones_like(d.y_train)
    w[0] = 0
    y_bad = d.y_train.clone()
    y_bad[0] = 100.0
    a = build_model("mlp", seed=0, device="cpu", in_features=10, widths=(8,), num_classes=1)
    b = build_model("mlp", seed=0, device="cpu", in_features=10, widths=(8,), num_classes=1)
    regression.fit_regressor(a, d.x_train, d.y_train, w, epochs=3, seed=0)
    regression.fit_regressor(b, d.x_train, y_bad, w, epochs=3, seed=0)
    assert all(torch.allclose(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_fgsm_regression_moves_each_feature_by_eps_and_raises_the_error(diabetes):
    d = diabetes
    net = build_model("mlp", seed=0, device="cpu", in_features=10, widths=(32,), num_classes=1)
    regression.fit_regressor(net, d.x_train, d.y_train, epochs=30, lr=3e-3, seed=0)
    x_adv = regression.fgsm_regression(net, d.x_test, d.y_test, 0.2)
    assert torch.allclose((x_adv - d.x_test).abs().max(), torch.tensor(0.2))
    assert regression.rmse(net, x_adv, d.y_test) > regression.rmse(net, d.x_test, d.y_test)
    with pytest.raises(ValueError):
        regression.fgsm_regression(net, d.x_test, d.y_test, -0.1)
