#!/usr/bin/env bash
# bench/gpu/pack.sh - run HERE (the build machine, which has nvcc but no GPU):
# build rotor with its CUDA library and gather what bench/gpu/check.sh needs on
# the GPU machine into .gpu/ (ignored by git): rotor-cuda-check, rotor-model,
# rotor (for bench-engine), librotor_cuda.so, and the shared libraries those binaries load that a bare
# CUDA image lacks. The device tool then carries .gpu/ along:
#   run(command="bash bench/gpu/check.sh", carry=[".gpu"])
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/gpu}
make --no-print-directory BUILD="$BUILD" "$BUILD/bin/rotor-cuda-check" "$BUILD/bin/rotor-model" \
    "$BUILD/bin/rotor" "$BUILD/lib/librotor_cuda.so"
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/libs
cp "$BUILD/bin/rotor-cuda-check" "$BUILD/bin/rotor-model" "$BUILD/bin/rotor" .gpu/bin/
cp "$BUILD/lib/librotor_cuda.so" .gpu/lib/
# glibc and the C++ runtime go to .gpu/glibc, used only if the GPU machine's
# own C library is older than this one's (check.sh then starts the binaries
# through the bundled loader)
mkdir -p .gpu/glibc
glibc='^(libc|libm|libdl|librt|libpthread|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.'
for b in .gpu/bin/* .gpu/lib/*; do
    ldd "$b" | awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'
done | sort -u | while read -r lib; do
    name=$(basename "$lib")
    [[ $name =~ ^libcu ]] && continue # CUDA's own (cuBLAS): the GPU machine has them
    if [[ $name =~ $glibc ]]; then cp -L "$lib" .gpu/glibc/; else cp -L "$lib" .gpu/libs/; fi
done
strip --strip-debug .gpu/bin/* .gpu/lib/* .gpu/libs/* 2>/dev/null || true # the carry limit is 64 MiB
du -sh .gpu
