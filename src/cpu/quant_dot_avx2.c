/*
 * quant_dot_avx2.c - AVX2/FMA/F16C dot-tile kernels for CPUs without
 * AVX-512. Compiled with -mavx2 -mfma -mf16c; called only after cpuid.
 *
 * One 32-block per ymm. u8 x s8 products with vpmaddubsw + vpmaddwd;
 * signed weights move their sign onto the activation (vpsignb), as in
 * ggml. Like the AVX-512 file, each kernel is an always-inline function of
 * compile-time tile sizes whose per-(weight row, activation row) operation
 * sequence does not depend on them (batch invariance).
 */
#define DOT_NAME(t) tile2_##t
#include "cpu/quant_dot_body.h"

/* 16 q4 bytes -> 32 nibbles in element order. */
AI __m256i unpack_q4(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m256i t = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x0F));
}

/* 0x10 in byte j where bit j of x is set (the 5th bits of a Q5 block). */
AI __m256i hbits(const uint8_t *qh) {
    uint32_t x;
    memcpy(&x, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

/* u8 x s8 dot in 8 int32 lanes (no saturation for our ranges). */
AI __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* ------------------------------------- 32-blocks: Q4_0, Q5_0, Q5_1 */

AI void q32_tile(const int KIND, int64_t n, const void *w, size_t ws, const int NW, const void *x,
                 size_t xs, const int NR, float *out) {
    const int64_t nb = n / 32;
    __m256 acc[2][CPU_DOT_NW][CPU_DOT_NR];
    float summ[CPU_DOT_NW][CPU_DOT_NR];
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++) {
            acc[0][iw][k] = acc[1][iw][k] = _mm256_setzero_ps();
            summ[iw][k] = 0.0f;
        }
    for (int64_t i = 0; i < nb; i++) {
        const int u = (int)(i & 1);
        __m256i wq[CPU_DOT_NW];
        float dw[CPU_DOT_NW], mw[CPU_DOT_NW];
        for (int iw = 0; iw < NW; iw++) {
            if (KIND == K_Q5_1) {
                const block_q5_1 *a = XROW(block_q5_1, w, ws, iw) + i;
                wq[iw] = _mm256_or_si256(unpack_q4(a->qs), hbits(a->qh));
                dw[iw] = h2f(a->d);
                mw[iw] = h2f(a->m);
            } else if (KIND == K_Q5_0) {
                const block_q5_0 *a = XROW(block_q5_0, w, ws, iw) + i;
                wq[iw] = _mm256_sub_epi8(_mm256_or_si256(unpack_q4(a->qs), hbits(a->qh)),
                                         _mm256_set1_epi8(16));
                dw[iw] = h2f(a->d);
            } else {
                const block_q4_0 *a = XROW(block_q4_0, w, ws, iw) + i;
                wq[iw] = _mm256_sub_epi8(unpack_q4(a->qs), _mm256_set1_epi8(8));
                dw[iw] = h2f(a->d);
            }
        }
        for (int k = 0; k < NR; k++) {
            __m256i y;
            float dy, sy = 0.0f;
            if (HAS_MIN(KIND)) {
                const block_q8_1 *b = XROW(block_q8_1, x, xs, k) + i;
                y = _mm256_loadu_si256((const __m256i *)b->qs);
                dy = h2f(b->d);
                sy = h2f(b->s);
            } else {
                const block_q8_0 *b = XROW(block_q8_0, x, xs, k) + i;
                y = _mm256_loadu_si256((const __m256i *)b->qs);
                dy = h2f(b->d);
            }
            for (int iw = 0; iw < NW; iw++) {
                __m256i p;
                if (HAS_MIN(KIND))
                    p = dot_us8(wq[iw], y);
                else
                    p = dot_us8(_mm256_sign_epi8(wq[iw], wq[iw]), _mm256_sign_epi8(y, wq[iw]));
                acc[u][iw][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw[iw] * dy), _mm256_cvtepi32_ps(p),
                                                acc[u][iw][k]);
                if (HAS_MIN(KIND)) summ[iw][k] += mw[iw] * sy;
            }
        }
    }
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++)
            out[iw * CPU_DOT_NR + k] =
                hsum256(_mm256_add_ps(acc[0][iw][k], acc[1][iw][k])) + summ[iw][k];
}

/* ------------------------------------------------------------- Q6_K x Q8_K */

/* sum over the 8 32-element groups c of madd(maddubs(v[c], y[c]), sc[c]):
 * the integer part of the K-quant tiles. */
AI __m256i qk_sum(const __m256i v[8], const __m256i sc[8], const block_q8_K *b) {
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        const __m256i y = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        const __m256i p = _mm256_maddubs_epi16(v[c], y);
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc[c]));
    }
    return sum;
}

AI __m256i sc16_pair(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

AI void q6_K_tile1(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out) {
    const block_q6_K *a = w;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[CPU_DOT_NR];
    for (int k = 0; k < NR; k++)
        acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i v[8], sc[8];
        for (int h = 0; h < 2; h++) {
            const __m256i L0 = _mm256_loadu_si256((const __m256i *)(a[i].ql + 64 * h));
            const __m256i L1 = _mm256_loadu_si256((const __m256i *)(a[i].ql + 64 * h + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h));
            v[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(L0, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            v[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(L1, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            v[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4),
                                           _mm256_and_si256(H, m30));
            v[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
        }
        for (int c = 0; c < 8; c++)
            sc[c] = sc16_pair(a[i].scales[2 * c], a[i].scales[2 * c + 1]);
        const __m256i scl = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        const float d = h2f(a[i].d);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            __m256i sum = qk_sum(v, sc, b);
            const __m256i corr =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), scl);
            sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(corr, 5));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * b->d), _mm256_cvtepi32_ps(sum), acc[k]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum256(acc[k]);
}

/* ------------------------------------------------- Q4_K / Q5_K x Q8_K */

AI void qk45_tile1(const bool Q5, int64_t n, const void *w, const void *x, size_t xs, const int NR,
                   float *out) {
    const int64_t nb = n / QK_K;
    const size_t bsz = Q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc[CPU_DOT_NR], accm[CPU_DOT_NR];
    for (int k = 0; k < NR; k++)
        acc[k] = accm[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = (const char *)w + (size_t)i * bsz;
        const block_q4_K *a4 = (const block_q4_K *)blk; /* d, dmin, scales: same offsets */
        const uint8_t *qs = Q5 ? ((const block_q5_K *)blk)->qs : a4->qs;
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            cpu_scale_min_k4(j, a4->scales, &sc[j], &mn[j]);
        const __m256i mins16 =
            _mm256_set_epi16(mn[7], mn[7], mn[6], mn[6], mn[5], mn[5], mn[4], mn[4], mn[3], mn[3],
                             mn[2], mn[2], mn[1], mn[1], mn[0], mn[0]);
        __m256i H = _mm256_setzero_si256();
        if (Q5) H = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
        __m256i v[8], s16[8];
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            v[2 * c] = _mm256_and_si256(q, m4);
            v[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (Q5) {
                const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(H, 2 * c), one);
                const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(H, 2 * c + 1), one);
                v[2 * c] = _mm256_or_si256(v[2 * c], _mm256_slli_epi16(h0, 4));
                v[2 * c + 1] = _mm256_or_si256(v[2 * c + 1], _mm256_slli_epi16(h1, 4));
            }
            s16[2 * c] = _mm256_set1_epi16(sc[2 * c]);
            s16[2 * c + 1] = _mm256_set1_epi16(sc[2 * c + 1]);
        }
        const float d = h2f(a4->d), dmin = h2f(a4->dmin);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            const __m256i sum = qk_sum(v, s16, b);
            const __m256i mm =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), mins16);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * b->d), _mm256_cvtepi32_ps(sum), acc[k]);
            accm[k] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * b->d), _mm256_cvtepi32_ps(mm), accm[k]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum256(acc[k]) - hsum256(accm[k]);
}

PER_ROW_TILE(q4_K)
PER_ROW_TILE(q5_K)
PER_ROW_TILE(q6_K)

/* ------------------------------------------------------ F32 / F16 / BF16 */

AI __m256 ld_f32(const float *p) {
    return _mm256_loadu_ps(p);
}

AI __m256 ld_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AI __m256 ld_bf16(const uint16_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 16 elements per step in two accumulators; the tail (n % 16) goes through
 * zero-padded copies so the same step code handles it. */
#define FLOAT_TILE(name, T, LD)                                                                    \
    AI void name##_step(const T *const *wr, const int NW, const T *const *xr, const int NR,        \
                        int64_t i, __m256 acc0[][CPU_DOT_NR], __m256 acc1[][CPU_DOT_NR]) {         \
        __m256 w0[CPU_DOT_NW], w1[CPU_DOT_NW];                                                     \
        for (int iw = 0; iw < NW; iw++) {                                                          \
            w0[iw] = LD(wr[iw] + i);                                                               \
            w1[iw] = LD(wr[iw] + i + 8);                                                           \
        }                                                                                          \
        for (int k = 0; k < NR; k++) {                                                             \
            const __m256 y0 = LD(xr[k] + i), y1 = LD(xr[k] + i + 8);                               \
            for (int iw = 0; iw < NW; iw++) {                                                      \
                acc0[iw][k] = _mm256_fmadd_ps(w0[iw], y0, acc0[iw][k]);                            \
                acc1[iw][k] = _mm256_fmadd_ps(w1[iw], y1, acc1[iw][k]);                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    AI void name##_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x,          \
                        size_t xs, const int NR, float *out) {                                     \
        __m256 acc0[CPU_DOT_NW][CPU_DOT_NR], acc1[CPU_DOT_NW][CPU_DOT_NR];                         \
        const T *wr[CPU_DOT_NW], *xr[CPU_DOT_NR];                                                  \
        for (int iw = 0; iw < NW; iw++)                                                            \
            wr[iw] = XROW(T, w, ws, iw);                                                           \
        for (int k = 0; k < NR; k++)                                                               \
            xr[k] = XROW(T, x, xs, k);                                                             \
        for (int iw = 0; iw < NW; iw++)                                                            \
            for (int k = 0; k < NR; k++)                                                           \
                acc0[iw][k] = acc1[iw][k] = _mm256_setzero_ps();                                   \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16)                                                               \
            name##_step(wr, NW, xr, NR, i, acc0, acc1);                                            \
        if (i < n) {                                                                               \
            T tw[CPU_DOT_NW][16], tx[CPU_DOT_NR][16];                                              \
            const T *pw[CPU_DOT_NW], *px[CPU_DOT_NR];                                              \
            memset(tw, 0, sizeof(tw));                                                             \
            memset(tx, 0, sizeof(tx));                                                             \
            for (int iw = 0; iw < NW; iw++) {                                                      \
                memcpy(tw[iw], wr[iw] + i, (size_t)(n - i) * sizeof(T));                           \
                pw[iw] = tw[iw];                                                                   \
            }                                                                                      \
            for (int k = 0; k < NR; k++) {                                                         \
                memcpy(tx[k], xr[k] + i, (size_t)(n - i) * sizeof(T));                             \
                px[k] = tx[k];                                                                     \
            }                                                                                      \
            name##_step(pw, NW, px, NR, 0, acc0, acc1);                                            \
        }                                                                                          \
        for (int iw = 0; iw < NW; iw++)                                                            \
            for (int k = 0; k < NR; k++)                                                           \
                out[iw * CPU_DOT_NR + k] = hsum256(_mm256_add_ps(acc0[iw][k], acc1[iw][k]));       \
    }

FLOAT_TILE(f32, float, ld_f32)
FLOAT_TILE(f16, uint16_t, ld_f16)
FLOAT_TILE(bf16, uint16_t, ld_bf16)

/* ---------------------------------------------------------------- tables */

/* nr > 1: two weight rows per tile for every kernel (16 ymm accumulators at most). */

TILE_ENTRY(q4_0, 2)
TILE_ENTRY(q5_0, 2)
TILE_ENTRY(q5_1, 2)
TILE_ENTRY(q4_K, 2)
TILE_ENTRY(q5_K, 2)
TILE_ENTRY(q6_K, 2)
TILE_ENTRY(f32, 2)
TILE_ENTRY(f16, 2)
TILE_ENTRY(bf16, 2)

const cpu_dot_tile_fn cpu_dot_avx2[RT_TYPE_COUNT] = {
    [RT_TYPE_F32] = tile2_f32,   [RT_TYPE_F16] = tile2_f16,   [RT_TYPE_BF16] = tile2_bf16,
    [RT_TYPE_Q4_0] = tile2_q4_0, [RT_TYPE_Q4_1] = cpu_compat_q4_1_avx2, [RT_TYPE_Q8_0] = cpu_compat_q8_0_avx2,
    [RT_TYPE_Q5_0] = tile2_q5_0, [RT_TYPE_Q5_1] = tile2_q5_1, [RT_TYPE_Q4_K] = tile2_q4_K,
    [RT_TYPE_Q5_K] = tile2_q5_K, [RT_TYPE_Q6_K] = tile2_q6_K,
};
