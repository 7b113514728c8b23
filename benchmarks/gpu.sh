#!/usr/bin/env bash
# The prepared GPU run for a bare machine of the `device` tool (Python 3.12, torch 2.11, no diffusers): at most
# 9.5 minutes, at most 8 files in $OUT, none in a folder.
#
#   bash benchmarks/gpu.sh --prepare      # here: the wheels it carries into .whl (core + video, 49 MiB), with
#                                         # $PYTHON or the checkout's .venv/bin/python (pip download)
#   device run: carry [".whl"], command "bash benchmarks/gpu.sh"     (OUT is set there)
#   bash benchmarks/gpu.sh --tiny         # the whole script at tiny sizes on the CPU (no CUDA check)
#   options: --parts "trainer pipeline bench" (the order they run in); env PYTHON (python3), WHEELS (.whl;
#   "none": use the current environment as it is), GPU_SITE (/tmp/site), TOTAL_S (570), and TRAINER_ARGS,
#   PIPELINE_ARGS, BENCH_ARGS: more options for one part (e.g. PIPELINE_ARGS="--modes sequential --blocks 10")
#
# 1. bootstrap: the carried wheels installed with pip --no-index --no-deps --target $GPU_SITE, before anything else;
# 2. benchmarks/device_wheels.py --check: a wheel missing is named (exit 2), every flow/motionguide module is
#    imported under the machine's torch, failures listed ($OUT/env_check.json);
# 3. the parts, each with its share of the time (a part that is cut short keeps what it finished):
#    trainer  (benchmarks/gpu_trainer.py: steps/s and peak memory of Wan 1.3B T2V and 14B I2V layers with and
#             without gradient checkpointing, the cache build's clips/s) -> $OUT/gpu_trainer.json
#    pipeline (benchmarks/gpu_pipeline.py: a random-weight Wan I2V 14B pipeline at 480p, 81 frames, CFG,
#             guided against plain, per offload mode and compiled; 50 steps extrapolated from 2 measured)
#             -> $OUT/gpu_pipeline.json
#    bench    (benchmarks/gpu_bench.py: guidance overhead of the real-size forward, saved activations against
#             the meta count, flow.ifnet at 1080p) -> $OUT/gpu_bench.json
# Also $OUT/gpu.log (everything printed) and $OUT/nvidia-smi.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TINY=0; PREPARE=0; PARTS="trainer pipeline bench"
while [ $# -gt 0 ]; do
    case "$1" in
        --tiny) TINY=1 ;;
        --prepare) PREPARE=1 ;;
        --parts) PARTS="$2"; shift ;;
        *) echo "gpu.sh: unknown option $1; expected --tiny, --prepare or --parts \"trainer pipeline bench\"" >&2; exit 2 ;;
    esac
    shift
done
# each part's weight in the time: its share of TOTAL_S is its weight over the weights of the parts asked for
declare -A WEIGHT=([trainer]=190 [pipeline]=250 [bench]=110)
weights=0
for part in $PARTS; do
    [ -n "${WEIGHT[$part]:-}" ] || { echo "gpu.sh: unknown part $part; expected trainer, pipeline or bench" >&2; exit 2; }
    weights=$(( weights + ${WEIGHT[$part]} ))
done
PY="${PYTHON:-python3}"; WHEELS="${WHEELS:-.whl}"; SITE="${GPU_SITE:-/tmp/site}"; OUT="${OUT:-./gpu_out}"
if [ "$PREPARE" = 1 ]; then  # here, with the project's venv when the checkout has one (.venv)
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
    exec "$PY" benchmarks/device_wheels.py -d "$WHEELS" --script gpu
fi

# ---- 1. and 2.: the carried wheels, the environment (benchmarks/gpu_bootstrap.sh) ----
NAME=gpu.sh; CARRY="$WHEELS"; LOG_NAME=gpu.log
source benchmarks/gpu_bootstrap.sh
TOTAL_S="${TOTAL_S:-570}"

# ---- 3. the parts, each with its share of TOTAL_S (--parts pipeline alone gets it all), at most what is left ----
status=0
for part in $PARTS; do
    script=benchmarks/gpu_$part.py
    left=$(( TOTAL_S - SECONDS ))  # SECONDS: since the script started, the bootstrap included
    if [ "$left" -lt 30 ]; then
        echo "gpu.sh: $part skipped: ${left} s left" | tee -a "$LOG"
        status=1
        continue
    fi
    share=$(( ${WEIGHT[$part]} * (TOTAL_S - 20) / weights ))
    [ "$share" -gt "$left" ] && share=$left
    budget=$(( share * 3 / 4 ))  # no new row or mode starts after this; the rest is for the one running
    args=(--out "$OUT/gpu_$part.json" --budget-s "$budget")
    [ "$part" = bench ] && args=(--out "$OUT/gpu_bench.json" --budget-s "$budget" --sections guidance activation ifnet)
    [ "$TINY" = 1 ] && args+=(--tiny)
    extra_var="${part^^}_ARGS"; read -r -a extra <<< "${!extra_var:-}"; args+=("${extra[@]}")
    echo "gpu.sh: $part ($script, ${share} s at most)" | tee -a "$LOG"
    timeout --signal=INT --kill-after=15 "$share" "$PY" "$script" "${args[@]}" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "gpu.sh: $part ended with status $rc" | tee -a "$LOG"; status=1; }
done
rm -f "$OUT"/*.tmp
echo "gpu.sh: done in ${SECONDS} s, status $status; files in $OUT: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
exit "$status"
