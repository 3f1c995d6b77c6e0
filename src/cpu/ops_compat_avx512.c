/*
 * ops_compat_avx512.c - AVX-512 versions of ops_compat.c's attention head
 * and exp, with the same operations in the same order (so the same bits);
 * compiled with -mavx512*, called only after a cpuid check.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))

AI __m512 exp16(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 res = _mm512_scalef_ps(j, n);
    if (!big) return res;
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                            _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(big, res, alt);
}

void cpu_compat_swiglu_avx512(float *g, const float *u, int n);
void cpu_compat_swiglu_avx512(float *g, const float *u, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

AI float dot_gemm(const float *a, const float *b, int n)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    return _mm512_reduce_add_ps(acc);
}

AI float dot_gemv(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    const int np = n & ~63;
    for (int i = 0; i < np; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    s0 = _mm512_add_ps(s0, s2);
    s1 = _mm512_add_ps(s1, s3);
    s0 = _mm512_add_ps(s0, s1);
    double sum = _mm512_reduce_add_ps(s0);
    for (int i = np; i < n; i++) sum += (double)(a[i] * b[i]);
    return (float)sum;
}


/* In place over p[0..n_pos): exp(p - mx) in 16-lane groups whose sums are
 * added in double, times (float)(1/sum), optionally rounded to f16 (ggml's
 * soft_max then the f16 conversion for the V product). Zero-fills up to
 * the next multiple of 16, which it returns. */
AI int softmax16(float *p, int n_pos, float mx, bool round_f16)
{
    double sum = 0.0;
    const int n16 = (n_pos + 15) & ~15;
    const __m512 vmx = _mm512_set1_ps(mx);
    for (int i = 0; i < n16; i += 16) {
        const __mmask16 live = n_pos - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(live, p + i);
        const __m512 e = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(x, vmx)));
        _mm512_storeu_ps(p + i, e);
        sum += (double)_mm512_reduce_add_ps(e);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int i = 0; i < n16; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(p + i), inv);
        if (round_f16) v = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm512_storeu_ps(p + i, v);
    }
    return n16;
}

void cpu_compat_attn_head_avx512(const float *q, const float *kt, const float *vt, int hd, int n_pos,
                                 int n_pad, float scale, bool gemm, bool kq_gemv_always, bool round_p_f16,
                                 float *p, float *out);
void cpu_compat_attn_head_avx512(const float *q, const float *kt, const float *vt, int hd, int n_pos,
                                 int n_pad, float scale, bool gemm, bool kq_gemv_always, bool round_p_f16,
                                 float *p, float *out)
{
    const bool kq_gemm = gemm && !kq_gemv_always && hd % 16 == 0;
    float mx = -INFINITY;
    for (int i = 0; i < n_pos; i++) {
        const float s = (kq_gemm ? dot_gemm(kt + (size_t)i * hd, q, hd) : dot_gemv(kt + (size_t)i * hd, q, hd)) * scale;
        p[i] = s;
        if (s > mx) mx = s;
    }
    const int n16 = softmax16(p, n_pos, mx, round_p_f16);
    for (int i = n16; i < n_pad; i++) p[i] = 0.0f;
    for (int d = 0; d < hd; d++) {
        const float *v = vt + (size_t)d * n_pad;
        out[d] = gemm ? dot_gemm(v, p, n_pad) : dot_gemv(v, p, n_pad);
    }
}

/*
 * The same head, reading an f16 paged KV cache in place (no gather):
 * K row of position i at k + (blocks[i/bs]*bs + i%bs)*kvd + hoff; V stored
 * transposed within blocks: value d of position i at
 * v + blocks[i/bs]*bs*kvd + (hoff + d)*bs + i%bs. Needs bs % 16 == 0 so a
 * 16-position chunk lies in one block. Chunks past n_pos contribute exact
 * zeros in llama.cpp and are skipped here (adding +0 changes nothing).
 */
AI __m512 ld16h(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(m == 0xFFFF ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(m, p));
}


/* a head's V values of the block holding position i (stored transposed:
 * hd rows of bs f16) */
AI void pf_v_block(const uint16_t *v, const int32_t *blocks, int bs, int kvd, int hoff, int hd, int i)
{
    const char *pv = (const char *)(v + (size_t)blocks[i / bs] * bs * kvd + (size_t)hoff * bs);
    for (int d = 0; d < hd; d += 2) _mm_prefetch(pv + (size_t)d * bs * 2, _MM_HINT_T0);
}

/* decode reads a head's K rows kvd apart, far from each other: before the
 * 16-position chunk at c0, ask for K rows 4 chunks ahead (the first 4 chunks
 * at the start) and, at a block's start, the block's V */
AI void pf_decode_chunk(const uint16_t *k, const uint16_t *v, const int32_t *blocks, int bs, int kvd, int hoff, int hd,
                        int c0, int n_pos)
{
    for (int j = c0 ? 48 : 0; j < 64 && c0 + 16 + j < n_pos; j++) {
        const int i = c0 + 16 + j;
        const char *pf = (const char *)(k + ((size_t)blocks[i / bs] * bs + i % bs) * kvd + hoff);
        for (int l = 0; l < hd * 2; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
    }
    if (c0 % bs == 0) pf_v_block(v, blocks, bs, kvd, hoff, hd, c0);
}

/* reduce16 (the order of _mm512_reduce_add_ps) of 16 vectors at once: the
 * same pairwise additions, arranged as a transpose; result lane i is the
 * sum of a[i]. */
AI __m512 reduce16x16(const __m512 a[16])
{
    __m512 v1[8], v2[4], v3[2];
    for (int k = 0; k < 8; k++)
        v1[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0x44),
                              _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; k++)
        v2[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v1[2 * k], v1[2 * k + 1], 0x88),
                              _mm512_shuffle_f32x4(v1[2 * k], v1[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; k++)
        v3[k] = _mm512_add_ps(_mm512_shuffle_ps(v2[2 * k], v2[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(v2[2 * k], v2[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(v3[0], v3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(v3[0], v3[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* element 4j + s holds vector j + 4s */
    const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(idx, r);
}
/* Where a head's K and V come from: the f16 paged cache in place (k, v,
 * blocks, ...), or f32 copies gathered once for the many tokens of a prefill
 * (kt: position rows of hd floats; vt: hd rows of vstride floats, position
 * order). The same values either way (f16 -> f32 is exact), so the same bits. */
typedef struct {
    const uint16_t *k, *v;
    const int32_t *blocks;
    int bs, kvd, hoff;
    const float *kt, *vt;
    int vstride;
} kv_src_t;

/* K row of position i */
AI const void *src_krow(const bool F32, const kv_src_t *s, int i, int hd)
{
    return F32 ? (const void *)(s->kt + (size_t)i * hd)
               : (const void *)(s->k + ((size_t)s->blocks[i / s->bs] * s->bs + i % s->bs) * s->kvd + s->hoff);
}

/* 16 K elements from l of a row */
AI __m512 src_ldk(const bool F32, const void *row, int l)
{
    return F32 ? _mm512_loadu_ps((const float *)row + l) : ld16h((const uint16_t *)row + l, 0xFFFF);
}

/* V values d.. of the 16-position chunk at p0 (p0 % 16 == 0): row d + j of
 * the result starts j * src_vstep later */
AI const void *src_vrow(const bool F32, const kv_src_t *s, int d, int p0)
{
    return F32 ? (const void *)(s->vt + (size_t)d * s->vstride + p0)
               : (const void *)(s->v + (size_t)s->blocks[p0 / s->bs] * s->bs * s->kvd + (size_t)(s->hoff + d) * s->bs +
                                p0 % s->bs);
}

AI size_t src_vstep(const bool F32, const kv_src_t *s) { return F32 ? (size_t)s->vstride : (size_t)s->bs; }

AI __m512 src_ldv(const bool F32, const void *row, size_t off, __mmask16 m)
{
    return F32 ? _mm512_maskz_loadu_ps(m, (const float *)row + off) : ld16h((const uint16_t *)row + off, m);
}

/* ggml_vec_dot_f16's four 16-lane chains over 64-element steps of np
 * elements (np % 64 == 0), combined (s0+s2)+(s1+s3) as its reduce does
 * before the final horizontal sum; a row of either source */
AI __m512 src_gemv4(const bool F32, const void *a, const float *b, int np)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int l = 0; l < np; l += 64) {
        s0 = _mm512_fmadd_ps(src_ldk(F32, a, l), _mm512_loadu_ps(b + l), s0);
        s1 = _mm512_fmadd_ps(src_ldk(F32, a, l + 16), _mm512_loadu_ps(b + l + 16), s1);
        s2 = _mm512_fmadd_ps(src_ldk(F32, a, l + 32), _mm512_loadu_ps(b + l + 32), s2);
        s3 = _mm512_fmadd_ps(src_ldk(F32, a, l + 48), _mm512_loadu_ps(b + l + 48), s3);
    }
    return _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
}

AI __m512 gemv4h(const uint16_t *a, const float *b, int np) { return src_gemv4(false, a, b, np); }

AI float src_k_elem(const bool F32, const void *row, int l)
{
    return F32 ? ((const float *)row)[l] : _cvtsh_ss(((const uint16_t *)row)[l]);
}

AI void head_src(const bool F32, const float *q, const kv_src_t *src, int hd, int n_pos, float scale, bool gemm,
                 float *p, float *out)
{
    const uint16_t *k = src->k, *v = src->v;
    const int32_t *blocks = src->blocks;
    const int bs = src->bs, kvd = src->kvd, hoff = src->hoff;
    const bool kq_gemm = gemm && hd % 16 == 0;
    float mx = -INFINITY;
    int c0 = 0;
    if (kq_gemm) /* 16 positions at a time, reduced together */
        for (; c0 + 16 <= n_pos; c0 += 16) {
            const void *kr[16];
            __m512 acc[16];
            for (int j = 0; j < 16; j++) {
                const int i = c0 + j;
                kr[j] = src_krow(F32, src, i, hd);
                acc[j] = _mm512_setzero_ps();
            }
            /* the next chunk's K rows and this block's V (read below) are
             * usually not in cache: ask for them now (gathered copies are) */
            for (int j = 0; j < 16 && c0 + 16 + j < n_pos && !F32; j++) {
                const int i = c0 + 16 + j;
                const char *pf = (const char *)(k + ((size_t)blocks[i / bs] * bs + i % bs) * kvd + hoff);
                for (int l = 0; l < hd * 2; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
            }
            if (!F32) {
                const char *pv = (const char *)(v + (size_t)blocks[c0 / bs] * bs * kvd + (size_t)hoff * bs + c0 % bs);
                for (int d = 0; d < hd; d += 2) _mm_prefetch(pv + (size_t)d * bs * 2, _MM_HINT_T0);
            }
            for (int l = 0; l < hd; l += 16) {
                const __m512 qv = _mm512_loadu_ps(q + l);
                for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(src_ldk(F32, kr[j], l), qv, acc[j]);
            }
            const __m512 sv = _mm512_mul_ps(reduce16x16(acc), _mm512_set1_ps(scale));
            _mm512_storeu_ps(p + c0, sv);
            const float m16 = _mm512_reduce_max_ps(sv);
            if (m16 > mx) mx = m16;
        }
    else if (hd % 64 == 0) /* gemv order, no leftovers: 16 positions per reduction too */
        for (; c0 + 16 <= n_pos; c0 += 16) {
            __m512 acc[16];
            if (!F32) pf_decode_chunk(k, v, blocks, bs, kvd, hoff, hd, c0, n_pos);
            for (int j = 0; j < 16; j++) acc[j] = src_gemv4(F32, src_krow(F32, src, c0 + j, hd), q, hd);
            const __m512 sv = _mm512_mul_ps(reduce16x16(acc), _mm512_set1_ps(scale));
            _mm512_storeu_ps(p + c0, sv);
            const float m16 = _mm512_reduce_max_ps(sv);
            if (m16 > mx) mx = m16;
        }
    for (int i = c0; i < n_pos; i++) {
        const void *kr = src_krow(F32, src, i, hd);
        if (i + 8 < n_pos && !F32) { /* K rows are kvd apart: prefetch a few positions ahead */
            const char *pf = (const char *)(k + ((size_t)blocks[(i + 8) / bs] * bs + (i + 8) % bs) * kvd + hoff);
            for (int l = 0; l < hd * 2; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
        }
        float s;
        if (kq_gemm) {
            __m512 acc = _mm512_setzero_ps();
            for (int l = 0; l < hd; l += 16) acc = _mm512_fmadd_ps(src_ldk(F32, kr, l), _mm512_loadu_ps(q + l), acc);
            s = _mm512_reduce_add_ps(acc);
        } else {
            double sum = _mm512_reduce_add_ps(src_gemv4(F32, kr, q, hd & ~63));
            for (int l = hd & ~63; l < hd; l++) sum += (double)(src_k_elem(F32, kr, l) * q[l]);
            s = (float)sum;
        }
        s *= scale;
        p[i] = s;
        if (s > mx) mx = s;
    }
    softmax16(p, n_pos, mx, true);
    const int n_pad = (n_pos + 63) & ~63;
    const size_t vstep = src_vstep(F32, src);
    int d0 = 0;
    if (gemm) {
        /* 16 value rows at a time, reduced together (reduce16x16 is 16
         * _mm512_reduce_add_ps) */
        for (; d0 + 16 <= hd; d0 += 16) {
            __m512 acc[16];
            for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
            for (int p0 = 0; p0 < n_pos; p0 += 16) {
                const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
                const void *vb = src_vrow(F32, src, d0, p0);
                const __m512 pv = _mm512_loadu_ps(p + p0);
                for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(src_ldv(F32, vb, j * vstep, m), pv, acc[j]);
            }
            _mm512_storeu_ps(out + d0, reduce16x16(acc));
        }
        /* 8 value rows at a time: rows d..d+7 of a block are contiguous */
        for (; d0 + 8 <= hd; d0 += 8) {
            __m512 acc[8];
            for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
            for (int p0 = 0; p0 < n_pos; p0 += 16) {
                const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
                const void *vb = src_vrow(F32, src, d0, p0);
                const __m512 pv = _mm512_loadu_ps(p + p0);
                for (int j = 0; j < 8; j++) acc[j] = _mm512_fmadd_ps(src_ldv(F32, vb, j * vstep, m), pv, acc[j]);
            }
            for (int j = 0; j < 8; j++) out[d0 + j] = _mm512_reduce_add_ps(acc[j]);
        }
    } else {
        /* 4 value rows at a time, each with ggml_vec_dot_f16's 4 chains */
        for (; d0 + 4 <= hd; d0 += 4) {
            __m512 s4[4][4];
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < 4; j++) s4[r][j] = _mm512_setzero_ps();
            for (int i0 = 0; i0 < n_pad; i0 += 64)
                for (int j = 0; j < 4; j++) {
                    const int p0 = i0 + 16 * j;
                    if (p0 >= n_pos) break;
                    const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
                    const void *vb = src_vrow(F32, src, d0, p0);
                    const __m512 pv = _mm512_loadu_ps(p + p0);
                    for (int r = 0; r < 4; r++) s4[r][j] = _mm512_fmadd_ps(src_ldv(F32, vb, r * vstep, m), pv, s4[r][j]);
                }
            for (int r = 0; r < 4; r++) {
                __m512 a = _mm512_add_ps(s4[r][0], s4[r][2]), c = _mm512_add_ps(s4[r][1], s4[r][3]);
                out[d0 + r] = (float)(double)_mm512_reduce_add_ps(_mm512_add_ps(a, c));
            }
        }
    }
    for (int d = d0; d < hd; d++) {
        if (gemm) {
            __m512 acc = _mm512_setzero_ps();
            for (int p0 = 0; p0 < n_pos; p0 += 16) {
                const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
                acc = _mm512_fmadd_ps(src_ldv(F32, src_vrow(F32, src, d, p0), 0, m), _mm512_loadu_ps(p + p0), acc);
            }
            out[d] = _mm512_reduce_add_ps(acc);
        } else {
            __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int i0 = 0; i0 < n_pad; i0 += 64)
                for (int j = 0; j < 4; j++) {
                    const int p0 = i0 + 16 * j;
                    if (p0 >= n_pos) break;
                    const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
                    s[j] = _mm512_fmadd_ps(src_ldv(F32, src_vrow(F32, src, d, p0), 0, m), _mm512_loadu_ps(p + p0), s[j]);
                }
            s[0] = _mm512_add_ps(s[0], s[2]);
            s[1] = _mm512_add_ps(s[1], s[3]);
            s[0] = _mm512_add_ps(s[0], s[1]);
            out[d] = (float)(double)_mm512_reduce_add_ps(s[0]);
        }
    }
}

void cpu_compat_attn_head_paged_avx512(const float *q, const uint16_t *k, const uint16_t *v, const int32_t *blocks,
                                       int bs, int kvd, int hoff, int hd, int n_pos, float scale, bool gemm,
                                       float *p, float *out)
{
    const kv_src_t src = {.k = k, .v = v, .blocks = blocks, .bs = bs, .kvd = kvd, .hoff = hoff};
    head_src(false, q, &src, hd, n_pos, scale, gemm, p, out);
}

void cpu_compat_attn_head_gathered_avx512(const float *q, const float *kt, const float *vt, int vstride, int hd,
                                          int n_pos, float scale, bool gemm, float *p, float *out)
{
    const kv_src_t src = {.kt = kt, .vt = vt, .vstride = vstride};
    head_src(true, q, &src, hd, n_pos, scale, gemm, p, out);
}

/*
 * Decode (one query token, gemv order, hd % 64 == 0) for G <= 4 query heads
 * sharing a kv head: every head gets exactly the operations of
 * cpu_compat_attn_head_paged_avx512(gemm = false), but each K row and V
 * vector is loaded and converted once for the G heads instead of G times,
 * and the kv head's slice is streamed from memory once. q: G rows of hd;
 * p: G * n_pad16 scratch floats; out: G rows, stride out_stride.
 */
AI void group_scores16(const int G, const float *q, int hd, const uint16_t *k, const int32_t *blocks, int bs,
                       int kvd, int hoff, int c0, float scale, float *p, int pstride, float mx[4])
{
    __m512 acc[4][16];
    for (int j = 0; j < 16; j++) {
        const int i = c0 + j;
        const uint16_t *kr = k + ((size_t)blocks[i / bs] * bs + i % bs) * kvd + hoff;
        __m512 s[4][4];
        for (int g = 0; g < G; g++)
            for (int t = 0; t < 4; t++) s[g][t] = _mm512_setzero_ps();
        for (int l = 0; l < hd; l += 64) {
            __m512 kv[4];
            for (int t = 0; t < 4; t++) kv[t] = ld16h(kr + l + 16 * t, 0xFFFF);
            for (int g = 0; g < G; g++)
                for (int t = 0; t < 4; t++) {
                    const __m512 qv = _mm512_loadu_ps(q + (size_t)g * hd + l + 16 * t);
                    s[g][t] = _mm512_fmadd_ps(kv[t], qv, s[g][t]);
                }
        }
        for (int g = 0; g < G; g++)
            acc[g][j] = _mm512_add_ps(_mm512_add_ps(s[g][0], s[g][2]), _mm512_add_ps(s[g][1], s[g][3]));
    }
    for (int g = 0; g < G; g++) {
        const __m512 sv = _mm512_mul_ps(reduce16x16(acc[g]), _mm512_set1_ps(scale));
        _mm512_storeu_ps(p + (size_t)g * pstride + c0, sv);
        const float m16 = _mm512_reduce_max_ps(sv);
        if (m16 > mx[g]) mx[g] = m16;
    }
}

AI void group_values2(const int G, const uint16_t *v, const int32_t *blocks, int bs, int kvd, int hoff, int d0,
                      int n_pos, const float *p, int pstride, float *out, int out_stride)
{
    const int n_pad = (n_pos + 63) & ~63;
    __m512 s4[4][2][4];
    for (int g = 0; g < G; g++)
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 4; j++) s4[g][r][j] = _mm512_setzero_ps();
    for (int i0 = 0; i0 < n_pad; i0 += 64)
        for (int j = 0; j < 4; j++) {
            const int p0 = i0 + 16 * j;
            if (p0 >= n_pos) break;
            const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
            const uint16_t *vb = v + (size_t)blocks[p0 / bs] * bs * kvd + (size_t)(hoff + d0) * bs + p0 % bs;
            const __m512 v0 = ld16h(vb, m), v1 = ld16h(vb + bs, m);
            for (int g = 0; g < G; g++) {
                const __m512 pv = _mm512_loadu_ps(p + (size_t)g * pstride + p0);
                s4[g][0][j] = _mm512_fmadd_ps(v0, pv, s4[g][0][j]);
                s4[g][1][j] = _mm512_fmadd_ps(v1, pv, s4[g][1][j]);
            }
        }
    for (int g = 0; g < G; g++)
        for (int r = 0; r < 2; r++) {
            const __m512 a = _mm512_add_ps(s4[g][r][0], s4[g][r][2]), c = _mm512_add_ps(s4[g][r][1], s4[g][r][3]);
            out[(size_t)g * out_stride + d0 + r] = (float)(double)_mm512_reduce_add_ps(_mm512_add_ps(a, c));
        }
}

AI void group_decode(const int G, const float *q, const uint16_t *k, const uint16_t *v, const int32_t *blocks,
                     int bs, int kvd, int hoff, int hd, int n_pos, float scale, float *p, float *out, int out_stride)
{
    const int ps = (n_pos + 15) & ~15;
    float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int c0 = 0;
    for (; c0 + 16 <= n_pos; c0 += 16) {
        pf_decode_chunk(k, v, blocks, bs, kvd, hoff, hd, c0, n_pos);
        group_scores16(G, q, hd, k, blocks, bs, kvd, hoff, c0, scale, p, ps, mx);
    }
    for (int i = c0; i < n_pos; i++) {
        const uint16_t *kr = k + ((size_t)blocks[i / bs] * bs + i % bs) * kvd + hoff;
        if (i % bs == 0) pf_v_block(v, blocks, bs, kvd, hoff, hd, i); /* a tail in a new block */
        for (int g = 0; g < G; g++) {
            const double sum = _mm512_reduce_add_ps(gemv4h(kr, q + (size_t)g * hd, hd));
            const float sc = (float)sum * scale;
            p[(size_t)g * ps + i] = sc;
            if (sc > mx[g]) mx[g] = sc;
        }
    }
    for (int g = 0; g < G; g++) softmax16(p + (size_t)g * ps, n_pos, mx[g], true);
    for (int d0 = 0; d0 < hd; d0 += 2) group_values2(G, v, blocks, bs, kvd, hoff, d0, n_pos, p, ps, out, out_stride);
}

void cpu_compat_attn_group_decode_avx512(int G, const float *q, const uint16_t *k, const uint16_t *v,
                                         const int32_t *blocks, int bs, int kvd, int hoff, int hd, int n_pos,
                                         float scale, float *p, float *out, int out_stride)
{
    switch (G) {
    case 1: group_decode(1, q, k, v, blocks, bs, kvd, hoff, hd, n_pos, scale, p, out, out_stride); break;
    case 2: group_decode(2, q, k, v, blocks, bs, kvd, hoff, hd, n_pos, scale, p, out, out_stride); break;
    case 3: group_decode(3, q, k, v, blocks, bs, kvd, hoff, hd, n_pos, scale, p, out, out_stride); break;
    default: group_decode(4, q, k, v, blocks, bs, kvd, hoff, hd, n_pos, scale, p, out, out_stride); break;
    }
}
