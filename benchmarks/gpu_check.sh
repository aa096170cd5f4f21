#!/usr/bin/env bash
# GPU check of fgad, within 8 minutes on one CUDA GPU:
#   1. throughput of the paper's configuration (WRN-16-4, batch 32, 32×32×3, both tasks):
#      bf16 + channels-last, then fp32 (NCHW), with the measured matmul peak and utilisation;
#   2. a short one-class CIFAR-10 benchmark (class 0 normal; ours, mhrot, mean-distance; paper
#      preset, bf16 + channels-last), its training length sized from the throughput just measured;
#   3. a summary table, printed last.
#
# Usage: benchmarks/gpu_check.sh [CIFAR10_NPZ] [OUT_DIR]
#   CIFAR10_NPZ  default: shared/data/cifar10_jpeg.npz inside the repo if there, else ../shared/data/...
#   OUT_DIR      default: gpu-check (throughput JSON, benchmark records, report)
# Environment: PYTHON (default python), BUDGET_S (default 480, the whole script's time limit).
set -euo pipefail

START=$(date +%s)
BUDGET_S=${BUDGET_S:-480}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

fail() { echo "gpu_check.sh: error: $*" >&2; exit 2; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }

DATA=${1:-}
if [ -z "$DATA" ]; then
    if [ -f shared/data/cifar10_jpeg.npz ]; then DATA=shared/data/cifar10_jpeg.npz; else DATA=../shared/data/cifar10_jpeg.npz; fi
fi
OUT=${2:-gpu-check}
[ -f "$DATA" ] || fail "$DATA: no such file (give the path of cifar10_jpeg.npz as the first argument)"

# --- fgad importable? (the device may be offline: no dependency downloads, no build isolation)
if ! "$PY" -c "import fgad" 2>/dev/null; then
    echo "== pip install -e . (no dependencies, no build isolation)"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
        || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import fgad, fgad.benchmark.runner, fgad.report" \
    || fail "fgad or one of its dependencies cannot be imported (see above)"

# --- CUDA or nothing
"$PY" - <<'EOF' || exit 3
import sys, torch
if not torch.cuda.is_available():
    print(f"gpu_check.sh: error: no CUDA device visible to torch {torch.__version__} "
          f"(CUDA build: {torch.version.cuda or 'none'}); this check needs an NVIDIA GPU", file=sys.stderr)
    sys.exit(3)
print(f"== {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

mkdir -p "$OUT"

# --- 1. throughput of the paper's configuration
echo "== throughput: WRN-16-4, batch 32, 32x32x3, bf16 + channels-last"
timeout 150 "$PY" benchmarks/throughput.py --preset paper --device cuda --bf16 --channels-last \
    --steps 40 --warmup 5 --json "$OUT/throughput_bf16_cl.json"
echo "== throughput: WRN-16-4, batch 32, 32x32x3, fp32 (NCHW; cuDNN convolutions in TF32 as torch's default)"
timeout 150 "$PY" benchmarks/throughput.py --preset paper --device cuda --no-bf16 --no-channels-last \
    --steps 20 --warmup 3 --json "$OUT/throughput_fp32.json"

# --- 2. one CIFAR-10 class, sized to the time left (at most the paper's 15 epochs)
EPOCHS=$("$PY" benchmarks/size_epochs.py "$OUT/throughput_bf16_cl.json" "$DATA" "$(left)" --methods 2)
echo "== CIFAR-10 class 0: ours, mhrot, mean-distance; paper preset, bf16 + channels-last, $EPOCHS epoch(s)"
timeout $(( $(left) > 30 ? $(left) - 20 : 10 )) "$PY" -m fgad.cli benchmark --dataset npz --data-root "$DATA" \
    --classes 0 --method ours,mhrot,mean-distance --preset paper \
    --set epochs="$EPOCHS" --set bf16=true --set channels_last=true --out "$OUT/bench" --quiet --no-report \
    || echo "gpu_check.sh: the benchmark did not finish (status $?): the summary lists the jobs that did" >&2

# --- 3. summary
"$PY" - "$OUT" "$EPOCHS" "$(elapsed)" <<'EOF'
import json, sys
from pathlib import Path
out, epochs, elapsed = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def si(v, unit):
    for f, p in ((1e15, "P"), (1e12, "T"), (1e9, "G")):
        if v >= f:
            return f"{v / f:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"

print("\n## fgad GPU check\n")
print("| run | train views/s | train images/s | views of a batch | scoring images/s | achieved train | peak used | util. train | util. scoring |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in ("throughput_bf16_cl", "throughput_fp32"):
    p = out / f"{name}.json"
    if not p.exists():
        print(f"| {name} | (missing) | | | | | | | |")
        continue
    r = json.loads(p.read_text())
    peak = r["peak_flops_per_s"].get(r["peak_used"] or "", 0)
    ut = "-" if r["utilisation_train"] is None else f"{r['utilisation_train']:.1%}"
    us = "-" if r["utilisation_score"] is None else f"{r['utilisation_score']:.1%}"
    print(f"| {r['precision']}, {'channels-last' if r['channels_last'] else 'NCHW'} | {r['train_views_per_s']:.0f} | "
          f"{r['train_images_per_s']:.0f} | {r['views_s_per_batch'] * 1e3:.2f} ms | {r['score_images_per_s']:.0f} | "
          f"{si(r['achieved_train_flops_per_s'], 'FLOP/s')} | {r['peak_used']} {si(peak, 'FLOP/s') if peak else '-'} | "
          f"{ut} | {us} |")
print(f"\nCIFAR-10 (JPEG copy), class 0 normal, paper preset, bf16 + channels-last, {epochs} epoch(s):\n")
print("| method | AUROC | fit s | score s | device |")
print("| --- | ---: | ---: | ---: | --- |")
recs = sorted((out / "bench" / "records").rglob("*.json")) if (out / "bench" / "records").exists() else []
for p in recs:
    r = json.loads(p.read_text())
    t = r["timings"]
    print(f"| {r['job']['method']} | {r['metrics']['auroc']:.4f} | {t['fit_s']:.1f} | {t['score_s']:.1f} | {r['device']} |")
if not recs:
    print("| (no finished job) | | | | |")
print(f"\ntotal {elapsed} s; JSON and records in {out}/")
EOF
