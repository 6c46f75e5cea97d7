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


# ------------------------------------------------------------------ GPU speed switches (runtime)

def test_speed_switches_are_off_on_the_cpu_and_on_for_cuda(monkeypatch):
    monkeypatch.delenv(runtime.TF32_VARIABLE, raising=False)
    monkeypatch.delenv(runtime.CUDA_GRAPHS_VARIABLE, raising=False)
    cpu = runtime.speed_settings("cpu")
    assert (cpu.tf32, cpu.cuda_graphs, cpu.fused_optimizers, cpu.bf16) == (False, False, False, False)
    cuda = runtime.speed_settings(torch.device("cuda"))  # the logic only: a torch.device is not resolved
    assert (cuda.tf32, cuda.cuda_graphs, cuda.fused_optimizers, cuda.bf16) == (True, True, True, False)
    monkeypatch.setenv(runtime.CUDA_GRAPHS_VARIABLE, "0")
    monkeypatch.setenv(runtime.TF32_VARIABLE, "off")
    cuda = runtime.speed_settings(torch.device("cuda"))
    assert (cuda.tf32, cuda.cuda_graphs) == (False, False)
    assert runtime.speed_settings(torch.device("cuda"), cuda_graphs=True).cuda_graphs  # an argument wins
    monkeypatch.setenv(runtime.CUDA_GRAPHS_VARIABLE, "1")
    assert runtime.speed_settings("cpu") == cpu  # the variables are not read on the CPU


def test_speed_switches_refuse_what_they_cannot_do(monkeypatch):
    with pytest.raises(ValueError, match="need a CUDA device"):
        runtime.speed_settings("cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="must be a bool"):
        runtime.speed_settings("cpu", tf32=1)
    monkeypatch.setenv(runtime.CUDA_GRAPHS_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="ROBUST_UTILS_CUDA_GRAPHS='maybe' is not understood"):
        runtime.speed_settings(torch.device("cuda"))


def test_setup_on_the_cpu_leaves_the_tf32_flags_alone():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert runtime.setup(0, "cpu", None).type == "cpu"
    runtime.apply_speed_settings(runtime.speed_settings("cpu"))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_repeat_step_is_the_eager_loop_off_cuda():
    x = torch.rand(4, 3)
    calls = []

    def step(t):
        calls.append(1)
        return 0.5 * t + 1

    expected = x
    for _ in range(5):
        expected = 0.5 * expected + 1
    assert torch.equal(runtime.repeat_step(step, x, 5), expected) and len(calls) == 5
    assert runtime.repeat_step(step, x, 0) is x
    assert not runtime.use_cuda_graphs(x, 100)
    with pytest.raises(ValueError, match="CUDA graphs need x on a CUDA device"):
        runtime.repeat_step(step, x, 5, graphs=True)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        runtime.repeat_step(step, x, -1)
