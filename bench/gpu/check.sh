#!/usr/bin/env bash
# bench/gpu/check.sh - the one prepared script for a GPU machine (the device
# tool): what bench/gpu/pack.sh gathered into .gpu/ (built on the build
# machine: the GPU image has no rotor build dependencies and no network).
#   1. every CUDA kernel against its C reference (rotor-cuda-check);
#   2. the cuda engine against the cpu engine, on generated models that
#      cover the paths: llama (normal RoPE, GQA), qwen2 (NeoX RoPE, QKV
#      bias), qwen3 (head norms), Q8_0 weights (dequantized to f16 on upload);
#   3. rotor bench-engine on a model of SmolLM2-135M's shape in f16, with
#      the cuda backend (CUDA graphs and eager, interleaved) and then the cpu
#      one (this machine's 16 cores): decode tokens/s at 1, 16 and 64
#      sequences and the cached-prefix TTFT;
#   4. the kernel checks under compute-sanitizer (memcheck, racecheck).
# Usage there: bash bench/gpu/check.sh [--cpu] [--quick]   (files land in $OUT
# when it is set; --cpu: also times the cpu backend on that machine; --quick:
# one engine comparison, the default configuration timed, no ncu profile)
set -uo pipefail
CPU=0 QUICK=0
for a in "$@"; do
    case $a in
    --cpu) CPU=1 ;;
    --quick) QUICK=1 ;;
    *) echo "usage: bash bench/gpu/check.sh [--cpu] [--quick]"; exit 2 ;;
    esac
done
cd "$(dirname "$0")/../.."
G=$PWD/.gpu
[ -x "$G/bin/rotor-cuda-check" ] || { echo "no .gpu/: run bench/gpu/pack.sh on the build machine first"; exit 2; }
# cuBLAS: librotor_cuda.so looks in /usr/local/cuda/lib64 (its rpath); an image
# that has CUDA's libraries elsewhere (a Python wheel's nvidia/*/lib) is searched
CUBLAS_DIRS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
    $(find /usr/local /opt /usr/lib -name 'libcublas.so.1[0-9]*' -printf '%h\n' 2>/dev/null | sort -u | head -4); do
    [ -e "$d/libcublas.so.13" ] && CUBLAS_DIRS="$CUBLAS_DIRS:$d"
done
export LD_LIBRARY_PATH="$G/libs$CUBLAS_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd "$G/lib/librotor_cuda.so" | grep -i "cu\|not found" || true
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
gen qwen3-f16 --type f16 --arch qwen3 --tokenizer bpe --n-vocab 2000 --n-ctx 1024 --seed 47
gen llama-q8 --type q8_0 --tokenizer bpe --n-vocab 2000 --n-ctx 1024 --seed 43
gen smollm2-shape --type f16 --tokenizer bpe --n-layer 30 --n-embd 576 --n-head 9 --n-head-kv 3 --n-ff 1536 \
    --n-vocab 49152 --n-ctx 2048 --seed 44
rc=0
timeout 120 "${RUN[@]}" "$G/bin/rotor-cuda-check" 2>&1 | tee "$OUT/kernels.txt" || rc=1
engines=(llama-f16:5e-3 qwen2-f16:5e-3 qwen3-f16:5e-3 llama-q8:5e-2)
[ $QUICK = 1 ] && engines=(llama-f16:5e-3)
for m in "${engines[@]}"; do
    timeout 120 "${RUN[@]}" "$G/bin/rotor-cuda-check" --model "$M/${m%:*}.gguf" --tol "${m#*:}" 2>&1 \
        | grep -v "^cuda-check: \(rmsnorm\|matvec\|gemm\|qkv\|kv \|  (\)" \
        | tee -a "$OUT/engines.txt" || rc=1
done
# the cuda backend as configured by default (CUDA graphs, rotor's gemv for
# few tokens), without the gemv (cuBLAS for every matmul) and without
# graphs, interleaved; the cpu backend on this machine's cores with --cpu
runs=(default cublas default eager)
[ $QUICK = 1 ] && runs=(default default)
[ $CPU = 1 ] && runs+=(cpu)
bench() { # label, model, options...
    echo "bench-engine $1:" | tee -a "$OUT/bench.txt"
    timeout 150 "${RUN[@]}" "$G/bin/rotor" bench-engine --model "$2" "${@:3}" --seqs 1,16,64 --gen 64 2>&1 \
        | grep -v "^\[" | tee -a "$OUT/bench.txt" || rc=1
}
for run in "${runs[@]}"; do
    case $run in
    default) bench "cuda" "$M/smollm2-shape.gguf" --backend cuda ;;
    cublas) bench "cuda, cuBLAS always" "$M/smollm2-shape.gguf" --backend cuda --cuda-gemv-max-tokens 0 ;;
    eager) bench "cuda, no graphs" "$M/smollm2-shape.gguf" --backend cuda --cuda-graph-max-tokens 0 ;;
    cpu) bench "cpu" "$M/smollm2-shape.gguf" --backend cpu ;;
    esac
done
# a model of Llama-3.2-1B's shape (1.2B parameters, 2.5 GB in f16 with 0.5
# GB more for its untied output matrix): decode where the weights' bytes,
# not launches, should set the pace
gen llama1b-shape --type f16 --tokenizer bpe --n-layer 16 --n-embd 2048 --n-head 32 --n-head-kv 8 --n-ff 8192 \
    --n-vocab 128256 --n-ctx 4096 --seed 48
bench "cuda (Llama-3.2-1B's shape)" "$M/llama1b-shape.gguf" --backend cuda
[ $QUICK = 1 ] || bench "cuda, cuBLAS always (Llama-3.2-1B's shape)" "$M/llama1b-shape.gguf" --backend cuda \
    --cuda-gemv-max-tokens 0
# each kernel's time in a decode step of one sequence (ncu, eager so that
# every kernel is its own launch; a step is ~275 launches after the prefill's)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ] && [ ${#RUN[@]} -eq 0 ] && [ $QUICK = 0 ]; then
    for model in smollm2-shape llama1b-shape; do
        timeout 150 "$NCU" --clock-control none --launch-skip 700 --launch-count 300 --metrics gpu__time_duration.sum \
            --csv --print-units base "$G/bin/rotor" bench-engine --backend cuda --cuda-graph-max-tokens 0 \
            --model "$M/$model.gguf" --seqs 1 --gen 8 --prefix-tokens 32 > "$OUT/ncu-$model.csv" 2> "$OUT/ncu-$model.err"
        echo "ncu $model: exit $? ($(wc -l < "$OUT/ncu-$model.csv") lines)"
    done
fi
# the kernels again under compute-sanitizer (out-of-bounds accesses, races),
# where the image has it
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$CS" ] && [ ${#RUN[@]} -eq 0 ]; then
    for tool in memcheck racecheck; do
        echo "compute-sanitizer --tool $tool rotor-cuda-check:" | tee -a "$OUT/sanitizer.txt"
        timeout 150 "$CS" --tool $tool --error-exitcode 9 "$G/bin/rotor-cuda-check" 2>&1 | tail -15 \
            | tee -a "$OUT/sanitizer.txt"
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    done
fi
echo "check.sh: exit $rc"
exit $rc
