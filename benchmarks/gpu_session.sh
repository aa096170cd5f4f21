#!/usr/bin/env bash
# One prepared GPU session of at most 10 minutes (the issue "the best detector in the box", item 7):
#   1. benchmarks/gpu_check.sh within 5 minutes (throughput of the paper configuration, one
#      CIFAR-10 class);
#   2. the paper preset on MNIST classes 0 and 1 (ours, mhrot and the floor; bf16 + channels-last),
#      its training length sized from the throughput just measured to the time left;
#   3. the report of step 2, printed last.
#
# Usage: benchmarks/gpu_session.sh [DATA_DIR] [OUT_DIR]
#   DATA_DIR  folder holding cifar10_jpeg.npz and mnist.npz (default ../shared/data)
#   OUT_DIR   default gpu-session
# Environment: PYTHON (default python).
set -euo pipefail

START=$(date +%s)
BUDGET_S=600
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA_DIR=${1:-../shared/data}
OUT=${2:-gpu-session}
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
[ -f "$DATA_DIR/mnist.npz" ] || { echo "gpu_session.sh: error: $DATA_DIR/mnist.npz: no such file" >&2; exit 2; }

BUDGET_S=300 PYTHON="$PY" bash benchmarks/gpu_check.sh "$DATA_DIR/cifar10_jpeg.npz" "$OUT/check"

EPOCHS=$("$PY" benchmarks/size_epochs.py "$OUT/check/throughput_bf16_cl.json" "$DATA_DIR/mnist.npz" "$(left)" \
    --methods 2 --classes 2)
echo "== MNIST classes 0-1: ours, mhrot, mean-distance; paper preset, bf16 + channels-last, $EPOCHS epoch(s)"
timeout $(( $(left) > 40 ? $(left) - 30 : 10 )) "$PY" -m fgad.cli benchmark --dataset npz \
    --data-root "$DATA_DIR/mnist.npz" --classes 0-1 --method ours,mhrot,mean-distance --preset paper \
    --set epochs="$EPOCHS" --set bf16=true --set channels_last=true --out "$OUT/mnist" --quiet --no-report \
    || echo "gpu_session.sh: the MNIST benchmark did not finish (status $?): the report lists the jobs that did" >&2
"$PY" -m fgad.cli report "$OUT/mnist" >/dev/null 2>&1 || true
[ -f "$OUT/mnist/report/report.md" ] && cat "$OUT/mnist/report/report.md"
echo "gpu_session.sh: $(( $(date +%s) - START )) s in all"
