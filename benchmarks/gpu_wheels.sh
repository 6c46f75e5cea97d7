#!/usr/bin/env bash
# Download the wheels the GPU machine lacks, for its Python 3.12 (run HERE, where pip reaches the registry).
#
#   benchmarks/gpu_wheels.sh [WHEEL_DIR]        # default: .whl (ignored by git through .git/info/exclude)
#
# The GPU machine (results/paper/README.md) has Python 3.12 with torch, numpy, pandas, scipy,
# scikit-learn, matplotlib, seaborn, PyYAML, tqdm, requests and pytest, but no papermill,
# ipykernel, nbformat, pyautoattack, Foolbox or pooch, and it cannot download anything. This
# script takes those packages and everything they need that the machine does not have, at the
# versions installed in this project's environment (.venv, the pins of pyproject.toml), and
# downloads their wheels for CPython 3.12 on manylinux x86-64 into WHEEL_DIR. Name WHEEL_DIR in
# the device tool's `carry`; benchmarks/gpu_paper_run.sh installs them with
#   python3 -m pip install --no-index --no-deps --target .site WHEEL_DIR/*.whl
# The packages the GPU image already has (its list: the device tool's KINDS.md) are never
# downloaded: two versions of one package break the install there.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_DIR="${1:-.whl}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$WHEEL_DIR"
# the wheels and the paper chunks' cache never go into git, and travel to the GPU only when carried
for ignored in /.whl/ /.paper_cache/; do
    if [ -d .git ] && ! grep -qx "$ignored" .git/info/exclude 2>/dev/null; then
        echo "$ignored" >> .git/info/exclude
    fi
done

# name==version of every package to bring, from this environment's metadata
REQUIREMENTS="$("$PY" - <<'PYEOF'
import importlib.metadata as md
import re
from packaging.markers import Marker

ROOTS = ["papermill", "ipykernel", "nbformat", "nbclient", "pyautoattack", "foolbox", "pooch"]
# on the GPU image already (KINDS.md, 'Python packages already there'), as far as these roots need them
PRESENT = """attrs certifi charset-normalizer click idna jinja2 markupsafe matplotlib numpy packaging pandas pillow
psutil pygments python-dateutil pyyaml requests scipy six tqdm typing-extensions urllib3 aiohttp pyparsing
contourpy cycler fonttools kiwisolver setuptools wheel pip filelock fsspec""".split()
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


present, seen, todo = {norm(p) for p in PRESENT}, {}, list(ROOTS)
while todo:
    name = norm(todo.pop())
    if name in seen or name in present:
        continue
    seen[name] = md.distribution(name).version
    for req in md.distribution(name).requires or []:
        spec, _, marker = req.partition(";")
        if marker and not Marker(marker).evaluate(ENV):
            continue
        todo.append(re.match(r"[A-Za-z0-9_.\-]+", spec.strip()).group(0))
print(" ".join(f"{n}=={v}" for n, v in sorted(seen.items())))
PYEOF
)"

PLATFORMS=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$tag")
done
for req in $REQUIREMENTS; do
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" -d "$WHEEL_DIR" "$req"
done
# pyautoattack's wheel carries a 44 MB example model (pyautoattack/examples/) that nothing imports:
# rebuild it without that folder (RECORD updated, every other file and hash unchanged), or the
# wheels alone would take most of the 64 MiB a device call can carry
"$PY" - "$WHEEL_DIR" <<'PYEOF'
import pathlib
import sys
import zipfile

for wheel in pathlib.Path(sys.argv[1]).glob("pyautoattack-*.whl"):
    with zipfile.ZipFile(wheel) as src:
        names = [n for n in src.namelist() if not n.startswith("pyautoattack/examples/")]
        if len(names) == len(src.namelist()):
            continue
        slim = wheel.with_suffix(".slim")
        with zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
            for n in names:
                data = src.read(n)
                if n.endswith(".dist-info/RECORD"):
                    data = b"".join(line + b"\n" for line in data.splitlines()
                                    if not line.startswith(b"pyautoattack/examples/"))
                dst.writestr(n, data)
    slim.replace(wheel)
PYEOF
echo "$(ls "$WHEEL_DIR"/*.whl | wc -l) wheels, $(du -sh "$WHEEL_DIR" | cut -f1), in $WHEEL_DIR:"
ls "$WHEEL_DIR"
