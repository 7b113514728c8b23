#!/usr/bin/env bash
# The prepared GPU run that trains a larger embedded model on a bare machine of the `device` tool: 10 minutes at
# most, at most 8 files in $OUT, none in a folder.
#
#   bash benchmarks/gpu_embedded.sh --prepare   # here: wheels (core + rife, 33 MiB) into .whl and the scoring
#                                                # clips of ../shared/data as PNG folders into .gpu_data (9 MiB),
#                                                # with $PYTHON or the checkout's .venv/bin/python
#   device run: carry [".whl", ".gpu_data"], command "bash benchmarks/gpu_embedded.sh"   (OUT is set there)
#   bash benchmarks/gpu_embedded.sh --tiny      # the whole script at tiny sizes on the CPU (no CUDA check)
#   env: PYTHON (python3), WHEELS (.whl; "none": the current environment as it is), GPU_SITE (/tmp/site),
#   GPU_DATA (.gpu_data), WORK (a new temporary folder); other options go to benchmarks/gpu_embedded.py
#
# 1. bootstrap: the carried wheels installed with pip --no-index --no-deps --target $GPU_SITE, before anything else;
# 2. benchmarks/device_wheels.py --check (a missing wheel named, exit 2; every module imported under this torch);
# 3. benchmarks/gpu_embedded.py: every stage of SHIPPED_RECIPE at 128x128 (probed, then scaled to 420 s of
#    training) in $WORK, the checkpoint packed into $OUT/checkpoint.tar.gz (bfloat16 when float32 is over 20 MB;
#    `tar xzf` gives checkpoint/{base,adapters}), loaded back and checked on the CPU, then scored against the
#    shipped 32x32 model on the carried clips ($GPU_DATA) until 540 s.
# Writes $OUT/gpu_embedded.json (rewritten after every stage), $OUT/checkpoint.tar.gz, $OUT/gpu_embedded.log,
# $OUT/env_check.json and $OUT/nvidia-smi.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TINY=0; PREPARE=0; PASS=()
for a in "$@"; do
    case "$a" in
        --tiny) TINY=1; PASS+=(--tiny) ;;
        --prepare) PREPARE=1 ;;
        *) PASS+=("$a") ;;
    esac
done
PY="${PYTHON:-python3}"; WHEELS="${WHEELS:-.whl}"; SITE="${GPU_SITE:-/tmp/site}"; OUT="${OUT:-./gpu_out}"
DATA="${GPU_DATA:-.gpu_data}"
if [ "$PREPARE" = 1 ]; then  # here, with the project's venv when the checkout has one (.venv)
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
    "$PY" benchmarks/device_wheels.py -d "$WHEELS" --script gpu_embedded || exit 2
    exec env PYTHONPATH="$PWD" "$PY" benchmarks/gpu_embedded.py --pack-data "$DATA" \
        $( [ "$TINY" = 1 ] && echo --tiny )
fi

# ---- 1. and 2.: the carried wheels, the environment (benchmarks/gpu_bootstrap.sh) ----
NAME=gpu_embedded.sh; CARRY="$WHEELS and $DATA"; LOG_NAME=gpu_embedded.log
source benchmarks/gpu_bootstrap.sh
SCORE=()
if [ -d "$DATA" ]; then
    SCORE=(--videos "$DATA")
else
    echo "gpu_embedded.sh: no scoring clips in $DATA (run --prepare here and carry it); the score is skipped" | tee -a "$LOG"
    SCORE=(--no-score)
fi
CLEAN_WORK=0
if [ -z "${WORK:-}" ]; then WORK="$(mktemp -d)"; CLEAN_WORK=1; fi

# ---- 3. train, export, check, score: training ends by 420 s, no scoring clip starts after 540 s, and the run
# is stopped at 570 s whatever happens (tiny: the script's own smaller budgets)
BUDGET=(--budget-s 420 --total-s 540); [ "$TINY" = 1 ] && BUDGET=()
status=0
timeout --signal=INT --kill-after=15 570 "$PY" benchmarks/gpu_embedded.py --out "$OUT/gpu_embedded.json" \
    --work "$WORK" --archive "$OUT/checkpoint.tar.gz" "${BUDGET[@]}" "${SCORE[@]}" "${PASS[@]}" 2>&1 \
    | tee -a "$LOG" || status=$?
[ "$CLEAN_WORK" = 1 ] && rm -rf "$WORK"
rm -f "$OUT"/*.tmp
echo "gpu_embedded.sh: exit status $status; files in $OUT: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
exit "$status"
