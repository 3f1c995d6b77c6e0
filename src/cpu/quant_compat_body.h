/*
 * quant_compat_body.h - body of the llama.cpp-order Q4_1/Q8_0 dot tiles,
 * included by quant_compat_avx512.c (VNNI) and quant_compat_avx2.c (maddubs)
 * with COMPAT_DOT4(u8x32, s8x32) -> 8 int32 sums of 4 consecutive products
 * and COMPAT_NAME(type) naming the entry points. See quant_compat_avx512.c
 * for the order.
 */
#include <immintrin.h>

#include "cpu/quant_impl.h"

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 x)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* 32 unsigned nibbles of a q4 block in element order */
AI __m256i nibbles32(const uint8_t *qs)
{
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m256i t = _mm256_insertf128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x0F));
}

AI void q4_1_tile_body(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs,
                       const int NR, float *out)
{
    const int64_t nb = n / 32;
    __m256 acc[CPU_DOT_NW][CPU_DOT_NR];
    float mins[CPU_DOT_NW][CPU_DOT_NR];
    for (int i = 0; i < NW; i++)
        for (int k = 0; k < NR; k++) {
            acc[i][k] = _mm256_setzero_ps();
            mins[i][k] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i qy[CPU_DOT_NR];
        float dy[CPU_DOT_NR], sy[CPU_DOT_NR];
        for (int k = 0; k < NR; k++) {
            const block_q8_1 *y = (const block_q8_1 *)((const char *)x + (size_t)k * xs) + b;
            qy[k] = _mm256_loadu_si256((const __m256i *)y->qs);
            dy[k] = _cvtsh_ss(y->d);
            sy[k] = _cvtsh_ss(y->s);
        }
        for (int i = 0; i < NW; i++) {
            const block_q4_1 *a = (const block_q4_1 *)((const char *)w + (size_t)i * ws) + b;
            const __m256i qx = nibbles32(a->qs);
            const float dx = _cvtsh_ss(a->d), mx = _cvtsh_ss(a->m);
            for (int k = 0; k < NR; k++) {
                const __m256 xy =
                    _mm256_cvtepi32_ps(COMPAT_DOT4(qx, qy[k]));
                acc[i][k] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[k]), xy, acc[i][k]);
                mins[i][k] = __builtin_fmaf(mx, sy[k], mins[i][k]);
            }
        }
    }
    for (int i = 0; i < NW; i++)
        for (int k = 0; k < NR; k++) out[i * CPU_DOT_NR + k] = hsum8(acc[i][k]) + mins[i][k];
}

AI void q8_0_tile_body(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs,
                       const int NR, float *out)
{
    const int64_t nb = n / 32;
    __m256 acc[CPU_DOT_NW][CPU_DOT_NR];
    for (int i = 0; i < NW; i++)
        for (int k = 0; k < NR; k++) acc[i][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i qy[CPU_DOT_NR];
        float dy[CPU_DOT_NR];
        for (int k = 0; k < NR; k++) {
            const block_q8_0 *y = (const block_q8_0 *)((const char *)x + (size_t)k * xs) + b;
            qy[k] = _mm256_loadu_si256((const __m256i *)y->qs);
            dy[k] = _cvtsh_ss(y->d);
        }
        for (int i = 0; i < NW; i++) {
            const block_q8_0 *a = (const block_q8_0 *)((const char *)w + (size_t)i * ws) + b;
            const __m256i qx = _mm256_loadu_si256((const __m256i *)a->qs);
            const __m256i ax = _mm256_sign_epi8(qx, qx);
            const float dx = _cvtsh_ss(a->d);
            for (int k = 0; k < NR; k++) {
                const __m256i sy = _mm256_sign_epi8(qy[k], qx);
                const __m256 q = _mm256_cvtepi32_ps(COMPAT_DOT4(ax, sy));
                acc[i][k] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[k]), q, acc[i][k]);
            }
        }
    }
    for (int i = 0; i < NW; i++)
        for (int k = 0; k < NR; k++) out[i * CPU_DOT_NR + k] = hsum8(acc[i][k]);
}

#define COMPAT_ENTRY(name)                                                                         \
    void COMPAT_NAME(name)(int64_t n, const void *w, size_t ws, int nw, const void *x,    \
                                    size_t xs, int nr, float *out)                                 \
    {                                                                                              \
        if (nw == 4 && nr == 1) name##_tile_body(n, w, ws, 4, x, xs, 1, out);                      \
        else if (nw == 4 && nr == 4) name##_tile_body(n, w, ws, 4, x, xs, 4, out);                 \
        else if (nw == 1 && nr == 1) name##_tile_body(n, w, ws, 1, x, xs, 1, out);                 \
        else name##_tile_body(n, w, ws, nw, x, xs, nr, out);                                       \
    }

COMPAT_ENTRY(q4_1)
COMPAT_ENTRY(q8_0)
