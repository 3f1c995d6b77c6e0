/*
 * quant_dot_avx512.c - AVX-512 (F/BW/VL/DQ/VNNI) dot-tile kernels and
 * activation quantizers. Compiled with -mavx512*; called only after cpuid.
 *
 * Integer products use VNNI vpdpbusd (u8 x s8): 4-bit weights are unsigned
 * nibbles; signed weights use |w| and move the sign onto the activation.
 * Two 32-blocks share one zmm. Each kernel body is an always-inline function
 * of a compile-time tile height NR: every activation row of the tile has its
 * own accumulators and sees the exact same instruction sequence, so results
 * do not depend on NR (batch invariance); the weight unpacking is shared.
 */
#include <immintrin.h>
#include <math.h>

#include "cpu/quant_impl.h"

#define AI static inline __attribute__((always_inline))

AI float h2f(rt_half h)
{
    return _cvtsh_ss(h);
}

/* Fixed-order horizontal sum of 16 floats. */
AI float hsum512(__m512 v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

AI float hsum256(__m256 a)
{
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* Two 32-element scale broadcasts in one zmm: lanes 0-7 s0, 8-15 s1. */
AI __m512 scale2(float s0, float s1)
{
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

/* Two 32-byte rows (at p0 and p1) in one zmm. */
AI __m512i load2x256(const void *p0, const void *p1)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* Nibbles of two 16-byte q4 arrays, as [lo0 hi0 lo1 hi1] (element order). */
AI __m512i unpack_q4_pair(const uint8_t *q0, const uint8_t *q1)
{
    const __m256i ab = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q0)),
        _mm_loadu_si128((const __m128i *)q1), 1);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(ab), _mm256_srli_epi16(ab, 4), 1);
    v = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
    /* [q0lo q1lo q0hi q1hi] -> [q0lo q0hi q1lo q1hi] */
    return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
}

#define XROW(T, x, xs, k) ((const T *)((const char *)(x) + (size_t)(k) * (xs)))

/* ------------------------------------------------------------- Q4_1 x Q8_1 */

AI void q4_1_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out)
{
    const block_q4_1 *a = w;
    const int64_t nb = n / QK4_1;
    __m512 acc[CPU_DOT_NR][2];
    float summ[CPU_DOT_NR];
    for (int k = 0; k < NR; k++) {
        acc[k][0] = acc[k][1] = _mm512_setzero_ps();
        summ[k] = 0.0f;
    }
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const int u = (int)((i >> 1) & 1);
        const __m512i wq = unpack_q4_pair(a[i].qs, a[i + 1].qs);
        const float d0 = h2f(a[i].d), d1 = h2f(a[i + 1].d);
        const float m0 = h2f(a[i].m), m1 = h2f(a[i + 1].m);
        for (int k = 0; k < NR; k++) {
            const block_q8_1 *b = XROW(block_q8_1, x, xs, k);
            const __m512i y = load2x256(b[i].qs, b[i + 1].qs);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, y);
            const __m512 s = scale2(d0 * h2f(b[i].d), d1 * h2f(b[i + 1].d));
            acc[k][u] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[k][u]);
            summ[k] += m0 * h2f(b[i].s);
            summ[k] += m1 * h2f(b[i + 1].s);
        }
    }
    if (i < nb) {
        const __m512i wq = unpack_q4_pair(a[i].qs, a[i].qs);
        const float d0 = h2f(a[i].d), m0 = h2f(a[i].m);
        for (int k = 0; k < NR; k++) {
            const block_q8_1 *b = XROW(block_q8_1, x, xs, k);
            const __m512i y = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[i].qs));
            const __m512i p = _mm512_maskz_dpbusd_epi32(0x00FF, _mm512_setzero_si512(), wq, y);
            const __m512 s = scale2(d0 * h2f(b[i].d), 0.0f);
            acc[k][0] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[k][0]);
            summ[k] += m0 * h2f(b[i].s);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum512(_mm512_add_ps(acc[k][0], acc[k][1])) + summ[k];
}

/* ------------------------------------------------- Q4_0 / Q8_0 x Q8_0 */

/* Signed weights w (64 bytes, two blocks): |w| and the sign mask. */
AI void signed_pair(__m512i wv, __m512i *absw, __mmask64 *neg)
{
    *absw = _mm512_abs_epi8(wv);
    *neg = _mm512_movepi8_mask(wv);
}

AI __m512i dot_signed(__m512i absw, __mmask64 neg, __m512i y, __mmask16 lanes)
{
    const __m512i ys = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    return _mm512_maskz_dpbusd_epi32(lanes, _mm512_setzero_si512(), absw, ys);
}

AI void q8_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out,
                const bool is_q4)
{
    const int64_t nb = n / 32;
    __m512 acc[CPU_DOT_NR][2];
    for (int k = 0; k < NR; k++)
        acc[k][0] = acc[k][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        const int64_t i1 = two ? i + 1 : i;
        const __mmask16 lanes = two ? 0xFFFF : 0x00FF;
        const int u = (int)((i >> 1) & 1);
        __m512i wv;
        float d0, d1;
        if (is_q4) {
            const block_q4_0 *a = w;
            wv = _mm512_sub_epi8(unpack_q4_pair(a[i].qs, a[i1].qs), _mm512_set1_epi8(8));
            d0 = h2f(a[i].d);
            d1 = two ? h2f(a[i1].d) : 0.0f;
        } else {
            const block_q8_0 *a = w;
            wv = load2x256(a[i].qs, a[i1].qs);
            d0 = h2f(a[i].d);
            d1 = two ? h2f(a[i1].d) : 0.0f;
        }
        __m512i absw;
        __mmask64 neg;
        signed_pair(wv, &absw, &neg);
        for (int k = 0; k < NR; k++) {
            const block_q8_0 *b = XROW(block_q8_0, x, xs, k);
            const __m512i y = load2x256(b[i].qs, b[i1].qs);
            const __m512i p = dot_signed(absw, neg, y, lanes);
            const __m512 s = scale2(d0 * h2f(b[i].d), d1 * h2f(b[i1].d));
            acc[k][u] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p), acc[k][u]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum512(_mm512_add_ps(acc[k][0], acc[k][1]));
}

AI void q8_0_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out)
{
    q8_tile(n, w, x, xs, NR, out, false);
}

AI void q4_0_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out)
{
    q8_tile(n, w, x, xs, NR, out, true);
}

/* ------------------------------------------------------------- Q6_K x Q8_K */

AI void q6_K_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out)
{
    const block_q6_K *a = w;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i rep4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc[CPU_DOT_NR];
    for (int k = 0; k < NR; k++)
        acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m512i v[4], sc[4];
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)a[i].scales);
        const __m512i sc32 = _mm512_cvtepi8_epi32(sc8);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(a[i].ql + 64 * h);
            const __m256i H = _mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h));
            const __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(H, 4)),
                                                   _mm256_slli_epi16(H, 2), 1);
            const __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(H),
                                                   _mm256_srli_epi16(H, 2), 1);
            v[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(h01, m30));
            v[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                           _mm512_and_si512(h23, m30));
        }
        for (int g = 0; g < 4; g++)
            sc[g] = _mm512_permutexvar_epi32(
                _mm512_add_epi32(rep4, _mm512_set1_epi32(4 * g)), sc32);
        const float d = h2f(a[i].d);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            __m512i sum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                const __m512i y = _mm512_loadu_si512(b->qs + 64 * g);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[g], y);
                sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(p, sc[g]));
            }
            /* the -32 offset: sum_g sc_g * 32 * bsum_g */
            const __m256i corr =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), sc16);
            sum = _mm512_sub_epi32(sum, _mm512_castsi256_si512(_mm256_slli_epi32(corr, 5)));
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d * b->d), _mm512_cvtepi32_ps(sum), acc[k]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum512(acc[k]);
}

/* ------------------------------------------------------------- Q4_K x Q8_K */

AI void q4_K_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out)
{
    const block_q4_K *a = w;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[CPU_DOT_NR];
    __m256 accm[CPU_DOT_NR];
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm512_setzero_ps();
        accm[k] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        uint32_t u[4];
        memcpy(u, a[i].scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t uaux = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = uaux;
        u[0] &= 0x3f3f3f3fu;
        /* u bytes 0-7: scales, 8-15: mins */
        const __m128i sm = _mm_loadu_si128((const __m128i *)u);
        const __m512i sc32 = _mm512_cvtepu8_epi32(sm); /* lanes 0-7 scales */
        /* mins duplicated per 16-group: [m0 m0 m1 m1 ... m7 m7] as int16 */
        const __m128i mins8 = _mm_unpackhi_epi8(sm, sm);
        const __m256i mins16 = _mm256_cvtepu8_epi16(mins8);
        __m512i v[4], sc[4];
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c));
            v[c] = _mm512_and_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
            /* lanes 0-7: scale 2c, lanes 8-15: scale 2c+1 */
            const __m512i idx = _mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c,
                                                 2 * c);
            sc[c] = _mm512_permutexvar_epi32(idx, sc32);
        }
        const float d = h2f(a[i].d), dmin = h2f(a[i].dmin);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            __m512i sum = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                const __m512i y = _mm512_loadu_si512(b->qs + 64 * c);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[c], y);
                sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(p, sc[c]));
            }
            const __m256i mm =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), mins16);
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d * b->d), _mm512_cvtepi32_ps(sum), acc[k]);
            accm[k] =
                _mm256_fmadd_ps(_mm256_set1_ps(dmin * b->d), _mm256_cvtepi32_ps(mm), accm[k]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum512(acc[k]) - hsum256(accm[k]);
}

/* ------------------------------------------------------ F32 / F16 / BF16 */

/* Load 16 elements of a float-like row as floats (masked tail). */
AI __m512 ld_f32(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}

AI __m512 ld_f16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

AI __m512 ld_bf16(const uint16_t *p, __mmask16 m)
{
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

#define FLOAT_TILE(name, T, LD)                                                               \
    AI void name##_tile(int64_t n, const void *w, const void *x, size_t xs, const int NR,     \
                        float *out)                                                           \
    {                                                                                         \
        const T *a = w;                                                                       \
        __m512 acc[CPU_DOT_NR][2];                                                            \
        for (int k = 0; k < NR; k++)                                                          \
            acc[k][0] = acc[k][1] = _mm512_setzero_ps();                                      \
        int64_t i = 0;                                                                        \
        for (; i + 32 <= n; i += 32) {                                                        \
            const __m512 w0 = LD(a + i, 0xFFFF), w1 = LD(a + i + 16, 0xFFFF);                 \
            for (int k = 0; k < NR; k++) {                                                    \
                const T *b = XROW(T, x, xs, k);                                               \
                acc[k][0] = _mm512_fmadd_ps(w0, LD(b + i, 0xFFFF), acc[k][0]);                \
                acc[k][1] = _mm512_fmadd_ps(w1, LD(b + i + 16, 0xFFFF), acc[k][1]);           \
            }                                                                                 \
        }                                                                                     \
        for (; i < n; i += 16) {                                                              \
            const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);      \
            const __m512 w0 = LD(a + i, m);                                                   \
            for (int k = 0; k < NR; k++) {                                                    \
                const T *b = XROW(T, x, xs, k);                                               \
                acc[k][0] = _mm512_fmadd_ps(w0, LD(b + i, m), acc[k][0]);                     \
            }                                                                                 \
        }                                                                                     \
        for (int k = 0; k < NR; k++)                                                          \
            out[k] = hsum512(_mm512_add_ps(acc[k][0], acc[k][1]));                            \
    }

FLOAT_TILE(f32, float, ld_f32)
FLOAT_TILE(f16, uint16_t, ld_f16)
FLOAT_TILE(bf16, uint16_t, ld_bf16)

/* ---------------------------------------------------------------- tables */

#define TILE_ENTRY(name)                                                                      \
    static void tile512_##name(int64_t n, const void *w, const void *x, size_t xs, int nr,    \
                               float *out)                                                    \
    {                                                                                         \
        switch (nr) {                                                                         \
        case 1: name##_tile(n, w, x, xs, 1, out); break;                                      \
        case 2: name##_tile(n, w, x, xs, 2, out); break;                                      \
        case 3: name##_tile(n, w, x, xs, 3, out); break;                                      \
        default: name##_tile(n, w, x, xs, 4, out); break;                                     \
        }                                                                                     \
    }

TILE_ENTRY(q4_0)
TILE_ENTRY(q4_1)
TILE_ENTRY(q8_0)
TILE_ENTRY(q4_K)
TILE_ENTRY(q6_K)
TILE_ENTRY(f32)
TILE_ENTRY(f16)
TILE_ENTRY(bf16)

const cpu_dot_tile_fn cpu_dot_avx512[RT_TYPE_COUNT] = {
    [RT_TYPE_F32] = tile512_f32,   [RT_TYPE_F16] = tile512_f16,   [RT_TYPE_BF16] = tile512_bf16,
    [RT_TYPE_Q4_0] = tile512_q4_0, [RT_TYPE_Q4_1] = tile512_q4_1, [RT_TYPE_Q8_0] = tile512_q8_0,
    [RT_TYPE_Q4_K] = tile512_q4_K, [RT_TYPE_Q6_K] = tile512_q6_K,
};

/* ------------------------------------------------- activation quantizers */

/* roundf (half away from zero), exactly, for |v| < 2^23. */
AI __m512 round_away(__m512 v)
{
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f),
                                    _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_add_ps(t, up, t, one);
}

static void act_q8_0(const float *x, block_q8_0 *y, int64_t nb, bool with_sum)
{
    block_q8_1 *y1 = (block_q8_1 *)(void *)y;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, vid)));
        const __m512i q1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, vid)));
        const __m128i b0 = _mm512_cvtepi32_epi8(q0), b1 = _mm512_cvtepi32_epi8(q1);
        if (with_sum) {
            y1[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128((__m128i *)y1[i].qs, b0);
            _mm_storeu_si128((__m128i *)(y1[i].qs + 16), b1);
            const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            y1[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
        } else {
            y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128((__m128i *)y[i].qs, b0);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16), b1);
        }
    }
}

static void act_q8_K(const float *x, block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        __m512 am = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16)
            am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(am);
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 16) {
            /* nearest_int == round half to even (the MXCSR default) */
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), vs));
            q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[i].qs + j), _mm512_cvtepi32_epi8(q));
            y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1 / iscale;
    }
}

void cpu_quantize_act_avx512(rt_type_t vt, const float *src, void *dst, int64_t n)
{
    switch (vt) {
    case RT_TYPE_Q8_0: act_q8_0(src, dst, n / 32, false); break;
    case RT_TYPE_Q8_1: act_q8_0(src, dst, n / 32, true); break;
    case RT_TYPE_Q8_K: act_q8_K(src, dst, n / QK_K); break;
    default: (void)cpu_ref_quantize(vt, src, dst, n); break;
    }
}
