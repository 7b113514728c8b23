#!/usr/bin/env bash
# The prepared GPU run for a machine with one H200 (the `device` tool): at most 8 minutes, JSON in $OUT.
#
#   bash benchmarks/gpu.sh                    # OUT defaults to ./gpu_out
#   OUT=/some/dir PYTHON=/path/to/python bash benchmarks/gpu.sh [--sections guidance ifnet] [...]
#
# Writes $OUT/gpu_bench.json (benchmarks/gpu_bench.py: guided vs plain forward time and peak memory of the
# real-size Wan 1.3B transformer at 480p / 81 frames; saved activations measured against the meta-device count;
# flow.ifnet at 1080p fp16 against RIFE's own code), $OUT/gpu_bench.log and $OUT/nvidia-smi.txt. The JSON is
# rewritten after each section, so a run cut short keeps what it finished. Check the code first on a CPU with
# `python benchmarks/gpu_bench.py --tiny`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export OUT OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if ! "$PY" -c "import torch, diffusers, motionguide, flow; assert torch.cuda.is_available(), 'no CUDA device'" \
        > "$OUT/env_check.txt" 2>&1; then
    echo "gpu.sh: needs the project's Python environment (torch with CUDA, diffusers, this checkout) and a GPU;" \
         "see $OUT/env_check.txt (set PYTHON=... to pick an interpreter)" >&2
    exit 2
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# 8 minutes in all: the benchmark starts no section after 360 s, and is stopped at 460 s whatever happens
status=0
timeout --signal=INT --kill-after=15 460 "$PY" benchmarks/gpu_bench.py --out "$OUT/gpu_bench.json" \
    --budget-s 360 "$@" 2>&1 | tee "$OUT/gpu_bench.log" || status=$?
echo "gpu.sh: exit status $status; results in $OUT/gpu_bench.json"
exit "$status"
