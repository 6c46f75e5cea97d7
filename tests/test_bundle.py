"""The classroom checkpoint bundle: fit records its keys, export copies them, fit loads them back verified."""

import hashlib
import json

import pytest
import torch
from torch import nn

from robust_utils.app.bundle import BundleError, export_bundle
from robust_utils.app.cli import main
from robust_utils.app.results import Results
from robust_utils.core import store
from robust_utils.core.store import used_checkpoints
from robust_utils.training import fit


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Cache, figures and bundle folders in tmp_path (via the environment) and an empty registry."""
    d = {name: tmp_path / name for name in ("cache", "figures", "bundle")}
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(d["cache"]))
    monkeypatch.setenv("ROBUST_UTILS_FIGURES", str(d["figures"]))
    monkeypatch.setenv("ROBUST_UTILS_CHECKPOINTS", str(d["bundle"]))
    store.forget_used_checkpoints()
    return d


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 1, 2, 2, generator=g), torch.randint(0, 3, (40,), generator=g)


def _fit(**kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = _data()
    return fit(model, x, y, epochs=2, batch_size=10, seed=1, progress=False, desc="tiny", **kw)


def _results_json(figures, profile, notebook, keys):
    path = figures / profile / notebook / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"notebook": notebook, "checkpoints": keys}))
    return path


def _export_one(dirs):
    """Train once into the cache, record it for figures/classroom/nb, export, then empty the store."""
    first = _fit()
    _results_json(dirs["figures"], "classroom", "nb", [first.key])
    manifest = export_bundle("classroom")
    first.path.unlink()
    return first, manifest


def test_fit_records_its_key_and_results_json_lists_it(dirs):
    first = _fit()
    assert not first.from_cache and used_checkpoints() == [first.key]
    assert _fit().from_cache and used_checkpoints() == [first.key]  # a cache hit counts once
    _fit(cache_enabled=False)
    assert used_checkpoints() == [first.key]  # no cache, no checkpoint
    path = Results("nb", "smoke", "t", {}).save()
    assert json.loads(path.read_text())["checkpoints"] == [first.key]


def test_export_then_fit_loads_from_the_bundle_without_training(dirs):
    first, manifest_path = _export_one(dirs)
    assert manifest_path == dirs["bundle"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == 1 and manifest["profile"] == "classroom" and manifest["torch"] == torch.__version__
    data = (dirs["bundle"] / f"{first.key}.pt").read_bytes()
    assert manifest["checkpoints"] == {first.key: {"sha256": hashlib.sha256(data).hexdigest(),
                                                   "bytes": len(data), "notebooks": ["nb"]}}
    assert list(dirs["cache"].iterdir()) == []

    store.forget_used_checkpoints()
    calls = []
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    model.register_forward_hook(lambda *a: calls.append(1))
    second = fit(model, *_data(), epochs=2, batch_size=10, seed=1, progress=False)
    assert second.from_cache and second.key == first.key and calls == []
    assert second.path == dirs["bundle"] / f"{first.key}.pt"
    assert second.history == first.history
    for p, q in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(p, q)
    assert list(dirs["cache"].iterdir()) == []  # the bundle is not copied into the cache
    assert used_checkpoints() == [first.key]

    assert export_bundle("classroom", cache_dir=dirs["bundle"]) == manifest_path  # up-to-date file: skipped


def test_export_to_explicit_out_and_figures_dir(dirs, tmp_path):
    first = _fit()
    _results_json(tmp_path / "elsewhere", "smoke", "a", [first.key])
    _results_json(tmp_path / "elsewhere", "smoke", "b", [first.key])
    manifest = export_bundle("smoke", figures_dir=tmp_path / "elsewhere", out=tmp_path / "out")
    assert manifest == tmp_path / "out" / "manifest.json" and (tmp_path / "out" / f"{first.key}.pt").is_file()
    assert json.loads(manifest.read_text())["checkpoints"][first.key]["notebooks"] == ["a", "b"]
    assert store.find_in_bundle(first.key) is None  # the default bundle folder holds nothing


def test_a_flipped_byte_is_refused_with_file_and_checksum(dirs):
    first, manifest = _export_one(dirs)
    expected = json.loads(manifest.read_text())["checkpoints"][first.key]["sha256"]
    path = dirs["bundle"] / f"{first.key}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        _fit()
    assert str(path) in str(e.value) and expected in str(e.value) and "export-checkpoints" in str(e.value)


def test_a_missing_bundle_file_is_refused(dirs):
    first, manifest = _export_one(dirs)
    expected = json.loads(manifest.read_text())["checkpoints"][first.key]["sha256"]
    path = dirs["bundle"] / f"{first.key}.pt"
    path.unlink()
    with pytest.raises(BundleError) as e:
        store.find_in_bundle(first.key)
    assert str(path) in str(e.value) and expected in str(e.value) and "teacher" in str(e.value)


def test_a_corrupt_manifest_is_named(dirs):
    _, manifest = _export_one(dirs)
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="manifest") as e:
        store.find_in_bundle("0" * 20)
    assert str(manifest) in str(e.value)


def test_no_manifest_or_unlisted_key_is_none(dirs):
    assert store.find_in_bundle("0" * 20) is None
    _export_one(dirs)
    assert store.find_in_bundle("0" * 20) is None


def test_export_errors(dirs):
    with pytest.raises(BundleError, match="unknown profile 'nope'.*classroom"):
        export_bundle("nope")
    with pytest.raises(BundleError, match="run --profile classroom"):
        export_bundle("classroom")
    old = _results_json(dirs["figures"], "classroom", "old", ["x"])
    old.write_text(json.dumps({"notebook": "old"}))
    with pytest.raises(BundleError, match="predates checkpoint recording") as e:
        export_bundle("classroom")
    assert str(old) in str(e.value)
    old.unlink()

    first = _fit()
    _results_json(dirs["figures"], "classroom", "nb", [first.key, "f" * 20])
    with pytest.raises(BundleError, match="f{20} \\(notebook nb\\)") as e:
        export_bundle("classroom")
    assert str(dirs["cache"] / ("f" * 20 + ".pt")) in str(e.value)
    assert not dirs["bundle"].exists()  # nothing written


class Payload:
    """Not a tensor or a plain type: weights_only=True refuses to unpickle it."""


def test_a_checkpoint_with_arbitrary_objects_is_refused(dirs):
    key = "a" * 20
    store.checkpoint_path(key).parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "history": Payload()}, store.checkpoint_path(key))
    _results_json(dirs["figures"], "classroom", "nb", [key])
    with pytest.raises(BundleError, match="weights_only=True") as e:
        export_bundle("classroom")
    assert "untrusted" in str(e.value) and "weights_only=False" not in str(e.value)
    assert not (dirs["bundle"] / "manifest.json").exists()


def test_cli_unknown_profile_exits_2(dirs, capsys):
    assert main(["export-checkpoints", "--profile", "nope"]) == 2
    assert "error: unknown profile 'nope'" in capsys.readouterr().err
