"""Checkpoints that are never lost and never trusted blindly (issue 19 points 1, 2, 8; issue 21 point 3):
safe loading with one clear error, a corrupt cache entry moved aside, a read-only cache refused before
training (as a capability-dropped process), rescue when saving fails, threads in the key, checkpoints
from another device only when allowed, and an interrupted fit that resumes exactly."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import traceback
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.core import checkpoint_io, store
from robust_utils.core.checkpoint_io import CacheNotWritableError, CheckpointError, CheckpointWarning
from robust_utils.core.paths import project_root
from robust_utils.training import fit


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Cache and bundle folders in tmp_path (via the environment), no any-device permission, an empty ledger."""
    d = {name: tmp_path / name for name in ("cache", "bundle")}
    monkeypatch.setenv("ROBUST_UTILS_CACHE", str(d["cache"]))
    monkeypatch.setenv("ROBUST_UTILS_CHECKPOINTS", str(d["bundle"]))
    monkeypatch.delenv(store.ANY_DEVICE_VARIABLE, raising=False)
    store.forget_used_checkpoints()
    return d


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 1, 2, 2, generator=g), torch.randint(0, 3, (40,), generator=g)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


def _fit(model=None, **kw):
    args = dict(epochs=2, batch_size=10, seed=1, progress=False, desc="tiny")
    args.update(kw)
    return fit(model or _model(), *_data(), **args)


class Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(folder, marker):
    """{kind: path} for a truncated checkpoint, random bytes, an empty file and two hostile pickles."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "history": {}}, good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "random": os.urandom(3000), "empty": b"",
             "hostile-pickle": pickle.dumps({"state_dict": Evil(marker)})}
    out = {}
    for name, blob in files.items():
        (folder / f"{name}.pt").write_bytes(blob)
        out[name] = folder / f"{name}.pt"
    torch.save({"state_dict": {}, "history": Evil(marker)}, folder / "hostile-torch.pt")
    out["hostile-torch"] = folder / "hostile-torch.pt"
    return out


def _never_advises_unsafe_loading(err):
    text = "".join(traceback.format_exception(err))
    assert "weights_only=False" not in text and "set to `False`" not in text and "will likely succeed" not in text


# --------------------------------------------------------------------------- 19.2: loading


@pytest.mark.parametrize("name, kind", [("truncated", "corrupt"), ("random", "corrupt"), ("empty", "corrupt"),
                                        ("hostile-pickle", "untrusted"), ("hostile-torch", "untrusted")])
def test_every_load_failure_is_one_error_naming_file_and_kind(tmp_path, name, kind):
    marker = tmp_path / "PWNED"
    path = _bad_files(tmp_path / "files", marker)[name]
    with pytest.raises(CheckpointError) as e:
        checkpoint_io.load_checkpoint(path)
    assert e.value.kind == kind and e.value.path == path
    assert str(path) in str(e.value) and f"is {kind}" in str(e.value)
    _never_advises_unsafe_loading(e.value)
    assert not marker.exists()  # nothing in the file ran


def test_untrusted_names_the_foreign_object_and_a_good_file_loads(tmp_path):
    files = _bad_files(tmp_path / "files", tmp_path / "PWNED")
    with pytest.raises(CheckpointError, match="posix.system|nt.system"):
        checkpoint_io.load_checkpoint(files["hostile-torch"])
    ckpt = checkpoint_io.load_checkpoint(tmp_path / "files" / "good.pt", required=("state_dict", "history"))
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match="not a checkpoint of this kind.*'config'") as e:
        checkpoint_io.load_checkpoint(tmp_path / "files" / "good.pt", required=("state_dict", "config"))
    assert e.value.kind == "corrupt"
    with pytest.raises(CheckpointError, match="unreadable") as e:
        checkpoint_io.load_checkpoint(tmp_path / "files")  # a folder: the operating system refuses to read it
    assert e.value.kind == "unreadable"


def test_pickle_inspection_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(Evil(marker))
    assert "posix.system" in checkpoint_io.pickle_globals(blob) or "nt.system" in checkpoint_io.pickle_globals(blob)
    assert checkpoint_io.pickle_globals(blob[:-3]) is None  # incomplete: not a pickle stream
    assert checkpoint_io.pickle_stream(b"PK\x03\x04garbage") is None
    assert not marker.exists()


@pytest.mark.parametrize("name", ["truncated", "random", "hostile-torch"])
def test_a_bad_cache_entry_is_moved_aside_and_retrained(dirs, tmp_path, name):
    marker = tmp_path / "PWNED"
    first = _fit()
    shutil.copy(_bad_files(tmp_path / "files", marker)[name], first.path)
    with pytest.warns(CheckpointWarning, match="moved aside") as w:
        again = _fit()
    assert str(first.path) in str(w[0].message)
    assert not again.from_cache and again.path == first.path and not marker.exists()
    rejected = [p for p in dirs["cache"].iterdir() if ".rejected-" in p.name]
    assert len(rejected) == 1 and rejected[0].name.startswith(first.path.name)
    assert _fit().from_cache  # the retrained checkpoint is good
    for p, q in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)


def _bundle_with(dirs, key, data, profile="smoke"):
    import hashlib

    dirs["bundle"].mkdir(parents=True, exist_ok=True)
    (dirs["bundle"] / f"{key}.pt").write_bytes(data)
    (dirs["bundle"] / "manifest.json").write_text(json.dumps({
        "format": 1, "profile": profile, "checkpoints": {key: {"sha256": hashlib.sha256(data).hexdigest()}}}))
    return dirs["bundle"] / f"{key}.pt"


@pytest.mark.parametrize("name", ["random", "hostile-torch"])
def test_a_bad_bundle_file_stops_with_the_file_named(dirs, tmp_path, name):
    """A bundle file whose sha256 matches its manifest but which is corrupt or hostile: a clear stop,
    with the fix for the bundle's own profile (not always 'classroom')."""
    marker = tmp_path / "PWNED"
    key = _fit(cache_enabled=False).key
    path = _bundle_with(dirs, key, _bad_files(tmp_path / "files", marker)[name].read_bytes())
    with pytest.raises(store.BundleError) as e:
        _fit()
    msg = str(e.value)
    assert str(path) in msg and ("untrusted" if name.startswith("hostile") else "corrupt") in msg
    assert "--profile smoke" in msg and "classroom" not in msg
    _never_advises_unsafe_loading(e.value)
    assert not marker.exists() and path.is_file()  # the bundle is not touched
    assert not (dirs["cache"] / f"{key}.pt").exists()  # nothing trained


def test_bundle_fix_text_names_the_bundles_profile(dirs):
    path = _bundle_with(dirs, "b" * 20 + "-cpu", b"x", profile="paper")
    path.write_bytes(b"y")  # sha256 no longer matches
    with pytest.raises(store.BundleError, match="--profile paper") as e:
        store.find_in_bundle("b" * 20 + "-cpu")
    assert "classroom" not in str(e.value)
    assert "--profile PROFILE" in store.how_to_get(None) and "--profile smoke" in store.how_to_get("smoke")


# --------------------------------------------------------------------------- 19.8 and 21.3: keys


def test_threads_are_part_of_the_key(dirs):
    """A cache warmed with one thread count never feeds a CPU run with another, not even with any_device."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _fit()
        torch.set_num_threads(2)
        two = _fit(any_device=True)
    finally:
        torch.set_num_threads(before)
    assert one.config["threads"] == 1 and two.config["threads"] == 2
    assert one.key.endswith("-cpu-t1") and two.key.endswith("-cpu-t2")
    assert one.key.split("-")[0] == two.key.split("-")[0]  # same identity, another placement
    assert not two.from_cache and not two.other_device


def test_key_form_and_helpers():
    cuda = store.checkpoint_key({"a": 1, "device": "cuda", "threads": 16})
    identity, device, threads = store.split_key(cuda)
    assert device == "cuda" and threads is None and len(identity) == 20
    assert store.checkpoint_key({"a": 1, "device": "cuda", "threads": 2}) == cuda  # CUDA weights ignore CPU threads
    assert store.checkpoint_key({"a": 1, "device": "cpu", "threads": 2}) == f"{identity}-cpu-t2"
    assert store.split_key(f"{identity}-cpu-t2") == (identity, "cpu", 2)
    assert store.checkpoint_key({"a": 2, "device": "cpu", "threads": 2}).split("-")[0] != identity
    for bad in ("0" * 20, f"{identity}-cpu", f"{identity}-cpu-t2.partial", f"{identity}-cuda-t2", "x-cpu-t1"):
        assert store.split_key(bad) is None, bad
    with pytest.raises(ValueError, match="device"):
        store.checkpoint_key({"a": 1})
    with pytest.raises(ValueError, match="threads"):
        store.checkpoint_key({"a": 1, "device": "cpu"})


def test_other_device_candidates_are_other_device_types_only(dirs):
    identity = "c" * 20
    dirs["cache"].mkdir()
    for name in ("cpu-t2", "cpu-t4", "cuda", "cpu-t2.partial", "mps"):
        (dirs["cache"] / f"{identity}-{name}.pt").write_bytes(b"x")
    (dirs["cache"] / f"{'d' * 20}-cuda.pt").write_bytes(b"x")  # another identity

    def offered(key):
        return [k for k, _, source in store.other_device_candidates(key)]

    assert offered(f"{identity}-cpu-t2") == [f"{identity}-cuda", f"{identity}-mps"]  # never cpu-t4
    assert offered(f"{identity}-cuda") == [f"{identity}-cpu-t2", f"{identity}-cpu-t4", f"{identity}-mps"]
    assert offered("not-a-key") == []


@pytest.mark.parametrize("value, allowed", [(None, False), ("", False), ("0", False), ("no", False), ("1", True),
                                            ("true", True), ("YES", True)])
def test_any_device_permission_from_the_environment(monkeypatch, value, allowed):
    if value is None:
        monkeypatch.delenv(store.ANY_DEVICE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(store.ANY_DEVICE_VARIABLE, value)
    assert store.any_device_allowed() is allowed
    assert store.any_device_allowed(True) is True and store.any_device_allowed(False) is False


def test_a_bad_any_device_value_is_refused_before_training(dirs, monkeypatch):
    monkeypatch.setenv(store.ANY_DEVICE_VARIABLE, "maybe")
    with pytest.raises(ValueError, match=store.ANY_DEVICE_VARIABLE):
        _fit()
    with pytest.raises(ValueError, match="any_device"):
        _fit(any_device="yes")
    assert not dirs["cache"].exists()


def _as_if_trained_on_cuda(result):
    """Rewrite a CPU checkpoint as the same configuration trained on CUDA (key suffix and metadata)."""
    ckpt = torch.load(result.path, weights_only=True)
    ckpt["config"].update(device="cuda", threads=16)
    ckpt["meta"].update(device="cuda:0", device_type="cuda", device_name="NVIDIA H200")
    cuda_key = store.checkpoint_key(ckpt["config"])
    store.save_checkpoint(store.checkpoint_path(cuda_key), ckpt)
    result.path.unlink()
    return cuda_key


def test_a_checkpoint_from_another_device_loads_only_when_allowed(dirs, monkeypatch):
    trained = _fit()
    assert trained.trained_on == "cpu" and not trained.other_device
    assert torch.load(trained.path, weights_only=True)["meta"]["device_type"] == "cpu"
    cuda_key = _as_if_trained_on_cuda(trained)
    assert cuda_key != trained.key and cuda_key.endswith("-cuda")

    allowed = _fit(any_device=True)
    assert allowed.from_cache and allowed.other_device and allowed.trained_on == "cuda"
    assert allowed.key == cuda_key and allowed.config["device"] == "cuda" and allowed.config["threads"] == 16
    assert store.checkpoint_key(allowed.config) == cuda_key
    assert allowed.record() == {"key": cuda_key, "from_cache": True, "trained_on": "cuda", "other_device": True,
                                "resumed_from": 0}
    for p, q in zip(trained.model.parameters(), allowed.model.parameters()):
        assert torch.equal(p, q)
    assert store.used_checkpoints()[-1] == cuda_key

    monkeypatch.setenv(store.ANY_DEVICE_VARIABLE, "1")
    assert _fit().other_device  # the runner's variable allows it too
    monkeypatch.delenv(store.ANY_DEVICE_VARIABLE)
    refused = _fit()  # not allowed: trained here
    assert not refused.from_cache and not refused.other_device and refused.key == trained.key
    assert store.checkpoint_path(cuda_key).is_file()  # the CUDA checkpoint is left alone
    assert not _fit(any_device=True).other_device  # this device's own checkpoint comes first


def test_another_devices_checkpoint_in_the_bundle(dirs):
    trained = _fit()
    cuda_key = _as_if_trained_on_cuda(trained)
    _bundle_with(dirs, cuda_key, store.checkpoint_path(cuda_key).read_bytes())
    store.checkpoint_path(cuda_key).unlink()
    assert not _fit(any_device=False, cache_enabled=True).other_device
    store.checkpoint_path(trained.key).unlink()
    found = _fit(any_device=True)
    assert found.from_cache and found.other_device and found.path == dirs["bundle"] / f"{cuda_key}.pt"


# --------------------------------------------------------------------------- 21.3: resume


class Interrupt(Exception):
    pass


class Counter:
    """A stateful callback: counts its calls (state_dict), reports the count, and raises at ``stop_at``."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at, self.epochs_seen = 0, stop_at, []

    def __call__(self, epoch, model):
        self.calls += 1
        self.epochs_seen.append(epoch)
        if epoch == self.stop_at:
            raise Interrupt(f"stopped at epoch {epoch}")
        return {"calls": self.calls}

    def cache_key(self):
        return {"hook": "counter"}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


class CountingCE:
    """A stateful objective: cross-entropy, plus a running batch count it reports per epoch."""

    def __init__(self):
        self.batches = 0

    def __call__(self, model, x, y):
        self.batches += 1
        return F.cross_entropy(model(x), y)

    def cache_key(self):
        return {"name": "counting_ce"}

    def reset(self):
        self.batches = 0

    def end_epoch(self, epoch):
        return {"batches": float(self.batches)}

    def state_dict(self):
        return {"batches": torch.tensor(self.batches)}

    def load_state_dict(self, state):
        self.batches = int(state["batches"])


def _resumable(cache_dir, callback, **kw):
    return _fit(epochs=4, optimizer={"name": "adam", "lr": 0.05}, lr_schedule={"step_size": 1, "gamma": 0.5},
                objective=CountingCE(), callbacks=[callback], cache_dir=cache_dir, **kw)


def test_an_interrupted_fit_resumes_exactly(dirs, tmp_path):
    whole = _resumable(tmp_path / "other", Counter())
    assert whole.resumed_from == 0 and not (tmp_path / "other" / f"{whole.key}{store.PARTIAL_SUFFIX}").exists()

    with pytest.raises(Interrupt) as e:
        _resumable(dirs["cache"], Counter(stop_at=3))
    partial = store.partial_path(whole.key)
    assert partial.is_file() and not store.checkpoint_path(whole.key).exists()
    assert torch.load(partial, weights_only=True)["epoch"] == 2
    assert any("epochs 1-2 of 4" in n and str(partial) in n and "resumes from epoch 3" in n
               for n in e.value.__notes__)

    counter = Counter()
    resumed = _resumable(dirs["cache"], counter)
    assert resumed.resumed_from == 2 and not resumed.from_cache and counter.epochs_seen == [3, 4]
    assert resumed.history == whole.history  # loss, the objective's and the callback's state all continued
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert not partial.exists() and store.checkpoint_path(whole.key).is_file()  # the final replaced it
    assert _resumable(dirs["cache"], Counter()).from_cache


def test_a_corrupt_epoch_checkpoint_is_moved_aside_and_training_restarts(dirs):
    with pytest.raises(Interrupt):
        _resumable(dirs["cache"], Counter(stop_at=2))
    partial = next(dirs["cache"].glob(f"*{store.PARTIAL_SUFFIX}"))
    partial.write_bytes(partial.read_bytes()[:100])
    counter = Counter()
    with pytest.warns(CheckpointWarning, match="moved aside"):
        r = _resumable(dirs["cache"], counter)
    assert r.resumed_from == 0 and counter.epochs_seen == [1, 2, 3, 4]


def test_without_cache_nothing_is_saved_per_epoch(dirs, tmp_path):
    with pytest.raises(Interrupt) as e:
        _resumable(dirs["cache"], Counter(stop_at=3), cache_enabled=False)
    assert not dirs["cache"].exists() and not getattr(e.value, "__notes__", [])


# --------------------------------------------------------------------------- 19.1: a read-only cache

CHILD = textwrap.dedent("""
    import json, os, sys, warnings
    from pathlib import Path
    import torch
    from torch import nn
    from robust_utils.core.checkpoint_io import CacheNotWritableError
    from robust_utils.training import fit

    cache = Path(os.environ["ROBUST_UTILS_CACHE"])
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 2, 2, generator=g), torch.randint(0, 3, (40,), generator=g)
    out = {}

    class Calls:
        def __init__(self, lock_at=None):
            self.epochs, self.lock_at = [], lock_at
        def __call__(self, epoch, model):
            self.epochs.append(epoch)
            if epoch == self.lock_at:
                cache.chmod(0o555)  # the cache turns read-only while training
            return {}
        def cache_key(self):
            return {"hook": "calls"}

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    cache.chmod(0o555)
    out["can_write_readonly"] = os.access(cache, os.W_OK)
    calls = Calls()
    try:
        fit(model(), x, y, epochs=3, batch_size=10, progress=False, callbacks=[calls])
        out["before"] = "trained"
    except CacheNotWritableError as exc:
        out["before"] = str(exc)
    out["before_epochs"] = calls.epochs

    cache.chmod(0o755)
    calls = Calls(lock_at=1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = fit(model(), x, y, epochs=3, batch_size=10, progress=False, callbacks=[calls])
    out["after_epochs"] = calls.epochs
    out["warnings"] = [str(m.message) for m in w]
    out["path"] = str(r.path)
    out["cache_files"] = sorted(p.name for p in cache.iterdir())
    saved = torch.load(r.path, weights_only=True)["state_dict"]
    out["same_weights"] = all(torch.equal(saved[k], v) for k, v in r.model.state_dict().items())
    print(json.dumps(out))
""")


def _unprivileged(cmd):
    """``cmd`` as a process that file permissions bind: as is for a normal user; for root, with every
    capability dropped (setpriv), so that root obeys the owner's permission bits like anyone."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root: this test needs setpriv (util-linux) to drop root's capabilities")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", *cmd]


def test_a_read_only_cache_is_refused_before_training_and_a_late_failure_is_rescued(tmp_path):
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    cache.mkdir()
    tmp.mkdir()
    env = {**os.environ, "ROBUST_UTILS_CACHE": str(cache), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(project_root()), "ROBUST_UTILS_CHECKPOINTS": str(tmp_path / "no-bundle")}
    proc = subprocess.run(_unprivileged([sys.executable, "-c", CHILD]), env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["can_write_readonly"]  # the child really was bound by the permission bits

    assert out["before_epochs"] == []  # refused before any training
    assert str(cache) in out["before"] and "ROBUST_UTILS_CACHE" in out["before"] and "not writable" in out["before"]

    rescued = tmp / checkpoint_io.RESCUE_FOLDER
    assert out["after_epochs"] == [1, 2, 3] and out["path"].startswith(str(rescued)) and out["same_weights"]
    assert out["cache_files"] == []  # nothing half-written in the cache
    final = [m for m in out["warnings"] if "saved to" in m]
    assert len(final) == 1 and out["path"] in final[0] and str(cache) in final[0] and "mv " in final[0]
    assert sum("could not save the state of epoch" in m for m in out["warnings"]) == 1  # warned once


def test_ensure_writable_and_save_or_rescue_in_process(tmp_path, monkeypatch):
    assert checkpoint_io.ensure_writable(tmp_path / "new" / "folder").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheNotWritableError, match="not writable.*ROBUST_UTILS_CACHE") as e:
        checkpoint_io.ensure_writable(blocker / "sub")  # a file where a folder should be
    assert e.value.folder == blocker / "sub"
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with pytest.warns(CheckpointWarning, match="saved to"):
        path = checkpoint_io.save_or_rescue(blocker / "sub" / "k.pt", {"a": torch.ones(1)})
    assert path == tmp_path / "tmp" / checkpoint_io.RESCUE_FOLDER / "k.pt"
    assert torch.equal(checkpoint_io.load_checkpoint(path)["a"], torch.ones(1))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint_io, "rescue_dirs", lambda: [blocker / "a", blocker / "b"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert checkpoint_io.save_or_rescue(blocker / "sub" / "k.pt", {"a": torch.ones(1)}) is None
    assert "exists only in this process" in str(w[-1].message)
