#!/usr/bin/env bash
# bench/gpu/check.sh - the one prepared script for a GPU machine (device tool):
# build the CUDA kernels and run every kernel against its CPU reference.
# Usage on the device machine: bash bench/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
BUILD=${BUILD:-build/gpu}
# only the C library and the CUDA check binary: no Python deps needed
make --no-print-directory BUILD="$BUILD" "$BUILD/bin/rotor-cuda-check"
"$BUILD/bin/rotor-cuda-check"
