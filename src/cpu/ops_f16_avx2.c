/*
 * ops_f16_avx2.c - f16 -> f32 row conversion with F16C (compiled with
 * -mavx2 -mf16c; called only after a cpuid check in ops.c).
 */
#include <immintrin.h>
#include <stdint.h>

#include "rotor/types.h"

void cpu_f16_to_f32_row_avx2(const uint16_t *src, float *dst, int n);

void cpu_f16_to_f32_row_avx2(const uint16_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

void cpu_f32_to_f16_row_avx2(const float *src, uint16_t *dst, int n);

void cpu_f32_to_f16_row_avx2(const float *src, uint16_t *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = rt_fp32_to_fp16(src[i]);
}
