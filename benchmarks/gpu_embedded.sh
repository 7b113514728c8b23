#!/usr/bin/env bash
# The prepared GPU run that trains a larger embedded model on one H200 (the `device` tool): 10 minutes at most.
#
#   bash benchmarks/gpu_embedded.sh               # OUT defaults to ./gpu_out
#   OUT=/some/dir PYTHON=/path/to/python bash benchmarks/gpu_embedded.sh [--budget-s 420] [--model JSON] [...]
#
# benchmarks/gpu_embedded.py: every stage of SHIPPED_RECIPE at 128x128 (probed, then scaled to 420 s of
# training), the checkpoint in $OUT/embedded/checkpoint/{base,adapters} (bfloat16 when float32 is over 20 MB),
# loaded back and checked on the CPU, then scored against the shipped 32x32 model on real clips until 540 s
# when ../shared/data is there. Writes $OUT/gpu_embedded.json (rewritten after every stage, so a run cut short
# keeps what it finished), $OUT/gpu_embedded.log and $OUT/nvidia-smi.txt. Check the code first on a CPU with
# `python benchmarks/gpu_embedded.py --tiny`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export OUT OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if ! "$PY" -c "import torch, diffusers, accelerate, skimage, cv2, motionguide, flow; \
assert torch.cuda.is_available(), 'no CUDA device'" > "$OUT/env_check.txt" 2>&1; then
    echo "gpu_embedded.sh: needs the project's Python environment (torch with CUDA, diffusers, accelerate," \
         "scikit-image, opencv, this checkout installed with pip install -e .) and a GPU;" \
         "see $OUT/env_check.txt (set PYTHON=... to pick an interpreter)" >&2
    exit 2
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# training ends by 420 s, no scoring clip starts after 540 s, and the run is stopped at 570 s whatever happens
status=0
timeout --signal=INT --kill-after=15 570 "$PY" benchmarks/gpu_embedded.py --out "$OUT/gpu_embedded.json" \
    --budget-s 420 --total-s 540 "$@" 2>&1 | tee "$OUT/gpu_embedded.log" || status=$?
echo "gpu_embedded.sh: exit status $status; results in $OUT/gpu_embedded.json, checkpoint in $OUT/embedded/checkpoint"
exit "$status"
