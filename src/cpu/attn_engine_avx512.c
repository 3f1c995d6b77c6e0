/*
 * attn_engine_avx512.c - cpu_attn_engine's heads with AVX-512 intrinsics:
 * the operations of attn_engine.c lane for lane (the same bits; the test
 * compares them), vectorized over 16 positions for the scores and over 16
 * dimensions for the values. Compiled with -mavx512*; called only after
 * cpuid, for head_dim % 16 == 0.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))

/* 16 cache elements from p (f16 or f32) as floats; m: lanes to load */
AI __m512 ld16(const void *p, bool f16, __mmask16 m)
{
    if (f16)
        return _mm512_cvtph_ps(m == 0xFFFF ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(m, p));
    return m == 0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

/* rt_exp_le0 (rotor/fast_exp.h), lane by lane */
AI __m512 exp16(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b =
        _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    /* max_ps(n, -126) is -126 for NaN n, as the scalar's comparison */
    const __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_max_ps(n, _mm512_set1_ps(-126.0f))),
                                       _mm512_set1_epi32(127));
    const __m512 v = _mm512_mul_ps(j, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)));
    const __mmask16 keep = _mm512_cmp_ps_mask(n, _mm512_set1_ps(-125.0f), _CMP_GE_OQ);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(_mm512_maskz_mov_ps(keep, v), nan, x);
}

/* Software prefetch. DRAM is ~100 ns away and a chunk of 16 positions'
 * FMAs take ~25 ns, so the loops ask for K and V well ahead - but a few
 * lines per step of the loops (AE_PF_K_AHEAD, AE_PF_V_AHEAD positions
 * ahead), not a chunk's 32 lines at once: a burst fills the core's miss
 * buffers and stalls the loads behind it (bench/bench_attn.c from DRAM,
 * one thread: 21.5 -> 24.5 GB/s; from L2 47 -> 53). The burst form below
 * starts each stream. K: the head's hd rows of the chunk of 16 positions
 * at P + a (stride bs); V: the chunk's rows, bytes [0, vbytes) of the
 * head's slice. */
#define AE_PF_K_AHEAD 128 /* a multiple of the 64 positions score_group takes */
#define AE_PF_V_AHEAD 64
/* A part of at most this many positions (its K and V fit in L1 together)
 * asks for its V rows during the score pass, one row per step, instead of
 * in the value pass: a batch of short sequences then waits for memory once
 * per part, not twice (bench_attn, 48 positions per part, from DRAM:
 * 16 -> 19.3-20.5 GB/s; 128: +4%; longer parts lose, so they keep V for
 * the value pass; head_dim <= 64, the slice one V pass reads) */
#define AE_V_IN_SCORE 128
AI void pf_k_chunk(const char *k, const int32_t *blocks, int bs, int kvd, int hoff, int hd, size_t elt, int a)
{
    const char *kb = k + (((size_t)blocks[a / bs] * (size_t)kvd + (size_t)hoff) * (size_t)bs + (size_t)(a % bs)) * elt;
    const size_t rs = (size_t)bs * elt, step = rs >= 64 ? 1 : 64 / rs;
    for (size_t d = 0; d < (size_t)hd; d += step) _mm_prefetch(kb + d * rs, _MM_HINT_T0);
}

AI void pf_v_chunk(const char *v, const int32_t *blocks, int bs, int kvd, int off, size_t vbytes, size_t elt, int a)
{
    const size_t row = (size_t)kvd * elt;
    const char *vb = v + (((size_t)blocks[a / bs] * (size_t)bs + (size_t)(a % bs)) * (size_t)kvd + (size_t)off) * elt;
    for (int r = 0; r < 16; r++)
        for (size_t b = 0; b < vbytes; b += 64) _mm_prefetch(vb + (size_t)r * row + b, _MM_HINT_T0);
}

/* Scores of NC chunks of 16 positions from c0 (NC x G independent FMA
 * chains, one per position as in the reference: a group of 4 chunks keeps
 * the FMA units busy; 1..3 for the tail, so short sequences are not left
 * with G latency-bound chains). Stores scale * q.k (-inf past n) at
 * p[g * n16 + position] and raises mxv[g] to their maximum. */
AI void score_group(const int NC, const int G, const float *q, int q_stride, const char *k, const bool f16,
                    const int32_t *blocks, int bs, int kvd, int hoff, int hd, int P, int n, int n16, int c0,
                    float scale, float *p, __m512 mxv[4], const char *v_pf)
{
    const size_t elt = f16 ? 2 : 4;
    const char *kb[4];
    for (int cc = 0; cc < NC; cc++) {
        const int p0 = c0 + 16 * cc;
        kb[cc] = k + (((size_t)blocks[(P + p0) / bs] * (size_t)kvd + (size_t)hoff) * (size_t)bs + (size_t)((P + p0) % bs)) * elt;
    }
    /* the chunks AE_PF_K_AHEAD positions on, a line of each every 64 bytes of rows */
    const char *kp[4] = {NULL, NULL, NULL, NULL};
    const size_t rs = (size_t)bs * elt;
    for (int cc = 0; NC == 4 && cc < 4; cc++) {
        const int a = P + c0 + AE_PF_K_AHEAD + 16 * cc;
        if (a < P + n16)
            kp[cc] = k + (((size_t)blocks[a / bs] * (size_t)kvd + (size_t)hoff) * (size_t)bs + (size_t)(a % bs)) * elt;
    }
    /* v_pf: the first row of each chunk's V slice, its rows asked for one per step */
    const char *vr[4] = {NULL, NULL, NULL, NULL};
    const size_t vrow = (size_t)kvd * elt, vbytes = (size_t)(hd < 64 ? hd : 64) * elt;
    for (int cc = 0; cc < NC && v_pf; cc++) {
        const int a = P + c0 + 16 * cc;
        vr[cc] = v_pf + (((size_t)blocks[a / bs] * (size_t)bs + (size_t)(a % bs)) * (size_t)kvd + (size_t)hoff) * elt;
    }
    __m512 acc[4][4];
    for (int g = 0; g < G; g++)
        for (int cc = 0; cc < NC; cc++) acc[g][cc] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m512 kf[4];
        if (v_pf && d < 16 * NC && c0 + d < n) {
            const char *r = vr[d / 16] + (size_t)(d % 16) * vrow;
            for (size_t b = 0; b < vbytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
        }
        if (NC == 4 && ((size_t)d * rs) % 64 == 0)
            for (int cc = 0; cc < 4; cc++)
                if (kp[cc]) _mm_prefetch(kp[cc] + (size_t)d * rs, _MM_HINT_T0);
        for (int cc = 0; cc < NC; cc++) kf[cc] = ld16(kb[cc] + (size_t)d * rs, f16, 0xFFFF);
        for (int g = 0; g < G; g++) {
            const __m512 qd = _mm512_set1_ps(q[(size_t)g * (size_t)q_stride + (size_t)d]);
            for (int cc = 0; cc < NC; cc++) acc[g][cc] = _mm512_fmadd_ps(qd, kf[cc], acc[g][cc]);
        }
    }
    const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int cc = 0; cc < NC; cc++) {
        const int p0 = c0 + 16 * cc;
        const __mmask16 live = n - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p0)) - 1);
        for (int g = 0; g < G; g++) {
            const __m512 sc = _mm512_mask_mov_ps(ninf, live, _mm512_mul_ps(acc[g][cc], vscale));
            _mm512_storeu_ps(p + (size_t)g * (size_t)n16 + (size_t)p0, sc);
            mxv[g] = _mm512_max_ps(sc, mxv[g]);
        }
    }
}

/* out[g * out_stride + 2 + 16 t] (t < NV) = sum over the n positions of
 * p[g * n16 + i] * V[i][off + 16 t ..], positions in order (one FMA chain
 * per lane, as the reference). A block's rows at a time: one block lookup
 * per block, not two divisions per position (they cost more than the
 * FMAs); NV and G constant, so the accumulators stay in registers. */
AI void value_pass(const int NV, const int G, const char *v, const bool f16, const int32_t *blocks, int bs, int kvd,
                   int off, int P, int n, int n16, const float *p, float *out, int out_stride, bool pf)
{
    const size_t elt = f16 ? 2 : 4, row = (size_t)kvd * elt;
    __m512 o[4][4];
    for (int g = 0; g < G; g++)
        for (int t = 0; t < NV; t++) o[g][t] = _mm512_setzero_ps();
    const float *pg[4];
    for (int g = 0; g < G; g++) pg[g] = p + (size_t)g * (size_t)n16;
    const size_t vbytes = (size_t)NV * 16 * elt;
    /* the first AE_PF_V_AHEAD positions at once, then each row's slice
     * AE_PF_V_AHEAD positions ahead as the loop takes a row (vt: that
     * row, left: rows of its block from it) */
    for (int c = 0; c < AE_PF_V_AHEAD && c < n && pf; c += 16) pf_v_chunk(v, blocks, bs, kvd, off, vbytes, elt, P + c);
    const char *vt = NULL;
    int left = 0;
    for (int i = 0; i < n;) {
        const int a = P + i, j0 = a % bs, run = bs - j0 < n - i ? bs - j0 : n - i;
        const char *vb = v + (((size_t)blocks[a / bs] * (size_t)bs + (size_t)j0) * (size_t)kvd + (size_t)off) * elt;
        const int end = i + run;
        for (; i < end; i++, vb += row) {
            __m512 vf[4];
            if (pf && i + AE_PF_V_AHEAD < n) {
                if (left == 0) {
                    const int t = P + i + AE_PF_V_AHEAD;
                    vt = v + (((size_t)blocks[t / bs] * (size_t)bs + (size_t)(t % bs)) * (size_t)kvd + (size_t)off) * elt;
                    left = bs - t % bs;
                }
                for (size_t b = 0; b < vbytes; b += 64) _mm_prefetch(vt + b, _MM_HINT_T0);
                vt += row;
                left--;
            }
            for (int t = 0; t < NV; t++) vf[t] = ld16(vb + (size_t)(16 * t) * elt, f16, 0xFFFF);
            for (int g = 0; g < G; g++) {
                const __m512 pi = _mm512_set1_ps(pg[g][i]);
                for (int t = 0; t < NV; t++) o[g][t] = _mm512_fmadd_ps(pi, vf[t], o[g][t]);
            }
        }
    }
    for (int g = 0; g < G; g++)
        for (int t = 0; t < NV; t++) _mm512_storeu_ps(out + (size_t)g * (size_t)out_stride + 2 + (size_t)(16 * t), o[g][t]);
}

AI void part_heads(const int G, const float *q, int q_stride, const char *k, const char *v, const bool f16,
                   const int32_t *blocks, int bs, int kvd, int hoff, int hd, int P, int n, float scale, float *p,
                   float *out, int out_stride)
{
    const size_t elt = f16 ? 2 : 4;
    const int n16 = (n + 15) & ~15;
    const bool v_in_score = n16 <= AE_V_IN_SCORE && hd <= 64;
    const char *v_pf = v_in_score ? v : NULL;
    __m512 mxv[4];
    for (int g = 0; g < G; g++) mxv[g] = _mm512_set1_ps(-INFINITY);
    int q0 = 0;
    /* K: the first AE_PF_K_AHEAD positions at once; score_group asks for the rest */
    for (int c = 0; c < AE_PF_K_AHEAD && c < n16; c += 16) pf_k_chunk(k, blocks, bs, kvd, hoff, hd, elt, P + c);
    for (; q0 + 64 <= n16; q0 += 64) {
        /* the K stream has been asked for to its end: ask for V's first
         * chunks now, so the value pass does not start cold */
        if (!v_in_score && q0 + AE_PF_K_AHEAD + 64 >= n16 && (q0 == 0 || q0 + AE_PF_K_AHEAD < n16))
            for (int c = 0; c < 64 && c < n; c += 16)
                pf_v_chunk(v, blocks, bs, kvd, hoff, (size_t)(hd < 64 ? hd : 64) * elt, elt, P + c);
        score_group(4, G, q, q_stride, k, f16, blocks, bs, kvd, hoff, hd, P, n, n16, q0, scale, p, mxv, v_pf);
    }
    switch ((n16 - q0) / 16) {
    case 3: score_group(3, G, q, q_stride, k, f16, blocks, bs, kvd, hoff, hd, P, n, n16, q0, scale, p, mxv, v_pf); break;
    case 2: score_group(2, G, q, q_stride, k, f16, blocks, bs, kvd, hoff, hd, P, n, n16, q0, scale, p, mxv, v_pf); break;
    case 1: score_group(1, G, q, q_stride, k, f16, blocks, bs, kvd, hoff, hd, P, n, n16, q0, scale, p, mxv, v_pf); break;
    default: break;
    }
    for (int g = 0; g < G; g++) {
        float *pg = p + (size_t)g * (size_t)n16;
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mxv[g]));
        __m512 sum = _mm512_setzero_ps();
        for (int c0 = 0; c0 < n16; c0 += 16) {
            const __mmask16 live = n - c0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c0)) - 1);
            const __m512 e = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(_mm512_loadu_ps(pg + c0), mx)));
            _mm512_storeu_ps(pg + c0, e);
            sum = _mm512_add_ps(sum, e);
        }
        out[(size_t)g * (size_t)out_stride] = _mm512_reduce_max_ps(mxv[g]);
        out[(size_t)g * (size_t)out_stride + 1] = _mm512_reduce_add_ps(sum);
    }
    /* values, 64 dimensions (4 vectors per head) at a time */
    for (int d0 = 0; d0 < hd; d0 += 64) {
        switch (hd - d0 >= 64 ? 4 : (hd - d0) / 16) {
        case 4: value_pass(4, G, v, f16, blocks, bs, kvd, hoff + d0, P, n, n16, p, out + d0, out_stride, !v_in_score); break;
        case 3: value_pass(3, G, v, f16, blocks, bs, kvd, hoff + d0, P, n, n16, p, out + d0, out_stride, !v_in_score); break;
        case 2: value_pass(2, G, v, f16, blocks, bs, kvd, hoff + d0, P, n, n16, p, out + d0, out_stride, !v_in_score); break;
        default: value_pass(1, G, v, f16, blocks, bs, kvd, hoff + d0, P, n, n16, p, out + d0, out_stride, !v_in_score); break;
        }
    }
}

/* attn_engine.c's ae_part for G <= 4 heads: part[g * part_stride] = m, l, o[hd] */
void cpu_attn_engine_part_avx512(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                                 const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale,
                                 float *p, float *part, int part_stride);
void cpu_attn_engine_part_avx512(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                                 const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale,
                                 float *p, float *part, int part_stride)
{
    const char *kc = k, *vc = v;
#define AE_CASE(NG, F)                                                                                         \
    part_heads(NG, q, q_stride, kc, vc, F, blocks, bs, kvd, hoff, hd, p0, p1 - p0, scale, p, part, part_stride); \
    return;
    switch ((G - 1) * 2 + (f16 ? 1 : 0)) {
    case 0: AE_CASE(1, false)
    case 1: AE_CASE(1, true)
    case 2: AE_CASE(2, false)
    case 3: AE_CASE(2, true)
    case 4: AE_CASE(3, false)
    case 5: AE_CASE(3, true)
    case 6: AE_CASE(4, false)
    default: AE_CASE(4, true)
    }
#undef AE_CASE
}
