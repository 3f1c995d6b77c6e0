/*
 * packed_avx512.c - the AVX-512 VNNI panel kernel and activation quantizer of
 * cpu_packed.h: one zmm lane per weight row, vpdpbusd adds 4 products of a
 * row with one activation row per instruction. Same bits as packed_scalar.c
 * (the integer sums are exact; the float operations are the reference's,
 * lane by lane). Compiled with -mavx512*; called only after cpuid.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu/packed_impl.h"

#define AI static inline __attribute__((always_inline))
/* weights are prefetched this far ahead of the block in use (measured on
 * Zen 5: the hardware prefetcher alone leaves m = 16 at half speed) */
#ifndef PK_PREFETCH_BYTES
#define PK_PREFETCH_BYTES 8192
#endif


AI __m512i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* a block's 8 groups of 4 quants per row as unsigned bytes (nibble kinds:
 * low nibbles are groups 0..3, high 4..7; Q5: bit g of the h byte is bit 4
 * of group g's, moved there by a 16-bit shift that brings no other bit under
 * the 0x10 mask) */
AI void unpack8(const pk_kind_t k, const uint8_t *blk, const uint8_t *hplane, __m512i w[8])
{
    if (k == PK_Q8_0) {
        for (int g = 0; g < 8; g++) w[g] = _mm512_loadu_si512(blk + 64 * g);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        const __m512i v = _mm512_loadu_si512(blk + 64 * p);
        w[p] = _mm512_and_si512(v, m4);
        w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    if (k == PK_Q5_0 || k == PK_Q5_1 || k == PK_Q5_K) {
        const __m512i h = _mm512_loadu_si512(hplane), m10 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i t = g < 4 ? _mm512_slli_epi16(h, (unsigned)(4 - g)) : _mm512_srli_epi16(h, (unsigned)(g - 4));
            w[g] = _mm512_ternarylogic_epi32(w[g], t, m10, 0xF8); /* w | (t & 0x10) */
        }
    }
}

AI void tile(const pk_kind_t k, const int NS, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y,
             int64_t ys, int nrows)
{
    const size_t bb = pk_block_bytes(k);
    const size_t qbytes = pk_d_offset(k);
    const int off = pk_offset(k);
    pk_rows_t a;
    pk_rows(&a, x, xs, NS, nb);
    __m512 acc[PK_MAX_NS], macc[PK_MAX_NS];
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++) {
        acc[s] = _mm512_setzero_ps();
        macc[s] = _mm512_setzero_ps();
    }
    __m512 sd = _mm512_setzero_ps(), smin = _mm512_setzero_ps(); /* Q4_K: the super-block's d, dmin */
    for (int64_t b = 0; b < nb; b++) {
        /* Q4_K: sub-block b % 8 of super-block b / 8, a Q4_1 block with
         * dw = d * sc, mw = -(dmin * m) (packed_impl.h) */
        const uint8_t *sb = panel + (size_t)(b / 8) * pk_super_bytes(k);
        const uint8_t *blk = pk_is_super(k) ? sb + 256 * (b % 8) : panel + (size_t)b * bb;
        if (pk_is_super(k)) {
            for (size_t o = 0; o < 256; o += 64) _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
            _mm_prefetch((const char *)sb + PK_Q4K_D + 64 * (b % 8) + PK_PREFETCH_BYTES, _MM_HINT_T0);
            if (k == PK_Q5_K) _mm_prefetch((const char *)sb + PK_Q5K_H + 64 * (b % 8) + PK_PREFETCH_BYTES, _MM_HINT_T0);
        } else {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
        }
        __m512i w[8];
        unpack8(k, blk, k == PK_Q5_K ? sb + PK_Q5K_H + 64 * (b % 8) : blk + PK_Q5_H, w);
        __m512i sca = _mm512_setzero_si512(), scb = _mm512_setzero_si512();
        if (k == PK_Q6_K) { /* the high 2 bits into bits 4..5 of each byte */
            const __m512i h[2] = {_mm512_loadu_si512(blk + PK_Q6K_H), _mm512_loadu_si512(blk + PK_Q6K_H + 64)};
            const __m512i m30 = _mm512_set1_epi8(0x30);
            for (int g = 0; g < 8; g++) {
                const int gg = g % 4;
                const __m512i t = gg == 0 ? _mm512_slli_epi16(h[g / 4], 4)
                                  : gg == 1 ? _mm512_slli_epi16(h[g / 4], 2)
                                  : gg == 2 ? h[g / 4]
                                            : _mm512_srli_epi16(h[g / 4], 2);
                w[g] = _mm512_ternarylogic_epi32(w[g], t, m30, 0xF8); /* w | (t & 0x30) */
            }
            sca = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + PK_Q6K_SC)));
            scb = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + PK_Q6K_SC + 16)));
        }
        __m512 dw, mw;
        if (pk_is_super(k)) {
            const int j = (int)(b % 8);
            if (j == 0) { /* converted once per super-block, not per sub-block (vcvtph2ps: 2 cycles on Zen 4) */
                sd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + PK_Q4K_D)));
                smin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + PK_Q4K_D + 32)));
            }
            const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + PK_Q4K_SC + 16 * j))));
            const __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + PK_Q4K_M + 16 * j))));
            dw = _mm512_mul_ps(sd, sc);
            mw = _mm512_xor_ps(_mm512_mul_ps(smin, mn), _mm512_set1_ps(-0.0f));
        } else if (k == PK_Q6_K) {
            dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + PK_Q6K_D)));
            mw = _mm512_setzero_ps();
        } else {
            dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + qbytes)));
            mw = pk_has_min(k) ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + qbytes + 32)))
                               : _mm512_setzero_ps();
        }
#pragma GCC unroll 8
        for (int s = 0; s < NS && k == PK_Q6_K; s++) {
            /* elements 0..15 and 16..31 have their own scales */
            const int8_t *q = a.qa[s] + b * 32;
            const int32_t lo = a.sumlo[s][b];
            __m512i i0 = _mm512_set1_epi32(-32 * lo), i1 = _mm512_set1_epi32(-32 * (a.suma[s][b] - lo));
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                i0 = _mm512_dpbusd_epi32(i0, w[g], bcast4(q + 4 * g));
                i1 = _mm512_dpbusd_epi32(i1, w[g + 4], bcast4(q + 4 * g + 16));
            }
            const __m512i total = _mm512_add_epi32(_mm512_mullo_epi32(i0, sca), _mm512_mullo_epi32(i1, scb));
            acc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(dw, _mm512_set1_ps(a.da[s][b])), acc[s]);
        }
#pragma GCC unroll 8
        for (int s = 0; s < NS && k != PK_Q6_K; s++) {
            const int8_t *q = a.qa[s] + b * 32;
            __m512i i0 = off ? _mm512_set1_epi32(-off * a.suma[s][b]) : _mm512_setzero_si512();
            __m512i i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int g = 0; g < 8; g += 2) {
                i0 = _mm512_dpbusd_epi32(i0, w[g], bcast4(q + 4 * g));
                i1 = _mm512_dpbusd_epi32(i1, w[g + 1], bcast4(q + 4 * g + 4));
            }
            const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
            acc[s] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(a.da[s][b])), acc[s]);
            if (pk_has_min(k)) macc[s] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.sa[s][b]), macc[s]);
        }
    }
    const __mmask16 mask = nrows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nrows) - 1);
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++) {
        const __m512 v = pk_has_min(k) ? _mm512_add_ps(acc[s], macc[s]) : acc[s];
        _mm512_mask_storeu_ps(y + (int64_t)s * ys, mask, v);
    }
}


void pk_tile_avx512(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows)
{
    PK_TILE_DISPATCH(tile);
    if (k == PK_Q4_K) PK_TILE_NS(tile, PK_Q4_K)
    if (k == PK_Q6_K) PK_TILE_NS(tile, PK_Q6_K)
    if (k == PK_Q5_0) PK_TILE_NS(tile, PK_Q5_0)
    if (k == PK_Q5_1) PK_TILE_NS(tile, PK_Q5_1)
    if (k == PK_Q5_K) PK_TILE_NS(tile, PK_Q5_K)
}

void pk_act_quantize_avx512(const float *x, void *dst, int64_t n)
{
    const int64_t nb = n / 32;
    int8_t *qs = dst;
    float *d = (float *)((char *)dst + nb * 32), *s = d + nb;
    int32_t *sum = (int32_t *)(s + nb), *sum_lo = sum + nb;
    const __m512 lim = _mm512_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        /* max_ps(a, m) keeps m where a is NaN, as fmaxf does */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512 p0 = _mm512_roundscale_ps(_mm512_mul_ps(v0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512 p1 = _mm512_roundscale_ps(_mm512_mul_ps(v1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        /* |p| <= 127 but for inf/NaN input, which become 0 as in the reference */
        const __mmask16 k0 = _mm512_cmp_ps_mask(_mm512_abs_ps(p0), lim, _CMP_LE_OQ);
        const __mmask16 k1 = _mm512_cmp_ps_mask(_mm512_abs_ps(p1), lim, _CMP_LE_OQ);
        const __m512i q0 = _mm512_maskz_cvttps_epi32(k0, p0), q1 = _mm512_maskz_cvttps_epi32(k1, p1);
        _mm_storeu_si128((__m128i *)(qs + b * 32), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(qs + b * 32 + 16), _mm512_cvtepi32_epi8(q1));
        const int32_t slo = _mm512_reduce_add_epi32(q0);
        const int32_t sb = slo + _mm512_reduce_add_epi32(q1);
        sum_lo[b] = slo;
        d[b] = db;
        sum[b] = sb;
        s[b] = db * (float)sb;
    }
}

/* 16 activation rows at once for the 32-block kinds: every block's weights
 * unpacked once for 16 rows; Q4_1's min term in a second pass over the
 * blocks (the same chain of FMAs per element as tile(), so the same bits) */
AI void tile16(const pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y, int64_t ys,
               int nrows)
{
    const size_t bb = pk_block_bytes(k);
    const size_t qbytes = pk_d_offset(k);
    const int off = pk_offset(k);
    pk_rows_t a, a2;
    pk_rows(&a, x, xs, 8, nb);
    pk_rows(&a2, (const char *)x + 8 * xs, xs, 8, nb);
    __m512 acc[16];
#pragma GCC unroll 16
    for (int s = 0; s < 16; s++) acc[s] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = panel + (size_t)b * bb;
        for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
        __m512i w[8];
        unpack8(k, blk, blk + PK_Q5_H, w);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + qbytes)));
#pragma GCC unroll 16
        for (int s = 0; s < 16; s++) {
            const pk_rows_t *r = s < 8 ? &a : &a2;
            const int si = s % 8;
            const int8_t *q = r->qa[si] + b * 32;
            __m512i i0 = off ? _mm512_set1_epi32(-off * r->suma[si][b]) : _mm512_setzero_si512();
            __m512i i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int g = 0; g < 8; g += 2) {
                i0 = _mm512_dpbusd_epi32(i0, w[g], bcast4(q + 4 * g));
                i1 = _mm512_dpbusd_epi32(i1, w[g + 1], bcast4(q + 4 * g + 4));
            }
            const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
            acc[s] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(r->da[si][b])), acc[s]);
        }
    }
    if (pk_has_min(k)) {
        __m512 macc[16];
#pragma GCC unroll 16
        for (int s = 0; s < 16; s++) macc[s] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(panel + (size_t)b * bb + qbytes + 32)));
#pragma GCC unroll 16
            for (int s = 0; s < 16; s++)
                macc[s] = _mm512_fmadd_ps(mw, _mm512_set1_ps((s < 8 ? &a : &a2)->sa[s % 8][b]), macc[s]);
        }
#pragma GCC unroll 16
        for (int s = 0; s < 16; s++) acc[s] = _mm512_add_ps(acc[s], macc[s]);
    }
    const __mmask16 mask = nrows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nrows) - 1);
#pragma GCC unroll 16
    for (int s = 0; s < 16; s++) _mm512_mask_storeu_ps(y + (int64_t)s * ys, mask, acc[s]);
}

void pk_tile16_avx512(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y, int64_t ys,
                      int nrows)
{
    switch (k) {
    case PK_Q4_0: tile16(PK_Q4_0, nb, panel, x, xs, y, ys, nrows); return;
    case PK_Q4_1: tile16(PK_Q4_1, nb, panel, x, xs, y, ys, nrows); return;
    case PK_Q8_0: tile16(PK_Q8_0, nb, panel, x, xs, y, ys, nrows); return;
    case PK_Q5_0: tile16(PK_Q5_0, nb, panel, x, xs, y, ys, nrows); return;
    case PK_Q5_1: tile16(PK_Q5_1, nb, panel, x, xs, y, ys, nrows); return;
    default: pk_tile_avx512(k, nb, panel, x, xs, 8, y, ys, nrows);
             pk_tile_avx512(k, nb, panel, (const char *)x + 8 * xs, xs, 8, y + 8 * ys, ys, nrows);
             return;
    }
}
