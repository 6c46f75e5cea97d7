"""Shared fixtures: small real-MNIST splits and a small trained model (trained once per session).

The tests read the real MNIST files embedded in data/ (or the folder ROBUST_UTILS_DATA names).
Without them the data fixtures fail with the loader's message, naming the missing file and the
command that fetches it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robust_utils.core.data import load_dataset
from robust_utils.nn.models import build_model
from robust_utils.core.paths import absolute_path_variables
from robust_utils.training import fit

torch.set_num_threads(2)
absolute_path_variables()  # nbval's kernels run in notebooks/: a relative ROBUST_UTILS_DATA would move


@pytest.fixture(scope="session")
def mnist_train():
    """2,000 class-balanced MNIST training images: x (2000, 1, 28, 28) float32 in [0, 1], y (2000,) int64."""
    return load_dataset("mnist", "train", n=2000, seed=0)


@pytest.fixture(scope="session")
def mnist_test():
    """500 class-balanced MNIST test images."""
    return load_dataset("mnist", "test", n=500, seed=0)


@pytest.fixture(scope="session")
def first_correct():
    """``first_correct(model, x, y, n=100)``: the first n images the model classifies correctly
    (fails the test if there are fewer)."""
    from robust_utils.evaluation import predict

    def pick(model, x, y, n=100):
        ok = predict(model, x) == y
        assert ok.sum() >= n, f"only {int(ok.sum())} correctly classified images, need {n}"
        return x[ok][:n], y[ok][:n]

    return pick


@pytest.fixture(scope="session")
def trained_lenet(mnist_train):
    """LeNet-5 trained for 3 epochs on the 2,000 images (a few seconds); returned in eval mode.

    Trained with a plain loop (not robust_utils.train) so the attack tests do not depend on fit.
    Reaches well above 90% clean accuracy on the 500 test images.
    """
    x, y = mnist_train
    model = build_model("lenet5", seed=0, device="cpu")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(x), generator=g).split(50):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_mlp(mnist_train):
    """Khan et al.'s 784-100-100-100-10 MLP, 5 epochs of Adam (lr 1e-3) on the 2,000 images (~0.2 s).

    About 85% clean accuracy on the 500 test images; returned in eval mode.
    """
    x, y = mnist_train
    model = build_model("mlp", seed=0, device="cpu")
    fit(model, x, y, epochs=5, optimizer={"name": "adam", "lr": 1e-3}, seed=0, cache_enabled=False, progress=False)
    return model.eval()
