/*
 * quant_dot_avx512.c - AVX-512 (F/BW/VL/DQ/VNNI) dot-tile kernels and fast
 * activation quantizers. Compiled with -mavx512*; called only after cpuid.
 *
 * Integer products use VNNI vpdpbusd (u8 x s8). Weights are made unsigned
 * (nibbles, 5-bit values, q8_0 xor 0x80) and their offset (-8, -16, -128)
 * times sum(y) is the dpbusd start value, computed once per activation
 * block. Two 32-blocks share one zmm; block scales are spread over 8 lanes
 * each. K-quant sub-block scales are applied in integers (vpdpwssd / madd).
 *
 * Each kernel body is an always-inline function of compile-time tile sizes
 * (NW weight rows x NR activation rows): every (weight row, activation row)
 * pair has its own accumulator and sees the exact same instruction sequence
 * whatever NW and NR, so results do not depend on the tile (batch
 * invariance); only the unpacking of weights and activations is shared.
 */
#include <math.h>

#define DOT_NAME(t) tile512_##t
#include "cpu/quant_dot_body.h"

/* Fixed-order horizontal sum of 16 floats. */
AI float hsum512(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* Two 32-byte rows (at p0 and p1) in one zmm. */
AI __m512i load2x256(const void *p0, const void *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* The two fp16 at the start of blocks p0 and p1 as floats [a0 b0 a1 b1];
 * p1 == NULL gives [a0 b0 0 0]. */
AI __m128 head2(const void *p0, const void *p1) {
    uint32_t a, b = 0;
    memcpy(&a, p0, 4);
    if (p1) memcpy(&b, p1, 4);
    return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)a), (int)b, 1));
}

/* [v0 x8, v2 x8]: the per-block scales of a block pair, one per 8 lanes. */
AI __m512 spread02(__m128 v) {
    const __m512i idx = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/*
 * A pair of Q4_0/Q4_1/Q5_0/Q5_1 blocks (18/20/22/24 bytes) from one load:
 * q = 4- or 5-bit values in element order [lo0 hi0 lo1 hi1] (5th bits from
 * qh through a byte mask), d = [d0 x8, d1 x8] and, with a min,
 * m = [m0 0 x7, m1 0 x7]. `two` false: only the first block is read.
 */
AI void q4_pair(const uint8_t *b, const int BS, bool two, const bool safe, __m512i *q, __m512 *d,
                __m512 *m) {
    const int W0 = BS / 2;       /* words per block */
    const int QW = BS / 2 - 8;   /* first qs word */
    const int o1 = two ? W0 : 0; /* second block's word offset */
    const __mmask32 lm = (__mmask32)((1u << (two ? 2 * W0 : W0)) - 1);
    /* safe: 64 bytes from b are readable (more blocks follow) */
    const __m512i v = safe ? _mm512_loadu_si512(b) : _mm512_maskz_loadu_epi16(lm, b);
    const __m512i qi = _mm512_set_epi16(
        o1 + QW + 7, o1 + QW + 6, o1 + QW + 5, o1 + QW + 4, o1 + QW + 3, o1 + QW + 2, o1 + QW + 1,
        o1 + QW, o1 + QW + 7, o1 + QW + 6, o1 + QW + 5, o1 + QW + 4, o1 + QW + 3, o1 + QW + 2,
        o1 + QW + 1, o1 + QW, QW + 7, QW + 6, QW + 5, QW + 4, QW + 3, QW + 2, QW + 1, QW, QW + 7,
        QW + 6, QW + 5, QW + 4, QW + 3, QW + 2, QW + 1, QW);
    __m512i t = _mm512_permutexvar_epi16(qi, v);
    t = _mm512_mask_srli_epi16(t, 0xFF00FF00u, t, 4);
    *q = _mm512_and_si512(t, _mm512_set1_epi8(0x0F));
    if (BS >= 22) { /* qh: bit j = 5th bit of element j; 64 bits = 64 bytes of q */
        uint32_t h0, h1 = 0;
        memcpy(&h0, b + BS - 20, 4);
        if (two) memcpy(&h1, b + 2 * BS - 20, 4);
        const __mmask64 hm = (__mmask64)h0 | ((__mmask64)h1 << 32);
        *q = _mm512_mask_add_epi8(*q, hm, *q, _mm512_set1_epi8(16));
    }
    const __m256i v256 = _mm512_castsi512_si256(v);
    const __m256i di = _mm256_set_epi16(o1, o1, o1, o1, o1, o1, o1, o1, 0, 0, 0, 0, 0, 0, 0, 0);
    *d = _mm512_cvtph_ps(_mm256_permutexvar_epi16(di, v256));
    if (m) {
        /* [m0 0 x7, m1 0 x7]: adds m*s once per block into the same sum */
        const __m256i mi = _mm256_set_epi16(0, 0, 0, 0, 0, 0, 0, o1 + 1, 0, 0, 0, 0, 0, 0, 0, 1);
        const __mmask16 mm = two ? 0x0101 : 0x0001;
        *m = _mm512_cvtph_ps(_mm256_maskz_permutexvar_epi16(mm, mi, v256));
    }
}

/* [v1 x8, v3 x8]. */
AI __m512 spread13(__m128 v) {
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* ------------------------------------- 32-blocks: Q4_0, Q5_0, Q5_1 */

/*
 * One block pair (i, i1) of every weight and activation row of the tile.
 * Weights become unsigned bytes (nibbles, 5-bit values) and the offset goes
 * into the dpbusd start value: -8 or -16 * sum(y) per 4-lane group.
 * Per (w, y): p = dpbusd(base_y, w, y); acc += dw * (float(p) * dy); for
 * Q5_1 also acc += [m0 0.. m1 0..] * [s0.. s1..]. One accumulator per pair.
 */
AI void q32_step(const int KIND, const char *w, size_t ws, const int NW, const char *x, size_t xs,
                 const int NR, int64_t i, bool two, const bool safe, __m512 acc[][CPU_DOT_NR]) {
    const size_t xbs = HAS_MIN(KIND) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t xqoff = HAS_MIN(KIND) ? 4 : 2;
    const int64_t i1 = two ? i + 1 : i;
    __m512i wq[CPU_DOT_NW];
    __m512 wm[CPU_DOT_NW];
    __m512 dw[CPU_DOT_NW];
    for (int iw = 0; iw < NW; iw++) {
        if (KIND == K_Q4_0) {
            const block_q4_0 *a = (const block_q4_0 *)(w + iw * ws);
            q4_pair((const uint8_t *)&a[i], 18, two, safe, &wq[iw], &dw[iw], NULL);
        } else if (KIND == K_Q5_0) {
            const block_q5_0 *a = (const block_q5_0 *)(w + iw * ws);
            q4_pair((const uint8_t *)&a[i], 22, two, safe, &wq[iw], &dw[iw], NULL);
        } else {
            const block_q5_1 *a = (const block_q5_1 *)(w + iw * ws);
            q4_pair((const uint8_t *)&a[i], 24, two, safe, &wq[iw], &dw[iw], &wm[iw]);
        }
    }
    for (int k = 0; k < NR; k++) {
        const char *y0 = x + k * xs + i * xbs, *y1 = x + k * xs + i1 * xbs;
        const __m512i y =
            two ? load2x256(y0 + xqoff, y1 + xqoff)
                : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(y0 + xqoff)));
        __m512i base = _mm512_setzero_si512();
        if (KIND == K_Q4_0)
            base = _mm512_sub_epi32(base, _mm512_dpbusd_epi32(base, _mm512_set1_epi8(8), y));
        else if (KIND == K_Q5_0)
            base = _mm512_sub_epi32(base, _mm512_dpbusd_epi32(base, _mm512_set1_epi8(16), y));
        const __m128 yf = head2(y0, two ? y1 : NULL);
        const __m512 dy = spread02(yf);
        __m512 sy = _mm512_setzero_ps();
        if (HAS_MIN(KIND)) sy = spread13(yf);
        for (int iw = 0; iw < NW; iw++) {
            const __m512i p = _mm512_dpbusd_epi32(base, wq[iw], y);
            const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(p), dy);
            acc[iw][k] = _mm512_fmadd_ps(dw[iw], t, acc[iw][k]);
            if (HAS_MIN(KIND)) acc[iw][k] = _mm512_fmadd_ps(wm[iw], sy, acc[iw][k]);
        }
    }
}

AI void q32_tile(const int KIND, int64_t n, const void *w, size_t ws, const int NW, const void *x,
                 size_t xs, const int NR, float *out) {
    const int64_t nb = n / 32;
    __m512 acc[CPU_DOT_NW][CPU_DOT_NR];
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++)
            acc[iw][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < nb; i += 2)
        q32_step(KIND, w, ws, NW, x, xs, NR, i, true, true, acc);
    for (; i + 1 < nb; i += 2)
        q32_step(KIND, w, ws, NW, x, xs, NR, i, true, false, acc);
    if (i < nb) q32_step(KIND, w, ws, NW, x, xs, NR, i, false, false, acc);
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++)
            out[iw * CPU_DOT_NR + k] = hsum512(acc[iw][k]);
}

/* ------------------------------------------------------------- Q6_K x Q8_K */

AI void q6_K_tile1(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out) {
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
            const __m512i h23 =
                _mm512_inserti64x4(_mm512_castsi256_si512(H), _mm256_srli_epi16(H, 2), 1);
            v[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(h01, m30));
            v[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                           _mm512_and_si512(h23, m30));
        }
        /* int16 pairs [sc, 0] per int32 lane, for vpdpwssd */
        for (int g = 0; g < 4; g++)
            sc[g] = _mm512_and_si512(
                _mm512_permutexvar_epi32(_mm512_add_epi32(rep4, _mm512_set1_epi32(4 * g)), sc32),
                _mm512_set1_epi32(0xFFFF));
        const float d = h2f(a[i].d);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            __m512i sum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                const __m512i y = _mm512_loadu_si512(b->qs + 64 * g);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[g], y);
                /* |p| <= 4*63*127 fits int16: sum += p * sc in one vpdpwssd */
                sum = _mm512_dpwssd_epi32(sum, p, sc[g]);
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

/* ------------------------------------------------- Q4_K / Q5_K x Q8_K */

/* Q4_K and Q5_K share the 6-bit scale/min layout; Q5_K adds a high bit per
 * element from qh (bit j of qh[l] for sub-block j). */
AI void qk45_tile1(const bool Q5, int64_t n, const void *w, const void *x, size_t xs, const int NR,
                   float *out) {
    const int64_t nb = n / QK_K;
    const size_t bsz = Q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    __m512 acc[CPU_DOT_NR];
    __m256 accm[CPU_DOT_NR];
    for (int k = 0; k < NR; k++) {
        acc[k] = _mm512_setzero_ps();
        accm[k] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = (const char *)w + (size_t)i * bsz;
        const block_q4_K *a4 = (const block_q4_K *)blk; /* d, dmin, scales: same offsets */
        const uint8_t *qs = Q5 ? ((const block_q5_K *)blk)->qs : a4->qs;
        uint32_t u[4];
        memcpy(u, a4->scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t uaux = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = uaux;
        u[0] &= 0x3f3f3f3fu;
        /* u bytes 0-7: scales, 8-15: mins */
        const __m128i sm = _mm_loadu_si128((const __m128i *)u);
        const __m512i sc32 = _mm512_cvtepu8_epi32(sm); /* lanes 0-7 scales */
        /* mins duplicated per 16-group: [m0 m0 m1 m1 ... m7 m7] as int16 */
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
        __m256i H = _mm256_setzero_si256();
        if (Q5) H = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
        __m512i v[4], sc[4];
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            v[c] = _mm512_and_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
            if (Q5) {
                const __m512i hb =
                    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(H, 2 * c)),
                                       _mm256_srli_epi16(H, 2 * c + 1), 1);
                v[c] = _mm512_or_si512(v[c], _mm512_slli_epi16(_mm512_and_si512(hb, one), 4));
            }
            /* lanes 0-7: scale 2c, lanes 8-15: scale 2c+1 */
            const __m512i idx = _mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c,
                                                 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c);
            sc[c] = _mm512_permutexvar_epi32(idx, sc32);
        }
        const float d = h2f(a4->d), dmin = h2f(a4->dmin);
        for (int k = 0; k < NR; k++) {
            const block_q8_K *b = XROW(block_q8_K, x, xs, k) + i;
            __m512i sum = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                const __m512i y = _mm512_loadu_si512(b->qs + 64 * c);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[c], y);
                /* |p| <= 4*31*128 fits int16, scales are >= 0: sum += p * sc */
                sum = _mm512_dpwssd_epi32(sum, p, sc[c]);
            }
            const __m256i mm =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), mins16);
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d * b->d), _mm512_cvtepi32_ps(sum), acc[k]);
            accm[k] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * b->d), _mm256_cvtepi32_ps(mm), accm[k]);
        }
    }
    for (int k = 0; k < NR; k++)
        out[k] = hsum512(acc[k]) - hsum256(accm[k]);
}

PER_ROW_TILE(q4_K)
PER_ROW_TILE(q5_K)
PER_ROW_TILE(q6_K)

/* ------------------------------------------------------ F32 / F16 / BF16 */

/* Load 16 elements of a float-like row as floats (masked tail). */
AI __m512 ld_f32(const float *p, __mmask16 m, const bool full) {
    return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

AI __m512 ld_f16(const uint16_t *p, __mmask16 m, const bool full) {
    return _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)p)
                                : _mm256_maskz_loadu_epi16(m, p));
}

AI __m512 ld_bf16(const uint16_t *p, __mmask16 m, const bool full) {
    const __m512i v = _mm512_cvtepu16_epi32(full ? _mm256_loadu_si256((const __m256i *)p)
                                                 : _mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* Plain loads in the main loop (masked-load builtins there make GCC keep
 * the accumulators in memory); one masked step for the tail. */
#define FLOAT_TILE(name, T, LD)                                                                    \
    AI void name##_step(const void *w, size_t ws, const int NW, const void *x, size_t xs,          \
                        const int NR, int64_t i, __mmask16 m0, __mmask16 m1, const bool full,      \
                        __m512 acc0[][CPU_DOT_NR], __m512 acc1[][CPU_DOT_NR]) {                    \
        __m512 w0[CPU_DOT_NW], w1[CPU_DOT_NW];                                                     \
        for (int iw = 0; iw < NW; iw++) {                                                          \
            const T *a = XROW(T, w, ws, iw);                                                       \
            w0[iw] = LD(a + i, m0, full);                                                          \
            w1[iw] = LD(a + i + 16, m1, full);                                                     \
        }                                                                                          \
        for (int k = 0; k < NR; k++) {                                                             \
            const T *b = XROW(T, x, xs, k);                                                        \
            const __m512 y0 = LD(b + i, m0, full), y1 = LD(b + i + 16, m1, full);                  \
            for (int iw = 0; iw < NW; iw++) {                                                      \
                acc0[iw][k] = _mm512_fmadd_ps(w0[iw], y0, acc0[iw][k]);                            \
                acc1[iw][k] = _mm512_fmadd_ps(w1[iw], y1, acc1[iw][k]);                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    AI void name##_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x,          \
                        size_t xs, const int NR, float *out) {                                     \
        __m512 acc0[CPU_DOT_NW][CPU_DOT_NR], acc1[CPU_DOT_NW][CPU_DOT_NR];                         \
        for (int iw = 0; iw < NW; iw++)                                                            \
            for (int k = 0; k < NR; k++)                                                           \
                acc0[iw][k] = acc1[iw][k] = _mm512_setzero_ps();                                   \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= n; i += 32)                                                               \
            name##_step(w, ws, NW, x, xs, NR, i, 0xFFFF, 0xFFFF, true, acc0, acc1);                \
        if (i < n) {                                                                               \
            const int64_t left = n - i;                                                            \
            const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);              \
            const __mmask16 m1 = left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);            \
            name##_step(w, ws, NW, x, xs, NR, i, m0, m1, false, acc0, acc1);                       \
        }                                                                                          \
        for (int iw = 0; iw < NW; iw++)                                                            \
            for (int k = 0; k < NR; k++)                                                           \
                out[iw * CPU_DOT_NR + k] = hsum512(_mm512_add_ps(acc0[iw][k], acc1[iw][k]));       \
    }

FLOAT_TILE(f32, float, ld_f32)
FLOAT_TILE(bf16, uint16_t, ld_bf16)

/* F16 weights x F16 activations, up to 4 x 4 pairs with one 16-lane
 * accumulator each (16 zmm): per 16 elements 8 conversions feed 16 FMAs.
 * The per-pair order (16-lane chain, fixed hsum) does not depend on the
 * tile shape. As a GEMV (NR = 1) each 64 bytes of a row ask for the line
 * CPU_F16_GEMV_PF bytes ahead into L2, spread over the loop (cpu_matmul's
 * burst per tile is skipped for it): 2 threads over a 200 MB F16 model
 * stream ~29-31 GB/s this way against ~22-26 with the burst, and
 * f16-100m decodes ~16-25% faster (docs/performance.md). */
AI void f16w_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs, const int NR,
                  float *out) {
    __m512 acc[CPU_DOT_NW][CPU_DOT_NR];
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++) acc[iw][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[CPU_DOT_NW];
        if (NR == 1 && (i & 31) == 0)
            for (int iw = 0; iw < NW; iw++)
                _mm_prefetch((const char *)(XROW(uint16_t, w, ws, iw) + i) + CPU_F16_GEMV_PF, _MM_HINT_T2);
        for (int iw = 0; iw < NW; iw++) wv[iw] = ld_f16(XROW(uint16_t, w, ws, iw) + i, 0xFFFF, true);
        for (int k = 0; k < NR; k++) {
            const __m512 y = ld_f16(XROW(uint16_t, x, xs, k) + i, 0xFFFF, true);
            for (int iw = 0; iw < NW; iw++) acc[iw][k] = _mm512_fmadd_ps(wv[iw], y, acc[iw][k]);
        }
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[CPU_DOT_NW];
        for (int iw = 0; iw < NW; iw++) wv[iw] = ld_f16(XROW(uint16_t, w, ws, iw) + i, m, false);
        for (int k = 0; k < NR; k++) {
            const __m512 y = ld_f16(XROW(uint16_t, x, xs, k) + i, m, false);
            for (int iw = 0; iw < NW; iw++) acc[iw][k] = _mm512_fmadd_ps(wv[iw], y, acc[iw][k]);
        }
    }
    for (int iw = 0; iw < NW; iw++)
        for (int k = 0; k < NR; k++) out[iw * CPU_DOT_NR + k] = hsum512(acc[iw][k]);
}

/* F16 weights x F16 activations for prefill: 4 weight rows x 6 activation
 * rows per call (24 accumulators), the same per-pair operations as
 * f16w_tile (16-lane FMA chain, masked tail, hsum512), so the same bits.
 * y[k * ys + iw] for iw < 4, k < 6. Measured in L1 on Zen 5: 89% of the
 * FMA peak against 78% for the 4 x 4 tile. */
void cpu_f16_gemm46_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *y, int64_t ys) {
    __m512 acc[4][6];
    for (int iw = 0; iw < 4; iw++)
        for (int k = 0; k < 6; k++) acc[iw][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[4];
        for (int iw = 0; iw < 4; iw++) wv[iw] = ld_f16(XROW(uint16_t, w, ws, iw) + i, 0xFFFF, true);
        for (int k = 0; k < 6; k++) {
            const __m512 xv = ld_f16(XROW(uint16_t, x, xs, k) + i, 0xFFFF, true);
            for (int iw = 0; iw < 4; iw++) acc[iw][k] = _mm512_fmadd_ps(wv[iw], xv, acc[iw][k]);
        }
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[4];
        for (int iw = 0; iw < 4; iw++) wv[iw] = ld_f16(XROW(uint16_t, w, ws, iw) + i, m, false);
        for (int k = 0; k < 6; k++) {
            const __m512 xv = ld_f16(XROW(uint16_t, x, xs, k) + i, m, false);
            for (int iw = 0; iw < 4; iw++) acc[iw][k] = _mm512_fmadd_ps(wv[iw], xv, acc[iw][k]);
        }
    }
    for (int k = 0; k < 6; k++)
        for (int iw = 0; iw < 4; iw++) y[k * ys + iw] = hsum512(acc[iw][k]);
}

/* ---------------------------------------------------------------- tables */

/* nr > 1: four weight rows per tile for the 32-block kernels, whose
 * accumulators fit in registers; two for the others. */
TILE_ENTRY(q4_0, 4)
TILE_ENTRY(q5_0, 4)
TILE_ENTRY(q5_1, 4)
TILE_ENTRY(q4_K, 2)
TILE_ENTRY(q5_K, 2)
TILE_ENTRY(q6_K, 2)
TILE_ENTRY(f32, 2)
TILE_ENTRY(f16w, 4)
TILE_ENTRY(bf16, 2)

/* types whose GEMV tile asks for its own weight lines as it goes (f16w_tile);
 * cpu_matmul skips its per-tile burst for them */
const uint64_t cpu_dot_avx512_gemv_prefetch = UINT64_C(1) << RT_TYPE_F16;

const cpu_dot_tile_fn cpu_dot_avx512[RT_TYPE_COUNT] = {
    [RT_TYPE_F32] = tile512_f32,   [RT_TYPE_F16] = tile512_f16w,   [RT_TYPE_BF16] = tile512_bf16,
    [RT_TYPE_Q4_0] = tile512_q4_0, [RT_TYPE_Q4_1] = cpu_compat_q4_1_avx512, [RT_TYPE_Q8_0] = cpu_compat_q8_0_avx512,
    [RT_TYPE_Q5_0] = tile512_q5_0, [RT_TYPE_Q5_1] = tile512_q5_1, [RT_TYPE_Q4_K] = tile512_q4_K,
    [RT_TYPE_Q5_K] = tile512_q5_K, [RT_TYPE_Q6_K] = tile512_q6_K,
};

/* ------------------------------------------------- activation quantizers */

static void act_q8_0(const float *x, block_q8_0 *y, int64_t nb, bool with_sum) {
    block_q8_1 *y1 = (block_q8_1 *)(void *)y;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        /* llama.cpp's run-time semantics (see quant_compat.c) */
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvtps_epi32(
            _mm512_roundscale_ps(_mm512_mul_ps(v0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m512i q1 = _mm512_cvtps_epi32(
            _mm512_roundscale_ps(_mm512_mul_ps(v1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
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

static void act_q8_K(const float *x, block_q8_K *y, int64_t nb) {
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

static void act_f16(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = rt_fp32_to_fp16(x[i]);
}

/* Same rounding as rt_fp32_to_bf16: nearest even, NaN quieted. */
static void act_bf16(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512(x + i);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(
            _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++)
        y[i] = rt_fp32_to_bf16(x[i]);
}

void cpu_quantize_act_avx512(rt_type_t vt, const float *src, void *dst, int64_t n) {
    switch (vt) {
    case RT_TYPE_Q8_0:
        act_q8_0(src, dst, n / 32, false);
        break;
    case RT_TYPE_Q8_1:
        act_q8_0(src, dst, n / 32, true);
        break;
    case RT_TYPE_Q8_K:
        act_q8_K(src, dst, n / QK_K);
        break;
    case RT_TYPE_F16:
        act_f16(src, dst, n);
        break;
    case RT_TYPE_BF16:
        act_bf16(src, dst, n);
        break;
    default:
        (void)cpu_ref_quantize(vt, src, dst, n);
        break;
    }
}
