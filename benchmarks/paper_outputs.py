"""Pack a paper-profile chunk's outputs into parts below 16 MiB, and unpack them into the repository.

The GPU machine returns at most 8 files of at most 16 MiB each (64 MiB in all) from $OUT, no
more than two folders down. ``pack`` therefore puts everything a chunk leaves behind -- the
executed notebook, results.json, the figures, a provenance.json (device, time, commit), and the
checkpoints of the cache -- into one gzipped tar, cuts it into parts of at most ``--max-bytes``
and writes a manifest (sizes and sha256 of the whole and of every part). ``unpack`` joins the
parts, checks every checksum, and extracts the notebook's outputs into results/paper/<notebook>/
and the checkpoints into a cache folder. ``split`` / ``join`` do the same for one file.

    python benchmarks/paper_outputs.py pack --notebook 05_sdr_learnable --figures figures/paper \\
        --cache .paper_cache --out "$OUT" --provenance provenance.json
    python benchmarks/paper_outputs.py unpack <returned files>/chunk/manifest.json --results results/paper \\
        --cache ~/.cache/robust_utils

Standard library only (it runs before anything is installed on the GPU machine). Infrastructure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

MAX_PART_BYTES = 16 * 1024 * 1024 - 64 * 1024  # "below 16 MiB", with room to spare
MAX_FILES = 8  # what the GPU machine brings back from $OUT
MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_bytes(data: bytes, name: str, out_dir: Path, max_bytes: int = MAX_PART_BYTES) -> dict:
    """Write data as ``<name>.part000``, ``.part001``, ... of at most max_bytes each into out_dir.

    Returns:
        {"name", "size", "sha256", "parts": [{"file", "size", "sha256"}]} (the manifest entry).
    Raises:
        ValueError: max_bytes < 1.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, max(len(data), 1), max_bytes)):
        chunk = data[start:start + max_bytes]
        part = out_dir / f"{name}.part{i:03d}"
        part.write_bytes(chunk)
        parts.append({"file": part.name, "size": len(chunk), "sha256": sha256_bytes(chunk)})
    return {"name": name, "size": len(data), "sha256": sha256_bytes(data), "parts": parts}


def join_parts(entry: dict, folder: Path) -> bytes:
    """The bytes of a manifest entry, from its parts in folder, every checksum verified.

    Raises:
        FileNotFoundError: a part is missing (named in the message).
        ValueError: a part or the whole has the wrong size or sha256.
    """
    chunks = []
    for part in entry["parts"]:
        path = folder / part["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: part {part['file']} of {entry['name']} is missing")
        data = path.read_bytes()
        if len(data) != part["size"] or sha256_bytes(data) != part["sha256"]:
            raise ValueError(f"{path}: size or sha256 differs from the manifest (a damaged transfer)")
        chunks.append(data)
    whole = b"".join(chunks)
    if len(whole) != entry["size"] or sha256_bytes(whole) != entry["sha256"]:
        raise ValueError(f"{entry['name']}: the joined parts differ from the manifest's sha256")
    return whole


def _tar(members: list[tuple[Path, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path, arcname in members:
            tar.add(str(path), arcname=arcname)
    return buf.getvalue()


def collect(notebook: str, figures: Path, cache: Path | None, provenance: Path | None,
            provenance_name: str = "provenance.json") -> tuple[list, list]:
    """(outputs, checkpoints): (path, name in the archive) of the notebook's output folder
    (figures/<notebook>/: the executed notebook, results.json, figures), the provenance file (as
    ``provenance_name`` in that folder), and the cache's checkpoints (*.pt, newest first)."""
    outputs = []
    folder = figures / notebook
    if folder.is_dir():
        outputs += [(p, f"outputs/{notebook}/{p.relative_to(folder)}") for p in sorted(folder.rglob("*")) if p.is_file()]
    if provenance is not None and provenance.is_file():
        outputs.append((provenance, f"outputs/{notebook}/{provenance_name}"))
    checkpoints = []
    if cache is not None and cache.is_dir():
        files = sorted(cache.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
        checkpoints = [(p, f"checkpoints/{p.name}") for p in files]
    return outputs, checkpoints


def pack(notebook: str, figures: Path, cache: Path | None, out: Path, provenance: Path | None = None,
         max_bytes: int = MAX_PART_BYTES, max_files: int = MAX_FILES, provenance_name: str = "provenance.json") -> dict:
    """Pack a chunk's outputs (always) and as many checkpoints as fit into ``max_files - 1`` parts.

    Checkpoints are added newest first while the archive stays within (max_files - 1) * max_bytes
    (the manifest is the last file); the ones left out are listed in the manifest ("left_out")
    and stay on the machine (a later chunk of the same session can still use them).

    Returns:
        The manifest (also written to out/manifest.json).
    Raises:
        ValueError: the outputs alone do not fit.
    """
    outputs, checkpoints = collect(notebook, figures, cache, provenance, provenance_name)
    budget = (max_files - 1) * max_bytes
    data = _tar(outputs)
    if len(data) > budget:
        raise ValueError(f"the outputs of {notebook} alone take {len(data)} bytes compressed, over {budget}")
    kept, left_out = [], []
    for item in checkpoints:
        trial = _tar(outputs + kept + [item])
        if len(trial) <= budget:
            kept.append(item)
            data = trial
        else:
            left_out.append(item[1])
    entry = split_bytes(data, f"{notebook}.tar.gz", out, max_bytes)
    manifest = {"notebook": notebook, "archive": entry, "outputs": [a for _, a in outputs],
                "checkpoints": [a for _, a in kept], "left_out": left_out}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _safe_members(tar: tarfile.TarFile, prefix: str) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        if m.name.startswith(prefix) and m.isfile() and ".." not in Path(m.name).parts:
            members.append(m)
    return members


def unpack(manifest_path: Path, results: Path, cache: Path | None) -> list[Path]:
    """Join and check the parts next to ``manifest_path``; extract outputs/<notebook>/ into
    results/<notebook>/ and checkpoints/ into cache (skipped when cache is None).

    Returns:
        The files written.
    Raises:
        FileNotFoundError, ValueError: a missing or damaged part (nothing is written then).
    """
    manifest = json.loads(manifest_path.read_text())
    data = join_parts(manifest["archive"], manifest_path.parent)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        targets = [("outputs/", results)] + ([("checkpoints/", cache)] if cache is not None else [])
        for prefix, dest in targets:
            for m in _safe_members(tar, prefix):
                path = dest / Path(m.name).relative_to(prefix.rstrip("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(tar.extractfile(m).read())
                tmp.replace(path)  # atomic: a reader never sees half a file
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--notebook", required=True)
    a.add_argument("--figures", type=Path, required=True, help="the figures root of the paper profile (figures/paper)")
    a.add_argument("--cache", type=Path)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--provenance", type=Path)
    a.add_argument("--provenance-name", default="provenance.json",
                   help="its name in results/paper/<notebook>/ (a training chunk's: chunks/train-<time>.json)")
    a.add_argument("--max-bytes", type=int, default=MAX_PART_BYTES)
    a.add_argument("--max-files", type=int, default=MAX_FILES, help="files in --out, the manifest included")
    b = sub.add_parser("unpack")
    b.add_argument("manifest", type=Path)
    b.add_argument("--results", type=Path, default=Path("results/paper"))
    b.add_argument("--cache", type=Path)
    c = sub.add_parser("split")
    c.add_argument("file", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--max-bytes", type=int, default=MAX_PART_BYTES)
    d = sub.add_parser("join")
    d.add_argument("manifest", type=Path)
    d.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "pack":
        m = pack(args.notebook, args.figures, args.cache, args.out, args.provenance, args.max_bytes, args.max_files,
                 args.provenance_name)
        print(f"packed {len(m['outputs'])} outputs and {len(m['checkpoints'])} checkpoints into "
              f"{len(m['archive']['parts'])} part(s); left out: {m['left_out'] or 'none'}")
    elif args.cmd == "unpack":
        for path in unpack(args.manifest, args.results, args.cache):
            print(path)
    elif args.cmd == "split":
        entry = split_bytes(args.file.read_bytes(), args.file.name, args.out, args.max_bytes)
        (args.out / f"{args.file.name}.manifest.json").write_text(json.dumps(entry, indent=1))
        print(f"{len(entry['parts'])} part(s) in {args.out}")
    else:
        entry = json.loads(args.manifest.read_text())
        args.out.write_bytes(join_parts(entry, args.manifest.parent))
        print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
