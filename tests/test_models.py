"""robust_utils.models: shapes, seeded initialisation, runtime helpers."""

import pytest
import torch

from robust_utils.core import runtime
from robust_utils.nn.models import build_model


@pytest.mark.parametrize("name, kwargs, n_params", [
    ("mlp", dict(widths=(100, 100, 100)), 784 * 100 + 100 + 2 * (100 * 100 + 100) + 100 * 10 + 10),
    ("lenet5", {}, 61706),
    ("mnist_cnn", {}, 3274634),  # 32/64 channels, 1024 hidden: the classic TF MNIST tutorial network
])
def test_logit_shapes_and_parameter_counts(name, kwargs, n_params):
    model = build_model(name, seed=0, device="cpu", **kwargs)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_seeded_initialisation_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model("mnist_cnn", seed=5, device="cpu", channels=(4, 8), hidden=16)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model("mnist_cnn", seed=5, device="cpu", channels=(4, 8), hidden=16)
    c = build_model("mnist_cnn", seed=6, device="cpu", channels=(4, 8), hidden=16)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_bad_model_and_device_arguments():
    with pytest.raises(ValueError, match="unknown model .vgg.; valid: mlp, mnist_cnn, lenet5, inception_mnist, wide_resnet, cifar_resnet"):
        build_model("vgg", seed=0)
    with pytest.raises(ValueError, match="bad arguments for model 'mlp'"):
        build_model("mlp", seed=0, depth=3)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runtime.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.resolve_device("cuda")
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        runtime.seed_everything(-1)
