"""robust_utils.training.fit: learning, determinism, and the checkpoint store (corrupt, hostile, read-only,
resumed and other-device checkpoints: tests/test_store.py)."""

import pytest
import torch

from robust_utils.core import io
from robust_utils import evaluation
from robust_utils.nn.models import build_model
from robust_utils.training import fit


def _fit(x, y, tmp_path, **kw):
    model = build_model("mlp", seed=0, device="cpu", widths=(64,))
    args = dict(loss="ce", optimizer={"name": "adam", "lr": 0.003}, epochs=2, batch_size=100, seed=1,
                cache_dir=tmp_path, progress=False)
    args.update(kw)
    return fit(model, x, y, **args)


def test_fit_learns_and_is_deterministic(mnist_train, mnist_test, tmp_path):
    x, y = mnist_train
    a = _fit(x, y, tmp_path, cache_enabled=False)
    b = _fit(x, y, tmp_path, cache_enabled=False)
    assert not a.model.training
    assert evaluation.accuracy(a.model, *mnist_test) > 0.8
    assert a.history["loss"][1] < a.history["loss"][0]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert list(tmp_path.iterdir()) == []  # cache disabled: nothing written


def test_hr_loss_trains_too(mnist_train, mnist_test, tmp_path):
    r = _fit(*mnist_train, tmp_path, loss="hr", loss_kwargs={"alpha": 1.6}, cache_enabled=False)
    assert evaluation.accuracy(r.model, *mnist_test) > 0.7


def test_cache_hit_skips_training(mnist_train, tmp_path):
    x, y = mnist_train
    x_val, y_val = x[:100], y[:100]
    monitor = evaluation.RobustAccuracyMonitor(x_val, y_val, [0.0, 0.1])
    first = _fit(x, y, tmp_path, callbacks=[monitor])
    assert not first.from_cache and first.path.is_file()
    assert len(first.history["val_acc@eps=0.1"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # atomic write left no temp file

    calls = []
    model = build_model("mlp", seed=0, device="cpu", widths=(64,))
    model.register_forward_hook(lambda *a: calls.append(1))
    second = fit(model, x, y, loss="ce", optimizer={"name": "adam", "lr": 0.003}, epochs=2, batch_size=100, seed=1,
                 callbacks=[monitor], cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.key == first.key and calls == []
    assert second.history == first.history
    for p, q in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("change", [dict(seed=2), dict(epochs=1), dict(optimizer={"name": "adam", "lr": 0.001}),
                                    dict(loss="hr"), dict(batch_size=50)])
def test_any_config_change_changes_the_key(mnist_train, tmp_path, change):
    x, y = mnist_train[0][:200], mnist_train[1][:200]
    base = _fit(x, y, tmp_path)
    other = _fit(x, y, tmp_path, **change)
    assert other.key != base.key and not other.from_cache


def test_data_and_init_are_part_of_the_key(mnist_train, tmp_path):
    x, y = mnist_train[0][:200], mnist_train[1][:200]
    base = _fit(x, y, tmp_path)
    assert _fit(x[:100], y[:100], tmp_path).key != base.key
    model = build_model("mlp", seed=7, device="cpu", widths=(64,))
    other = fit(model, x, y, loss="ce", optimizer={"name": "adam", "lr": 0.003}, epochs=2, batch_size=100, seed=1,
                cache_dir=tmp_path, progress=False)
    assert other.key != base.key


def test_checkpoint_loads_with_weights_only(mnist_train, tmp_path):
    r = _fit(mnist_train[0][:200], mnist_train[1][:200], tmp_path)
    ckpt = torch.load(r.path, weights_only=True)
    assert set(ckpt) == {"state_dict", "history", "config", "meta"} and ckpt["config"]["seed"] == 1
    assert ckpt["meta"]["device_type"] == "cpu" and ckpt["meta"]["threads"] == torch.get_num_threads()
    assert r.key.endswith(f"-cpu-t{torch.get_num_threads()}") and r.trained_on == "cpu" and not r.other_device and r.resumed_from == 0


@pytest.mark.parametrize("kw, match", [
    (dict(epochs=0), "epochs must be a positive int"),
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(optimizer={"name": "rmsprop", "lr": 0.1}), "unknown optimizer 'rmsprop'"),
    (dict(optimizer={"name": "sgd"}), "positive 'lr'"),
    (dict(optimizer={"name": "sgd", "lr": 0.1, "betas": (0.9, 0.99)}), "unknown argument"),
    (dict(loss="mse"), "unknown loss 'mse'"),
])
def test_bad_configuration_raises_before_training(mnist_train, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _fit(*mnist_train, tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []


def test_callback_without_cache_key_is_refused(mnist_train, tmp_path):
    with pytest.raises(ValueError, match="cache_key"):
        _fit(*mnist_train, tmp_path, callbacks=[lambda epoch, model: {}])


def test_atomic_write_json_replaces_whole_file(tmp_path):
    p = io.atomic_write_json(tmp_path / "r.json", {"a": 1})
    io.atomic_write_json(p, {"b": torch.tensor([1.5])})
    assert p.read_text().strip().startswith("{") and '"b"' in p.read_text() and '"a"' not in p.read_text()
    assert [q.name for q in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    """Not the owner-only 0o600 of the temporary file: figures and reports are meant to be shared."""
    import os

    old = os.umask(0o022)
    try:
        p = io.atomic_write_bytes(tmp_path / "f.png", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_pni_alpha_is_excluded_from_weight_decay():
    """Rakin et al. 2019 (PNI; their code github.com/elliothe/CVPR_2019_PNI): the noise scales alpha get no
    weight decay, the weights do."""
    from robust_utils.nn.pni import PNILinear
    from robust_utils.training.loop import make_optimizer, param_groups

    model = torch.nn.Sequential(torch.nn.Flatten(), PNILinear(4, 3))
    opt = make_optimizer(param_groups(model, {"weight_decay": 0.1}), {"name": "sgd", "lr": 1.0, "weight_decay": 0.1})
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    lin = model[1]
    assert decay[id(lin.alpha)] == 0.0 and decay[id(lin.weight)] == 0.1 and decay[id(lin.bias)] == 0.1
    # with zero gradient, one SGD step shrinks the weights by lr * wd and leaves alpha alone
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before_w, before_a = lin.weight.detach().clone(), lin.alpha.detach().clone()
    opt.step()
    torch.testing.assert_close(lin.weight.detach(), before_w * 0.9)
    assert torch.equal(lin.alpha.detach(), before_a)
    # without weight decay, or without flagged parameters, the plain parameter iterator
    assert not isinstance(param_groups(model, {}), list)
    assert not isinstance(param_groups(torch.nn.Linear(2, 2), {"weight_decay": 0.1}), list)


def test_per_sample_targets_reach_the_loss_and_the_cache_key(tmp_path):
    """fit(targets=...) hands targets[idx] to the loss instead of y[idx] (soft labels), and a change
    of targets changes the checkpoint key."""
    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 3, (40,))
    soft = torch.nn.functional.one_hot(y, 3).float() * 0.8 + 0.2 / 3

    def build():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))

    seen = []
    from robust_utils.core import losses

    def spy(logits, t):
        seen.append(t)
        return losses.soft_cross_entropy(logits, t)

    losses.LOSSES["_spy"] = spy
    try:
        r1 = fit(build(), x, y, loss="_spy", targets=soft, epochs=1, batch_size=10, cache_dir=tmp_path, progress=False)
    finally:
        del losses.LOSSES["_spy"]
    assert all(t.dtype == torch.float32 and t.shape == (10, 3) for t in seen)
    assert torch.allclose(torch.cat(seen).sum(1), torch.ones(40))
    r2 = fit(build(), x, y, loss="soft_ce", targets=soft, epochs=1, batch_size=10, cache_dir=tmp_path, progress=False)
    r3 = fit(build(), x, y, loss="soft_ce", targets=soft.flip(1), epochs=1, batch_size=10, cache_dir=tmp_path,
             progress=False)
    assert r2.key != r3.key and "targets" in r2.config and "targets" not in fit(
        build(), x, y, epochs=1, batch_size=10, cache_dir=tmp_path, progress=False).config
    with pytest.raises(ValueError, match="one row per sample"):
        fit(build(), x, y, loss="soft_ce", targets=soft[:5], cache_dir=tmp_path, progress=False)
    assert r1.history["loss"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimisers_are_never_fused_on_the_cpu(name):
    """Fused kernels would move the classroom numbers: on the CPU every optimiser is the plain one,
    and a spec that asks for fused keeps its own choice."""
    from robust_utils.training.loop import make_optimizer

    model = torch.nn.Linear(3, 2)
    assert not make_optimizer(model.parameters(), {"name": name, "lr": 0.1}).defaults.get("fused")
    assert make_optimizer(model.parameters(), {"name": name, "lr": 0.1, "fused": False}).defaults["fused"] is False


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimisers_are_fused_on_cuda(name):
    """runtime.speed_settings("cuda").fused_optimizers: one kernel per step for all parameters (issue 21)."""
    from robust_utils.training.loop import make_optimizer

    model = torch.nn.Linear(3, 2).cuda()
    assert make_optimizer(model.parameters(), {"name": name, "lr": 0.1}).defaults["fused"] is True
    groups = [{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}]
    assert make_optimizer(groups, {"name": name, "lr": 0.1}).defaults["fused"] is True
