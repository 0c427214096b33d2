#!/usr/bin/env bash
# One GPU check (issue #20): what a machine with CUDA runs as is, in ≤ 8 minutes on one GPU, printing one table.
#
#   benchmarks/gpu_check.sh            # from the repository root, with the project venv (.venv)
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#
# Without a CUDA device it prints one line and exits 0 (nothing to check). Steps, each with its own time limit
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
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to torch ($PY): nothing to check, skipped"
    exit 0
fi
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
NAME=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')
OUT=${GPU_CHECK_DIR:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
CORES=$(nproc)
export PYOPENGL_PLATFORM=egl
ROWS=()
FAILED=0

# step NAME LIMIT_S PATTERN CMD...: run CMD with a time limit, log to $OUT/NAME.log, keep the last log line
# matching PATTERN (the step's result) for the table.
step() {
    local name=$1 limit=$2 pattern=$3
    shift 3
    local start status result
    start=$(date +%s)
    timeout --signal=INT --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    status=$?
    case $status in
        0) status=ok ;;
        124) status="timeout (${limit} s)"; FAILED=1 ;;
        *) status="failed (exit $status)"; FAILED=1 ;;
    esac
    result=$(grep -E "$pattern" "$OUT/$name.log" | tail -n 3 | tr '\n' ' ' | cut -c1-160)
    ROWS+=("$(printf '%-14s | %-16s | %5s s | %s' "$name" "$status" "$(($(date +%s) - start))" "$result")")
}

step "cuda tests" 120 "passed|failed|skipped|error" \
    "$PY" -m pytest -q -p no:cacheprovider -k cuda tests/test_ddp.py tests/test_io_formats.py

step "renderer" 120 "pairs|pytorch3d" "$PY" - <<'EOF'
import argparse
import sys

sys.path.insert(0, "benchmarks")
import bench_render as b

args = argparse.Namespace(device="cuda", threads=1, repeats=3, faces_per_pixel=b.DEFAULT_FACES_PER_PIXEL,
                          dense_max_elements=0, skip_pytorch3d=False, mesh=[])
b.bench_mesh("synthetic body, batch 64", b.synthetic_body(), args, 64, b.CROP_SIZE)
EOF

WORLD="$OUT/tiny_world"
step "tiny world" 180 "steps|Nothing to be done|Error" "$PY" - "$WORLD" "$CORES" <<'EOF'
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

step "sd vs sd+dsr" 150 "ratio" "$PY" benchmarks/bench_train.py --root "$WORLD" --steps 10
step "bf16 sd/sd+dsr" 150 "ratio" "$PY" benchmarks/bench_train.py --root "$WORLD" --steps 10 --precision bf16

step "graphonomy" 90 "flip|scale" "$PY" benchmarks/bench_graphonomy.py --sizes 512 --device cuda

if [ "$GPUS" -ge 2 ]; then
    step "ddp 2 gpus" 120 "passed|failed|error" \
        "$PY" -m pytest -q -p no:cacheprovider tests/test_ddp.py -k two_cuda_workers
else
    ROWS+=("$(printf '%-14s | %-16s | %5s s | %s' "ddp 2 gpus" "skipped" 0 "one GPU ($NAME): DDP needs 2")")
fi

echo
echo "gpu_check on $GPUS × $NAME ($CORES CPU cores), logs in $OUT"
printf '%-14s | %-16s | %7s | %s\n' "step" "status" "time" "result (last lines of the step's log)"
printf '%s\n' "---------------+------------------+---------+------------------------------------------------"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
