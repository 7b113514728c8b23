# The start shared by benchmarks/gpu.sh and benchmarks/gpu_embedded.sh on a bare machine of the `device` tool;
# sourced by them (not run alone) after they set NAME (their file name, for messages), CARRY (what their
# --prepare makes and a run carries), LOG_NAME (the log's name in $OUT), PY, WHEELS, SITE, OUT and TINY.
#
# 1. bootstrap: the carried wheels installed into $SITE (no index, no dependencies), before anything else;
#    WHEELS=none uses the current environment as it is;
# 2. the environment: benchmarks/device_wheels.py --check (a missing wheel named in one line; every module
#    imported under this torch; $OUT/env_check.json), CUDA present (unless TINY=1), $OUT/nvidia-smi.txt.
# Sets PYTHONPATH and LOG, exports OUT, OMP_WAIT_POLICY and PYTHONUNBUFFERED; exits 2 on a failure.

# ---- 1. bootstrap ----
if [ "$WHEELS" != none ]; then
    if ! compgen -G "$WHEELS/*.whl" > /dev/null; then
        echo "$NAME: no wheels in $WHEELS; run 'bash benchmarks/$NAME --prepare' here and carry $CARRY" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || { echo "$NAME: installing the wheels of $WHEELS into $SITE failed" >&2; exit 2; }
    export PYTHONPATH="$SITE:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
mkdir -p "$OUT"
export OUT OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" PYTHONUNBUFFERED=1
LOG="$OUT/$LOG_NAME"
: > "$LOG"

# ---- 2. the environment: wheels, imports under this torch, CUDA ----
# (its stderr, where a missing wheel is named in one line, stays stderr)
"$PY" benchmarks/device_wheels.py --check "$OUT/env_check.json" \
    $( [ "$WHEELS" != none ] && echo --wheels "$WHEELS" ) 2> >(tee -a "$LOG" >&2) | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || exit 2
if [ "$TINY" = 0 ]; then
    if ! "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" >> "$LOG" 2>&1; then
        echo "$NAME: no CUDA device (see $LOG); run with --tiny for the CPU check" >&2
        exit 2
    fi
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
