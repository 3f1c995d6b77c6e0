/*
 * quant_compat_avx2.c - the llama.cpp-order Q4_1/Q8_0 dot tiles for AVX2
 * without VNNI: maddubs (u8 x s8 -> i16 pairs, no overflow for these
 * ranges) then madd with ones (-> i32 sums of 4). Same integers, same float
 * order as quant_compat_avx512.c. Compiled with -mavx2 -mfma -mf16c.
 */
#include <immintrin.h>

static inline __attribute__((always_inline)) __m256i compat_dot4_avx2(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
#define COMPAT_DOT4(u, s) compat_dot4_avx2((u), (s))
#define COMPAT_NAME(t) cpu_compat_##t##_avx2
#include "cpu/quant_compat_body.h"
