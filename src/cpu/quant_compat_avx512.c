/*
 * quant_compat_avx512.c - Q4_1 x Q8_1 and Q8_0 x Q8_0 dot tiles in the exact
 * floating-point order llama.cpp's x86 kernels use, so rotor's logits match
 * llama.cpp's bit for bit on models such as SmolLM2 whose activations are
 * re-quantized every layer (there a one-ulp difference flips a Q8 rounding
 * and the logits drift by percents).
 *
 * The order, per (weight row, activation row) pair:
 *   for each 32-block b:  lanes[l] = integer sum of the 4 products of
 *                         elements 4l..4l+3 (exact, however computed)
 *                         acc[l]   = fma(dw_b * dx_b, (float)lanes[l], acc[l])
 *                         (Q4_1)  mins = fma(m_b, s_b, mins)
 *   result = hsum8(acc) (+ mins), hsum8 = ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))
 * Here two weight rows share a zmm (row r in the low 256 bits, r+1 in the
 * high), which halves the instruction count without changing any lane's
 * sequence of operations. Every pair has its own accumulators: batch
 * invariant. Compiled with -mavx512*; called only after cpuid.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu/quant_impl.h"

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 x)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* [lo_r hi_r lo_r1 hi_r1]: 32 unsigned nibbles of two q4 blocks in element order */
AI __m512i nibbles2(const uint8_t *qs0, const uint8_t *qs1)
{
    const __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                              _mm_loadu_si128((const __m128i *)qs1), 1);
    const __m256i m = _mm256_set1_epi8(0x0F);
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(x, m)),
                                         _mm256_and_si256(_mm256_srli_epi16(x, 4), m), 1);
    /* z = [lo_r lo_r1 hi_r hi_r1] -> [lo_r hi_r lo_r1 hi_r1] */
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

AI __m512 dpair(float a, float b) /* [a x8, b x8] */
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}

AI float h2f(rt_half h) { return _cvtsh_ss(h); }

#define WROW(T, i) ((const T *)((const char *)w + (size_t)(i) * ws))
#define XROW(T, k) ((const T *)((const char *)x + (size_t)(k) * xs))

/* fp16 pairs (d, m) at the start of four blocks -> [d0 m0 d1 m1 d2 m2 d3 m3] */
AI __m256 heads4(const void *b0, const void *b1, const void *b2, const void *b3)
{
    uint32_t h0, h1, h2, h3;
    memcpy(&h0, b0, 4);
    memcpy(&h1, b1, 4);
    memcpy(&h2, b2, 4);
    memcpy(&h3, b3, 4);
    return _mm256_cvtph_ps(_mm_set_epi32((int)h3, (int)h2, (int)h1, (int)h0));
}

/* NW even (2 or 4) */
AI void q4_1_body(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs, const int NR,
                  float *out)
{
    const int64_t nb = n / 32;
    const int NP = NW / 2;
    /* lanes 8i..8i+7 of pair p take element 2*(2p + i) of [d0 m0 d1 m1 ...] */
    const __m512i sel[2] = {_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
                            _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4)};
    __m512 acc[2][CPU_DOT_NR];
    __m256 mins[CPU_DOT_NR]; /* odd lanes: the min-term chains of rows 0..3 */
    for (int k = 0; k < NR; k++) {
        mins[k] = _mm256_setzero_ps();
        for (int i = 0; i < NP; i++) acc[i][k] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_1 *a[4];
        for (int i = 0; i < 4; i++) a[i] = WROW(block_q4_1, i < NW ? i : NW - 1) + b;
        const __m256 dm = heads4(a[0], a[1], a[2], a[3]);
        __m512i qx[2];
        __m512 dw[2]; /* [d_2i x8, d_2i+1 x8]: times dy below gives the same products d_i * dy */
        for (int i = 0; i < NP; i++) {
            qx[i] = nibbles2(a[2 * i]->qs, a[2 * i + 1]->qs);
            dw[i] = _mm512_permutexvar_ps(sel[i], _mm512_castps256_ps512(dm));
        }
        for (int k = 0; k < NR; k++) {
            const block_q8_1 *y = XROW(block_q8_1, k) + b;
            const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y->qs));
            const __m256 ds = _mm256_cvtph_ps(_mm_set1_epi32((int)((uint32_t)y->d | ((uint32_t)y->s << 16))));
            const __m256 sy = _mm256_movehdup_ps(ds);
            const __m512 dy = _mm512_broadcastss_ps(_mm256_castps256_ps128(ds));
            mins[k] = _mm256_fmadd_ps(dm, sy, mins[k]); /* m_i * sy + mins */
            for (int i = 0; i < NP; i++) {
                const __m512 xy = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qx[i], qy));
                acc[i][k] = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], dy), xy, acc[i][k]);
            }
        }
    }
    for (int k = 0; k < NR; k++) {
        float mm[8];
        _mm256_storeu_ps(mm, mins[k]);
        for (int i = 0; i < NP; i++) {
            out[(2 * i) * CPU_DOT_NR + k] = hsum8(_mm512_castps512_ps256(acc[i][k])) + mm[4 * i + 1];
            out[(2 * i + 1) * CPU_DOT_NR + k] = hsum8(_mm512_extractf32x8_ps(acc[i][k], 1)) + mm[4 * i + 3];
        }
    }
}

AI void q8_0_body(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs, const int NR,
                  float *out)
{
    const int64_t nb = n / 32;
    const int NP = NW / 2;
    const __m512i sel[2] = {_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                            _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2)};
    __m512 acc[2][CPU_DOT_NR];
    for (int i = 0; i < NP; i++)
        for (int k = 0; k < NR; k++) acc[i][k] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_0 *a[4];
        for (int i = 0; i < 4; i++) a[i] = WROW(block_q8_0, i < NW ? i : NW - 1) + b;
        /* rows stream from DRAM for big matrices: fetch ahead (a GEMV's
         * lines are asked for by cpu_matmul, a whole tile at a time) */
        if (NR > 1 && (b & 1) == 0)
            for (int i = 0; i < NW; i++) _mm_prefetch((const char *)a[i] + 768, _MM_HINT_T0);
        for (int i = 0; i < NW; i++) _mm_prefetch((const char *)(a[i] + 12), _MM_HINT_T0);
        const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)a[0]->d, (short)a[1]->d, (short)a[2]->d,
                                                      (short)a[3]->d, 0, 0, 0, 0));
        /* x + 128 is unsigned: dpbusd(-128 * sum4(y), x ^ 0x80, y) gives the
         * same exact integer lane sums as sum4(x * y) */
        __m512i xu[2];
        for (int i = 0; i < NP; i++)
            xu[i] = _mm512_xor_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[2 * i]->qs)),
                                   _mm256_loadu_si256((const __m256i *)a[2 * i + 1]->qs), 1),
                _mm512_set1_epi8((char)0x80));
        __m512 dwp[2]; /* [d_2i x8, d_2i+1 x8] */
        for (int i = 0; i < NP; i++) dwp[i] = _mm512_permutexvar_ps(sel[i], _mm512_castps128_ps512(dw));
        for (int k = 0; k < NR; k++) {
            const block_q8_0 *y = XROW(block_q8_0, k) + b;
            const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y->qs));
            const __m512i base = _mm512_sub_epi32(
                _mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), qy));
            const __m512 dy = _mm512_set1_ps(h2f(y->d));
            for (int i = 0; i < NP; i++) {
                const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, xu[i], qy));
                acc[i][k] = _mm512_fmadd_ps(_mm512_mul_ps(dwp[i], dy), q, acc[i][k]);
            }
        }
    }
    for (int i = 0; i < NP; i++)
        for (int k = 0; k < NR; k++) {
            out[(2 * i) * CPU_DOT_NR + k] = hsum8(_mm512_castps512_ps256(acc[i][k]));
            out[(2 * i + 1) * CPU_DOT_NR + k] = hsum8(_mm512_extractf32x8_ps(acc[i][k], 1));
        }
}

/* odd nw: the last row is computed as a pair with itself (same lanes, same
 * order), the duplicate result dropped */
#define COMPAT_ENTRY(name)                                                                         \
    void cpu_compat_##name##_avx512(int64_t n, const void *w, size_t ws, int nw, const void *x,    \
                                    size_t xs, int nr, float *out)                                 \
    {                                                                                              \
        if (nw == 4 && nr == 1) { name##_body(n, w, ws, 4, x, xs, 1, out); return; }              \
        if (nw == 4 && nr == 4) { name##_body(n, w, ws, 4, x, xs, 4, out); return; }              \
        int done = 0;                                                                              \
        if (nw >= 2) {                                                                             \
            name##_body(n, w, ws, nw & ~1, x, xs, nr, out);                                        \
            done = nw & ~1;                                                                        \
        }                                                                                          \
        if (done < nw) {                                                                           \
            float tmp[2 * CPU_DOT_NR];                                                             \
            const void *wl = (const char *)w + (size_t)done * ws;                                  \
            name##_body(n, wl, 0, 2, x, xs, nr, tmp);                                              \
            for (int k = 0; k < nr; k++) out[done * CPU_DOT_NR + k] = tmp[k];                      \
        }                                                                                          \
    }

COMPAT_ENTRY(q4_1)
COMPAT_ENTRY(q8_0)

/*
 * Batched tiles for m >= 8: 4 weight rows x 8 activation rows per call, the
 * same operations per (weight row, activation row) pair as the bodies above
 * (so the same bits), with the weight blocks unpacked once for 8 activation
 * rows instead of 4 and the activations' fp16 scales converted once per
 * group of 8 rows (cpu_compat_*_gemm8_prep) instead of once per weight tile.
 * Results go straight to y[k * ys + iw].
 *
 * sc layout, per 32-block b: sc[16 b + k] = d of activation row k,
 * sc[16 b + 8 + k] = s of row k (Q8_1; unused for Q8_0).
 */

void cpu_compat_q4_1_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc);
void cpu_compat_q4_1_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc)
{
    for (int k = 0; k < CPU_GEMM8_NR; k++) {
        const block_q8_1 *y = XROW(block_q8_1, k);
        for (int64_t b = 0; b < nb; b++) {
            sc[16 * b + k] = h2f(y[b].d);
            sc[16 * b + 8 + k] = h2f(y[b].s);
        }
    }
}

void cpu_compat_q8_0_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc);
void cpu_compat_q8_0_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc)
{
    for (int k = 0; k < CPU_GEMM8_NR; k++) {
        const block_q8_0 *y = XROW(block_q8_0, k);
        for (int64_t b = 0; b < nb; b++) sc[16 * b + k] = h2f(y[b].d);
    }
}

AI float hsum8_lo(__m512 v) { return hsum8(_mm512_castps512_ps256(v)); }
AI float hsum8_hi(__m512 v) { return hsum8(_mm512_extractf32x8_ps(v, 1)); }

void cpu_compat_q4_1_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys);
void cpu_compat_q4_1_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys)
{
    const int64_t nb = n / 32;
    /* [d0 m0 d1 m1 d2 m2 d3 m3] -> [d0 x8, d1 x8], [d2 x8, d3 x8] */
    const __m512i sel0 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i sel1 = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4);
    /* min terms of all 32 pairs in two vectors: lane 4 kk + i of mins[h] is
     * (weight row i, activation row 4 h + kk) */
    const __m512i selm = _mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1);
    const __m512i sely0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i sely1 = _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4);
    __m512 acc0[CPU_GEMM8_NR], acc1[CPU_GEMM8_NR], mins0 = _mm512_setzero_ps(), mins1 = _mm512_setzero_ps();
    for (int k = 0; k < CPU_GEMM8_NR; k++) acc0[k] = acc1[k] = _mm512_setzero_ps();
    const block_q4_1 *a0 = WROW(block_q4_1, 0), *a1 = WROW(block_q4_1, 1), *a2 = WROW(block_q4_1, 2),
                     *a3 = WROW(block_q4_1, 3);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 dm = _mm512_castps256_ps512(heads4(a0 + b, a1 + b, a2 + b, a3 + b));
        const __m512i qx0 = nibbles2(a0[b].qs, a1[b].qs), qx1 = nibbles2(a2[b].qs, a3[b].qs);
        const __m512 dw0 = _mm512_permutexvar_ps(sel0, dm), dw1 = _mm512_permutexvar_ps(sel1, dm);
        const __m512 mv = _mm512_permutexvar_ps(selm, dm);
        const float *s = sc + 16 * b;
        const __m512 sy = _mm512_castps256_ps512(_mm256_loadu_ps(s + 8));
        mins0 = _mm512_fmadd_ps(mv, _mm512_permutexvar_ps(sely0, sy), mins0);
        mins1 = _mm512_fmadd_ps(mv, _mm512_permutexvar_ps(sely1, sy), mins1);
        for (int k = 0; k < CPU_GEMM8_NR; k++) {
            const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)XROW(block_q8_1, k)[b].qs));
            const __m512 dy = _mm512_set1_ps(s[k]);
            const __m512 xy0 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qx0, qy));
            const __m512 xy1 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qx1, qy));
            acc0[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw0, dy), xy0, acc0[k]);
            acc1[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw1, dy), xy1, acc1[k]);
        }
    }
    float mm[32];
    _mm512_storeu_ps(mm, mins0);
    _mm512_storeu_ps(mm + 16, mins1);
    for (int k = 0; k < CPU_GEMM8_NR; k++) {
        float *yk = y + (size_t)k * (size_t)ys;
        const float *mk = mm + 4 * k;
        yk[0] = hsum8_lo(acc0[k]) + mk[0];
        yk[1] = hsum8_hi(acc0[k]) + mk[1];
        yk[2] = hsum8_lo(acc1[k]) + mk[2];
        yk[3] = hsum8_hi(acc1[k]) + mk[3];
    }
}

void cpu_compat_q8_0_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys);
void cpu_compat_q8_0_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys)
{
    const int64_t nb = n / 32;
    const __m512i sel0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i sel1 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    __m512 acc0[CPU_GEMM8_NR], acc1[CPU_GEMM8_NR];
    for (int k = 0; k < CPU_GEMM8_NR; k++) acc0[k] = acc1[k] = _mm512_setzero_ps();
    const block_q8_0 *a0 = WROW(block_q8_0, 0), *a1 = WROW(block_q8_0, 1), *a2 = WROW(block_q8_0, 2),
                     *a3 = WROW(block_q8_0, 3);
    for (int64_t b = 0; b < nb; b++) {
        if ((b & 1) == 0) { /* rows stream from DRAM for big matrices: fetch ahead */
            _mm_prefetch((const char *)(a0 + b) + 768, _MM_HINT_T0);
            _mm_prefetch((const char *)(a1 + b) + 768, _MM_HINT_T0);
            _mm_prefetch((const char *)(a2 + b) + 768, _MM_HINT_T0);
            _mm_prefetch((const char *)(a3 + b) + 768, _MM_HINT_T0);
        }
        const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)a0[b].d, (short)a1[b].d, (short)a2[b].d,
                                                      (short)a3[b].d, 0, 0, 0, 0));
        /* weights + 128 are unsigned: dpbusd(-128 * sum4(y), x ^ 0x80, y) gives
         * the same exact integer lane sums as sum4(x * y) */
        const __m512i xu0 = _mm512_xor_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a0[b].qs)),
                               _mm256_loadu_si256((const __m256i *)a1[b].qs), 1),
            x80);
        const __m512i xu1 = _mm512_xor_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a2[b].qs)),
                               _mm256_loadu_si256((const __m256i *)a3[b].qs), 1),
            x80);
        const __m512 dw0 = _mm512_permutexvar_ps(sel0, _mm512_castps128_ps512(dw));
        const __m512 dw1 = _mm512_permutexvar_ps(sel1, _mm512_castps128_ps512(dw));
        const float *s = sc + 16 * b;
        for (int k = 0; k < CPU_GEMM8_NR; k++) {
            const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)XROW(block_q8_0, k)[b].qs));
            const __m512i base =
                _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), x80, qy));
            const __m512 dy = _mm512_set1_ps(s[k]);
            const __m512 q0 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, xu0, qy));
            const __m512 q1 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, xu1, qy));
            acc0[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw0, dy), q0, acc0[k]);
            acc1[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw1, dy), q1, acc1[k]);
        }
    }
    for (int k = 0; k < CPU_GEMM8_NR; k++) {
        float *yk = y + (size_t)k * (size_t)ys;
        yk[0] = hsum8_lo(acc0[k]);
        yk[1] = hsum8_hi(acc0[k]);
        yk[2] = hsum8_lo(acc1[k]);
        yk[3] = hsum8_hi(acc1[k]);
    }
}
