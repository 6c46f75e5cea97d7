"""python -m robust_utils download: pooch fetches from a loopback server, checksums, nothing partial left.

Every test serves fixture files it writes from an http.server on 127.0.0.1 and passes its URL as
the mirror; the official locations are never contacted (one test checks they are the ones asked
for, with the fetch itself replaced).
"""

import functools
import hashlib
import http.server
import io
import pickle
import shutil
import socket
import tarfile
import threading

import numpy as np
import pytest
import scipy.io
import torch

from robust_utils.app.cli import main
from robust_utils.core import data, datafiles, download as dl


class _Server:
    """A loopback HTTP server over a folder, recording the paths requested."""

    def __init__(self, folder):
        self.folder, self.requests = folder, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(dl.MIRROR_VARIABLE, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    s = _Server(folder)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fresh_caches():
    for f in (data._load_mnist, data._load_cifar10, data._load_cifar10_subset, data._load_svhn):
        f.cache_clear()
    yield
    for f in (data._load_mnist, data._load_cifar10, data._load_cifar10_subset, data._load_svhn):
        f.cache_clear()


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_svhn(folder, n_train=5, n_test=3, seed=0):
    """Small .mat files in SVHN's format: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    return arrays


def _patch_manifest(monkeypatch, extra, downloads=None):
    """Patch the checksum registry (in datafiles, and where download.py imported it) for fixture files."""
    table = dict(datafiles.manifest()) | extra
    archives = dict(datafiles.download_manifest()) | (downloads or {})
    for module in (datafiles, dl):
        monkeypatch.setattr(module, "manifest", lambda: table)
        monkeypatch.setattr(module, "download_manifest", lambda: archives)
    return table


def _svhn_manifest(monkeypatch, served, **override):
    md5s = {f"SVHN/{s}_32x32.mat": _md5(served / f"{s}_32x32.mat") for s in ("train", "test")}
    return _patch_manifest(monkeypatch, md5s | override)


def test_svhn_lands_verified_and_loads(server, tmp_path, monkeypatch):
    arrays = _write_svhn(server.folder)
    _svhn_manifest(monkeypatch, server.folder)
    root = tmp_path / "root"
    paths = dl.download(["svhn"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    assert paths == [root / "SVHN" / "train_32x32.mat", root / "SVHN" / "test_32x32.mat"]
    assert sorted(p.name for p in (root / "SVHN").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]
    assert (root / "SVHN" / "train_32x32.mat").stat().st_mode & 0o777 == 0o644
    x, y = data.load_dataset("svhn", "train", root=root)
    xs, ys = arrays["train"]
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [1, 2, 3, 4, 5]
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(xs.transpose(3, 2, 0, 1).copy()))
    # a second download finds both files intact and fetches nothing
    n = len(server.requests)
    dl.download(["svhn"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    assert len(server.requests) == n


def test_wrong_checksum_names_file_and_both_hashes_and_leaves_nothing(server, tmp_path, monkeypatch):
    _write_svhn(server.folder)
    actual = _md5(server.folder / "train_32x32.mat")
    _svhn_manifest(monkeypatch, server.folder, **{"SVHN/train_32x32.mat": "0" * 32})
    root = tmp_path / "root"
    with pytest.raises(data.DataError) as e:
        dl.download(["svhn"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    msg = str(e.value)
    assert f"checksum mismatch for {root / 'SVHN' / 'train_32x32.mat'}" in msg
    assert f"md5 {actual}, expected {'0' * 32}" in msg and "python -m robust_utils download svhn" in msg
    assert not [p for p in root.rglob("*") if p.is_file()]  # no partial or temporary file


def test_a_corrupt_file_in_place_is_replaced(server, tmp_path, monkeypatch):
    _write_svhn(server.folder)
    _svhn_manifest(monkeypatch, server.folder)
    root = tmp_path / "root"
    (root / "SVHN").mkdir(parents=True)
    (root / "SVHN" / "test_32x32.mat").write_bytes(b"truncated")
    dl.download(["svhn"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    assert _md5(root / "SVHN" / "test_32x32.mat") == _md5(server.folder / "test_32x32.mat")


def test_mnist_official_files_land_and_load(server, tmp_path):
    for rel in (r for split in ("train", "test") for r in datafiles.MNIST_FILES[split]):
        shutil.copy(datafiles.data_root() / rel, server.folder)
    root = tmp_path / "root"
    lines = []
    dl.download(["mnist"], root=root, mirror=server.url, retries=0, progressbar=False, log=lines.append)
    assert sorted(server.requests) == sorted("/" + r.split("/")[-1] for r in datafiles.MNIST_FILES["train"]
                                             + datafiles.MNIST_FILES["test"])
    x, y = data.load_dataset("mnist", "test", root=root)
    assert x.shape == (10000, 1, 28, 28) and y[:3].tolist() == [7, 2, 1]
    assert lines and "mnist" in lines[0]


def _fake_batches(n=3, seed=0):
    """Official-format batches (dicts of 'data' (n, 3072) uint8 and 'labels'), pickled."""
    rng = np.random.default_rng(seed)
    out = {}
    for rel in datafiles.CIFAR10_BATCHES["train"] + datafiles.CIFAR10_BATCHES["test"]:
        batch = {"batch_label": rel, "labels": rng.integers(0, 10, n).tolist(),
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        out[rel] = pickle.dumps(batch)
    return out


def _write_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar10_archive_is_unpacked_verified_and_removed(server, tmp_path, monkeypatch):
    batches = _fake_batches()
    # a hostile member name is never extracted: only the six batch names are read
    _write_archive(server.folder / dl.CIFAR10_ARCHIVE, batches | {"../escaped": b"x"})
    _patch_manifest(monkeypatch, {rel: hashlib.md5(raw).hexdigest() for rel, raw in batches.items()},
                    downloads={dl.CIFAR10_ARCHIVE: _md5(server.folder / dl.CIFAR10_ARCHIVE)})
    root = tmp_path / "root"
    dl.download(["cifar10"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(batches)
    assert not (tmp_path / "escaped").exists()
    # the subset is now derived from the batches: the first images of each batch, in order
    monkeypatch.setattr(data, "_CIFAR10_SUBSET_PER_BATCH", 2)
    x, y = data.load_dataset("cifar10_subset", "train", root=root)
    first = [pickle.loads(batches[rel]) for rel in datafiles.CIFAR10_BATCHES["train"]]
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [v for b in first for v in b["labels"][:2]]
    assert torch.equal((x[0] * 255).round().to(torch.uint8).flatten(), torch.from_numpy(first[0]["data"][0]))


def test_cifar10_batch_with_a_wrong_checksum_is_not_written(server, tmp_path, monkeypatch):
    batches = _fake_batches()
    _write_archive(server.folder / dl.CIFAR10_ARCHIVE, batches)
    md5s = {rel: hashlib.md5(raw).hexdigest() for rel, raw in batches.items()}
    md5s["cifar-10-batches-py/data_batch_2"] = "f" * 32
    _patch_manifest(monkeypatch, md5s, downloads={dl.CIFAR10_ARCHIVE: _md5(server.folder / dl.CIFAR10_ARCHIVE)})
    root = tmp_path / "root"
    with pytest.raises(data.DataError, match=r"checksum mismatch for cifar-10-batches-py/data_batch_2 in .*: md5 "
                                             r"[0-9a-f]{32}, expected f{32}; it was not written"):
        dl.download(["cifar10"], root=root, mirror=server.url, retries=0, progressbar=False, log=lambda s: None)
    assert not (root / "cifar-10-batches-py" / "data_batch_2").exists()


def test_unreachable_server_names_the_url_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(data.DataError) as e:
        dl.download(["svhn"], root=tmp_path, mirror=f"http://127.0.0.1:{port}", retries=0, progressbar=False,
                    log=lambda s: None)
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}/train_32x32.mat" in msg and dl.MIRROR_VARIABLE in msg
    assert "python -m robust_utils download svhn" in msg
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("names, match", [([], r"\(none given\)"), (["mnist", "imagenet"], "'imagenet'"),
                                          (["cifar10_subset"], "'cifar10_subset'")])
def test_bad_names_are_refused_before_any_work(tmp_path, names, match):
    with pytest.raises(ValueError, match=match + ".*valid: mnist, cifar10, svhn"):
        dl.download(names, root=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_root_that_cannot_be_created_names_the_variable(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(data.DataError, match="cannot create the data root .*ROBUST_UTILS_DATA"):
        dl.download(["svhn"], root=tmp_path / "file" / "root")


def test_official_locations_unless_a_mirror_is_set(tmp_path, monkeypatch):
    """Without a mirror each file is asked of its dataset's official location (the fetch is replaced:
    nothing leaves the machine); the environment variable and the argument both move every file."""
    asked = []
    monkeypatch.setattr(dl, "fetch_file", lambda folder, fname, md5, bases, *a: asked.append((fname, tuple(bases)))
                        or folder / fname)
    monkeypatch.delenv(dl.MIRROR_VARIABLE, raising=False)
    dl.download(["svhn"], root=tmp_path, log=lambda s: None)
    assert asked == [(n, ("http://ufldl.stanford.edu/housenumbers/",)) for n in ("train_32x32.mat", "test_32x32.mat")]
    monkeypatch.setenv(dl.MIRROR_VARIABLE, "http://127.0.0.1:9/m")
    asked.clear()
    dl.download(["svhn"], root=tmp_path, log=lambda s: None)
    assert {bases for _, bases in asked} == {("http://127.0.0.1:9/m/",)}
    asked.clear()
    dl.download(["svhn"], root=tmp_path, mirror="http://127.0.0.1:8/", log=lambda s: None)
    assert {bases for _, bases in asked} == {("http://127.0.0.1:8/",)}
    assert dl.OFFICIAL_URLS["mnist"][0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert dl.OFFICIAL_URLS["cifar10"] == ("https://www.cs.toronto.edu/~kriz/",)


def test_cli_download_exit_codes(server, tmp_path, monkeypatch, capsys):
    _write_svhn(server.folder)
    _svhn_manifest(monkeypatch, server.folder)
    monkeypatch.setattr(dl, "download", functools.partial(dl.download, retries=0, progressbar=False))
    assert main(["download", "svhn", "--root", str(tmp_path / "ok"), "--mirror", server.url]) == 0
    assert "svhn: fetching 2 files" in capsys.readouterr().out
    _svhn_manifest(monkeypatch, server.folder, **{"SVHN/test_32x32.mat": "1" * 32})
    assert main(["download", "svhn", "--root", str(tmp_path / "bad"), "--mirror", server.url]) == 1
    assert "error: checksum mismatch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["download", "imagenet"])
    assert e.value.code == 2
