/*
 * quant_dot_avx2.c - AVX2/FMA/F16C dot-tile kernels (for CPUs without
 * AVX-512). Compiled with -mavx2 -mfma -mf16c; called only after cpuid.
 */
#include <immintrin.h>

#include "cpu/quant_impl.h"

const cpu_dot_tile_fn cpu_dot_avx2[RT_TYPE_COUNT] = {0};
