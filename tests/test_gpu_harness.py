"""The GPU run harness's file handling (benchmarks/paper_outputs.py), tested on the CPU.

What comes back from the GPU machine must be at most 8 files below 16 MiB: a large checkpoint is
split into parts and joined back bit for bit, a damaged or missing part is an error (never a
silently wrong checkpoint), and a chunk's outputs land in results/paper/<notebook>/. The sizes
here are scaled down (a part limit of 50 kB) so the test takes milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest

from robust_utils.core.paths import project_root

ROOT = project_root()


def _load():
    spec = importlib.util.spec_from_file_location("paper_outputs", ROOT / "benchmarks" / "paper_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


po = _load()


def test_a_large_file_splits_into_small_parts_and_joins_back(tmp_path):
    data = os.urandom(130_000)
    entry = po.split_bytes(data, "ckpt.pt", tmp_path / "parts", max_bytes=50_000)
    assert [p["size"] for p in entry["parts"]] == [50_000, 50_000, 30_000]
    assert all((tmp_path / "parts" / p["file"]).stat().st_size <= 50_000 for p in entry["parts"])
    assert po.join_parts(entry, tmp_path / "parts") == data
    assert po.MAX_PART_BYTES < 16 * 1024 * 1024


def test_a_damaged_or_missing_part_is_an_error(tmp_path):
    entry = po.split_bytes(os.urandom(120_000), "ckpt.pt", tmp_path, max_bytes=50_000)
    second = tmp_path / entry["parts"][1]["file"]
    good = second.read_bytes()
    second.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        po.join_parts(entry, tmp_path)
    second.unlink()
    with pytest.raises(FileNotFoundError, match="part000|part001"):
        po.join_parts(entry, tmp_path)


def test_pack_keeps_the_outputs_and_the_checkpoints_that_fit_then_unpack_restores_them(tmp_path):
    figures, cache, out = tmp_path / "figures" / "paper", tmp_path / "cache", tmp_path / "out"
    nb = figures / "05_sdr_learnable"
    nb.mkdir(parents=True)
    (nb / "results.json").write_text(json.dumps({"accuracy": 0.97}))
    (nb / "05_sdr_learnable.ipynb").write_text("{}")
    (nb / "eps_sweep.png").write_bytes(b"\x89PNG" + os.urandom(1000))
    prov = tmp_path / "provenance.json"
    prov.write_text(json.dumps({"device": "NVIDIA H200", "commit": "abc"}))
    cache.mkdir()
    small, big = os.urandom(60_000), os.urandom(400_000)  # random bytes do not compress
    (cache / "small.pt").write_bytes(small)
    (cache / "big.pt").write_bytes(big)
    os.utime(cache / "big.pt", (1, 1))  # older: considered last
    manifest = po.pack("05_sdr_learnable", figures, cache, out, prov, max_bytes=50_000, max_files=4)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 4 and all((out / f).stat().st_size <= 50_000 for f in files)
    assert manifest["checkpoints"] == ["checkpoints/small.pt"] and manifest["left_out"] == ["checkpoints/big.pt"]
    results, restored = tmp_path / "results" / "paper", tmp_path / "restored"
    written = po.unpack(out / po.MANIFEST, results, restored)
    assert (results / "05_sdr_learnable" / "provenance.json").is_file() and len(written) == 5
    assert json.loads((results / "05_sdr_learnable" / "results.json").read_text()) == {"accuracy": 0.97}
    assert (restored / "small.pt").read_bytes() == small and not (restored / "big.pt").exists()


def test_pack_refuses_outputs_that_cannot_come_back(tmp_path):
    nb = tmp_path / "figures" / "01_probabilistic_loss"
    nb.mkdir(parents=True)
    (nb / "huge.png").write_bytes(os.urandom(200_000))
    with pytest.raises(ValueError, match="alone take"):
        po.pack("01_probabilistic_loss", tmp_path / "figures", None, tmp_path / "out", max_bytes=50_000, max_files=3)


def test_the_run_script_documents_its_modes_and_parses():
    script = ROOT / "benchmarks" / "gpu_paper_run.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    usage = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0
    for mode in ("selftest", "bench", "train", "run"):
        assert mode in usage.stdout
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_wheels.sh")], capture_output=True).returncode == 0


def test_training_chunks_select_models_by_the_recipes_own_names():
    spec = importlib.util.spec_from_file_location("paper_train", ROOT / "benchmarks" / "paper_train.py")
    pt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pt)
    assert pt.parse_selection("02_hr_loss", ["seeds=0,1", "column=MNIST"]) == {"seeds": ["0", "1"], "column": ["MNIST"]}
    assert pt.parse_selection("05_sdr_learnable", ["names=Vanilla MLP,DropConnect"]) == {
        "names": ["Vanilla MLP", "DropConnect"]}
    assert pt.parse_selection("06_adaptive_evaluation", []) == {}
    for notebook, items in (("02_hr_loss", ["names=CE"]), ("04_adversary_critic", ["networks"]),
                            ("07_missing", [])):
        with pytest.raises(ValueError):
            pt.parse_selection(notebook, items)
