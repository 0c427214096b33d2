#!/usr/bin/env bash
# One GPU check (issue #20): what a machine with CUDA runs as is, in ≤ 8 minutes on one GPU, printing one table.
#
#   benchmarks/gpu_check.sh            # from the repository root, with the project venv (.venv)
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#   benchmarks/gpu_check.sh --cpu      # plumbing run on the CPU: every step's code path at small sizes, no figures
#
# Without a CUDA device (and without --cpu) it prints one line and exits 0 (nothing to check). --cpu runs the same
# steps on the CPU (renderer 2 × 96², paper-setting steps at batch 8 for 3 steps, Graphonomy at 128²) so that a
# broken step shows on a machine without a GPU; its times say nothing about a GPU. Steps, each with its own time limit
# (seconds) so that one hanging step cannot eat the budget; a failed step is reported and the others still run:
#   1. cuda tests      pytest -k cuda: the CUDA-only tests (2-GPU DDP with NCCL and SyncBatchNorm,
#                      tests/test_ddp.py; skipped with one GPU) and the CUDA branches of the format tests
#   2. renderer        pipeline.render.soft 'pairs' vs pytorch3d, forward + backward, B = 64, 224², synthetic
#                      body (13.8K faces), 5 channels (benchmarks/bench_render.py)
#   3. tiny world      the tiny test project's body model, masks and prior (tests/config_tiny.yaml), for step 4
#   4. SD vs SD+DSR    training-step time at paper settings (ResNet-50, 224² crops and renders, batch 64) on the
#                      tiny world's samples; target ratio ≤ 1.15 (benchmarks/bench_train.py); then the same
#                      with the regressor under bf16 autocast (train.precision: bf16)
#   5. graphonomy      parser throughput at 512², image + flip in one batch (benchmarks/bench_graphonomy.py)
#   6. ddp 2 gpus      2 NCCL workers vs 1 (the test of step 1 on its own), only with ≥ 2 GPUs
# Logs: $GPU_CHECK_DIR (default a new temporary folder), one file per step.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = "--cpu" ]; then
    DEV=cpu GPUS=0 NAME="no GPU: CPU plumbing run, times are not GPU figures"
    RENDER_BATCH=2 RENDER_SIZE=96 PAPER_BATCH=8 STEPS=3 PARSE_SIZE=128 LIMIT_SCALE=4
else
    if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "gpu_check: no CUDA device visible to torch ($PY): nothing to check, skipped (--cpu: plumbing run)"
        exit 0
    fi
    DEV=cuda
    GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
    NAME=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')
    RENDER_BATCH=64 RENDER_SIZE=224 PAPER_BATCH=64 STEPS=10 PARSE_SIZE=512 LIMIT_SCALE=1
fi
OUT=${GPU_CHECK_DIR:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
CORES=$(nproc)
export PYOPENGL_PLATFORM=egl
ROWS=()
FAILED=0

# row NAME STATUS TIME TEXT: one table row.
row() {
    ROWS+=("$(printf '%-14s | %-16s | %7s | %s' "$1" "$2" "$3" "${4:0:150}")")
}

# step NAME LIMIT_S PATTERN CMD...: run CMD with a time limit (× LIMIT_SCALE), log to $OUT/<NAME as a file
# name>.log, and put the last 3 log lines matching PATTERN (the step's result) in the table, one row each.
step() {
    local name=$1 limit=$(($2 * LIMIT_SCALE)) pattern=$3
    shift 3
    local start status log seconds lines line
    log="$OUT/${name//[^A-Za-z0-9+.-]/_}.log"
    start=$(date +%s)
    timeout --signal=INT --kill-after=10 "$limit" "$@" >"$log" 2>&1
    status=$?
    case $status in
        0) status=ok ;;
        124) status="timeout (${limit} s)"; FAILED=1 ;;
        *) status="failed (exit $status)"; FAILED=1 ;;
    esac
    seconds="$(($(date +%s) - start)) s"
    mapfile -t lines < <(grep -E "$pattern" "$log" | tail -n 3)
    [ ${#lines[@]} -gt 0 ] || lines=("(no result line; see $log)")
    row "$name" "$status" "$seconds" "${lines[0]}"
    for line in "${lines[@]:1}"; do
        row "" "" "" "$line"
    done
}

step "cuda tests" 120 "passed|failed|skipped|error" \
    "$PY" -m pytest -q -p no:cacheprovider -k cuda tests/test_ddp.py tests/test_io_formats.py

# (a script file, not code on stdin: the benchmark times each backend in a spawned process, which re-imports it)
step "renderer" 120 "^  (pairs|pytorch3d)" "$PY" benchmarks/bench_render.py --synthetic-only --device "$DEV" \
    --batch "$RENDER_BATCH" --size "$RENDER_SIZE" --threads 1 --repeats 3 --dense-max-elements 0

WORLD="$OUT/tiny_world"
step "tiny world" 180 "steps \\(100%\\) done|Nothing to be done|Error" "$PY" - "$WORLD" "$CORES" <<'EOF'
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, copy_workflow, snakemake_command

work, cores = Path(sys.argv[1]), sys.argv[2]
copy_workflow(work)
shutil.copy(ROOT / "tests" / "config_tiny.yaml", work / "config" / "config.yaml")
cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
datasets = (cfg.get("masks") or {}).get("datasets", ["coco_eft", "h36m", "mpi_inf_3dhp", "3dpw"])
targets = ["results/prior/semantic_prior.npz", *[f"results/masks/{d}.h5" for d in datasets]]
cmd = snakemake_command(work, *targets)
cmd[cmd.index("--cores") + 1] = cores
sys.exit(subprocess.run(cmd).returncode)
EOF

PAPER=(--root "$WORLD" --steps "$STEPS" --paper-device "$DEV" --paper-batch "$PAPER_BATCH")
step "sd vs sd+dsr" 150 "paper settings|Error" "$PY" benchmarks/bench_train.py "${PAPER[@]}"
step "bf16 sd, +dsr" 150 "paper settings|Error" "$PY" benchmarks/bench_train.py "${PAPER[@]}" --precision bf16

step "graphonomy" 90 "flip \\(batched\\)|ratio batched|Error" "$PY" benchmarks/bench_graphonomy.py --sizes "$PARSE_SIZE" --device "$DEV"

if [ "$GPUS" -ge 2 ]; then
    step "ddp 2 gpus" 120 "passed|failed|error" \
        "$PY" -m pytest -q -p no:cacheprovider tests/test_ddp.py -k two_cuda_workers
else
    row "ddp 2 gpus" skipped "0 s" "$GPUS GPU(s): DDP on GPUs needs 2"
fi

echo
echo "gpu_check on $GPUS × $NAME ($CORES CPU cores), logs in $OUT"
printf '%-14s | %-16s | %7s | %s\n' "step" "status" "time" "result (last lines of the step's log)"
printf '%s\n' "---------------+------------------+---------+------------------------------------------------"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
