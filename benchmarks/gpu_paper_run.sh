#!/usr/bin/env bash
# Run one chunk of the paper profile on the GPU machine and leave its outputs in $OUT, in parts below 16 MiB.
#
# usage: benchmarks/gpu_paper_run.sh MODE [ARGS...]
#
#   selftest                          install the wheels, import the package, run the CUDA-only tests
#                                     (graphed PGD == eager PGD, EOT on CUDA) and the speed-switch tests
#   bench [BENCH_ARGS...]             measure the paper profile on this GPU (benchmarks/bench_paper.py);
#                                     $OUT/CHUNKS.md is the chunk plan, measured
#   train NOTEBOOK [--select KEY=VALUES ...] [-p NAME=VALUE ...]
#                                     train some of a notebook's models through its recipe
#                                     (benchmarks/paper_train.py: the selections, the parameters)
#   run NOTEBOOK [-p NAME=VALUE ...]  the normal runner: python -m robust_utils run --profile paper
#                                     --notebooks NOTEBOOK -p ...
#
# What it does, in the repository root of the copy the device tool sent:
#   1. installs the carried wheels (.whl/*.whl, made here by benchmarks/gpu_wheels.sh) into .site/ (inside the tree, git-ignored)
#      (no network there; the machine's own torch, numpy, pandas, ... are used);
#   2. keeps the checkpoint cache inside the tree, in .paper_cache/ (ROBUST_UTILS_CACHE): carry it
#      to resume or reuse earlier chunks, and it stays on the machine between calls while it is warm;
#   3. runs the chunk under `timeout $CHUNK_LIMIT_S` (default 480 s): training stopped there keeps
#      its last complete epoch (fit's per-epoch checkpoint), and the same command resumes it;
#   4. writes $OUT/log.txt and, for train / run, packs the notebook's outputs (executed notebook,
#      results.json, figures, provenance.json: device, torch, time, commit; a training chunk's
#      provenance as chunks/train-<time>.json) and the cache's newest checkpoints into $OUT/chunk/ (benchmarks/paper_outputs.py: parts below 16 MiB, a manifest;
#      at most 8 files come back). Here, unpack with
#        python benchmarks/paper_outputs.py unpack <files_at>/chunk/manifest.json --results results/paper \
#            --cache ~/.cache/robust_utils
#
# Environment: OUT (the device tool sets it), PAPER_COMMIT (pass `git rev-parse HEAD` from here: the
# copy has no .git), CHUNK_LIMIT_S, PAPER_CACHE (default .paper_cache), ROBUST_UTILS_CUDA_GRAPHS /
# ROBUST_UTILS_TF32 (0 to switch off).
#
# A device call, from the repository root here (carry .whl and, to resume, .paper_cache):
#   run(command="PAPER_COMMIT=<sha> bash benchmarks/gpu_paper_run.sh train 05_sdr_learnable --select names=DropConnect",
#       carry=[".whl", ".paper_cache"], timeout_s=560)
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
MODE="${1:-}"
case "$MODE" in
    -h|--help|help) usage; exit 0 ;;
    selftest|bench|train|run) shift ;;
    *) usage >&2; echo "error: unknown mode '${MODE}'" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
LIMIT="${CHUNK_LIMIT_S:-480}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export ROBUST_UTILS_CACHE="${PAPER_CACHE:-$ROOT/.paper_cache}" ROBUST_UTILS_FIGURES="$ROOT/figures"
mkdir -p "$ROBUST_UTILS_CACHE"
exec > >(tee -a "$OUT/log.txt") 2>&1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$ROOT/.site" .whl/*.whl \
        || { echo "error: installing the carried wheels failed"; exit 3; }
    export PYTHONPATH="$ROOT/.site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    echo "note: no .whl/*.whl carried (make them with benchmarks/gpu_wheels.sh); papermill may be missing"
fi

START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
SECONDS=0
NOTEBOOK=""
case "$MODE" in
    selftest)
        "$PY" -c "import robust_utils, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
        timeout "$LIMIT" "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rs \
            tests/test_speed_equivalence.py tests/test_models.py tests/test_train.py::test_optimisers_are_fused_on_cuda
        STATUS=$? ;;
    bench)
        timeout "$LIMIT" "$PY" benchmarks/bench_paper.py --write "$OUT/CHUNKS.md" "$@"
        STATUS=$? ;;
    train)
        NOTEBOOK="${1:?train needs a notebook}"; shift
        timeout "$LIMIT" "$PY" benchmarks/paper_train.py "$NOTEBOOK" "$@"
        STATUS=$? ;;
    run)
        NOTEBOOK="${1:?run needs a notebook}"; shift
        timeout "$LIMIT" "$PY" -m robust_utils run --profile paper --notebooks "$NOTEBOOK" "$@"
        STATUS=$? ;;
esac
[ "$STATUS" = 124 ] && echo "note: stopped at the chunk limit of ${LIMIT} s; the same command resumes from the last epoch"

if [ -n "$NOTEBOOK" ]; then
    "$PY" - "$OUT/provenance.json" "$MODE" "$NOTEBOOK" "$START" "$SECONDS" "$STATUS" "$*" <<'PYEOF'
import json, platform, sys
import torch
path, mode, notebook, start, seconds, status, args = sys.argv[1:]
cuda = torch.cuda.is_available()
json.dump({"notebook": notebook, "profile": "paper", "mode": mode, "arguments": args,
           "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "cuda": torch.version.cuda, "python": platform.python_version(), "started_utc": start,
           "wall_seconds": int(seconds), "exit_status": int(status),
           "commit": __import__("os").environ.get("PAPER_COMMIT", "unknown")}, open(path, "w"), indent=1)
PYEOF
    "$PY" benchmarks/paper_outputs.py pack --notebook "$NOTEBOOK" --figures "$ROOT/figures/paper" \
        --cache "$ROBUST_UTILS_CACHE" --out "$OUT/chunk" --provenance "$OUT/provenance.json" --max-files 7 \
        --provenance-name "$([ "$MODE" = run ] && echo provenance.json || echo "chunks/train-${START//:/}.json")" \
        && rm -f "$OUT/provenance.json"
fi
echo "mode $MODE finished with status $STATUS after ${SECONDS} s"
exit "$STATUS"
