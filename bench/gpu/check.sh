#!/usr/bin/env bash
# bench/gpu/check.sh - the one prepared script for a GPU machine (the device
# tool): what bench/gpu/pack.sh gathered into .gpu/ (built on the build
# machine: the GPU image has no rotor build dependencies and no network).
#   1. every CUDA kernel against its C reference (rotor-cuda-check);
#   2. the cuda engine against the cpu engine, on generated models that
#      cover the paths: llama (normal RoPE, GQA), qwen2 (NeoX RoPE, QKV
#      bias), Q8_0 weights (dequantized to f16 on upload);
#   3. rotor bench-engine on a model of SmolLM2-135M's shape in f16, with
#      the cuda backend and then the cpu one (this machine's 16 cores): decode
#      tokens/s at 1, 16 and 64 sequences and the cached-prefix TTFT.
# Usage there: bash bench/gpu/check.sh   (files land in $OUT when it is set)
set -uo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/.gpu
[ -x "$G/bin/rotor-cuda-check" ] || { echo "no .gpu/: run bench/gpu/pack.sh on the build machine first"; exit 2; }
export LD_LIBRARY_PATH="$G/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT=${OUT:-/tmp/rotor-gpu-out}
mkdir -p "$OUT" /tmp/rotor-gpu-models
M=/tmp/rotor-gpu-models
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
ldd --version 2>/dev/null | head -1
# Built on Debian 12 (glibc 2.36): where this system's C library is older,
# the binaries cannot load (exit 127), and run through the bundled loader.
RUN=()
"$G/bin/rotor-cuda-check" --probe >/dev/null 2>&1
if [ $? -eq 127 ]; then
    echo "check.sh: the binaries need a newer C library than this system's: using the bundled one (.gpu/glibc)"
    RUN=("$G/glibc/ld-linux-x86-64.so.2" --library-path "$G/glibc:$G/libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}")
fi
gen() { "${RUN[@]}" "$G/bin/rotor-model" gen --out "$M/$1.gguf" "${@:2}" >/dev/null; }
gen llama-f16 --type f16 --tokenizer bpe --n-vocab 2000 --n-ctx 1024 --seed 41
gen qwen2-f16 --type f16 --arch qwen2 --tokenizer bpe --n-vocab 2000 --n-ctx 1024 --seed 42
gen llama-q8 --type q8_0 --tokenizer bpe --n-vocab 2000 --n-ctx 1024 --seed 43
gen smollm2-shape --type f16 --tokenizer bpe --n-layer 30 --n-embd 576 --n-head 9 --n-head-kv 3 --n-ff 1536 \
    --n-vocab 49152 --n-ctx 2048 --seed 44
rc=0
"${RUN[@]}" "$G/bin/rotor-cuda-check" 2>&1 | tee "$OUT/kernels.txt" || rc=1
for m in llama-f16 qwen2-f16 llama-q8; do
    "${RUN[@]}" "$G/bin/rotor-cuda-check" --model "$M/$m.gguf" 2>&1 | grep -v "^cuda-check: \(rmsnorm\|matvec\|gemm\|rope\|kv_store\)" \
        | tee -a "$OUT/engines.txt" || rc=1
done
for be in cuda cpu; do
    echo "bench-engine --backend $be:" | tee -a "$OUT/bench.txt"
    "${RUN[@]}" "$G/bin/rotor" bench-engine --backend $be --model "$M/smollm2-shape.gguf" --seqs 1,16,64 --gen 64 \
        2>&1 | tee -a "$OUT/bench.txt" || rc=1
done
exit $rc
