/*
 * packed_avx2.c - the AVX2 panel kernel and activation quantizer of
 * cpu_packed.h, for CPUs without AVX-512 VNNI. A 16-row panel is two ymm
 * halves of 8 rows (one 32-bit lane per row, holding 4 consecutive quants).
 * Without vpdpbusd, vpmaddubsw multiplies the unsigned weight bytes by the
 * broadcast int8 activations into int16 pairs and vpmaddwd sums the pairs
 * into the row's int32 lane. Same bits as packed_scalar.c:
 *   - the integer block sums are exact: a stored nibble (0..15) times an
 *     activation quant (|q| <= 127) gives |pair| <= 3810, so 8 pairs summed
 *     in int16 (<= 30480) cannot saturate or wrap; Q8_0's stored byte u
 *     (0..255) would saturate vpmaddubsw, so it is split as u = 16 h + l and
 *     both nibbles go through that same exact path;
 *   - Q4_K's sub-blocks are Q4_1 blocks (nibbles) with dw = d * sc and
 *     mw = -(dmin * m) formed per lane as in the reference; Q5_0, Q5_1 and
 *     Q5_K add the 5th bit (quants 0..31): 4 pairs still fit int16, 8 do
 *     not, so their groups go to int32 in two halves;
 *   - Q6_K's quants are 0..63: one vpmaddubsw pair is at most 63 * 128 * 2 =
 *     16128, so two of them still fit int16 (32256) but not more; each such
 *     sum goes through vpmaddwd with the row's int8 scale (sc, sc) into int32,
 *     and the -32 * sum(qa) terms through one vpmaddwd of (32 sc_a, 32 sc_b)
 *     with (sum_lo, sum - sum_lo), subtracted: the same int32 as the
 *     reference's sc_a * isum_a + sc_b * isum_b, no vpmulld;
 *   - the float operations are the reference's, lane by lane.
 * Each half of the panel is one pass over the blocks (16 ymm registers do not
 * hold both halves' weights); the weights are prefetched as in
 * packed_avx512.c. Compiled with -mavx2 -mfma -mf16c; called only after
 * cpuid.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu/packed_impl.h"

#define AI static inline __attribute__((always_inline))
/* weights are prefetched this far ahead of the block in use, as in
 * packed_avx512.c */
#ifndef PK_PREFETCH_BYTES
#define PK_PREFETCH_BYTES 8192
#endif

AI __m256i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* w[g] x activation group g (4 quants at q + 4 g) for the 8 groups, as
 * int16 pair sums of groups 0..3 (*a) and 4..7 (*c) */
AI void dot4x2_i16(const __m256i w[8], const int8_t *q, __m256i *a, __m256i *c)
{
    __m256i p[8];
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) p[g] = _mm256_maddubs_epi16(w[g], bcast4(q + 4 * g));
    *a = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    *c = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
}

/* sum over the 8 groups in int16 pairs: exact while every w byte is <= 15 */
AI __m256i dot8_i16(const __m256i w[8], const int8_t *q)
{
    __m256i a, c;
    dot4x2_i16(w, q, &a, &c);
    return _mm256_add_epi16(a, c);
}

/* the same for 5-bit quants (<= 31): a pair is at most 31 * 127 * 2 = 7874,
 * so 4 of them fit int16 (31496) but not 8: two vpmaddwd into int32 */
AI __m256i dot8_i32_q5(const __m256i w[8], const int8_t *q)
{
    __m256i a, c;
    dot4x2_i16(w, q, &a, &c);
    const __m256i one = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(a, one), _mm256_madd_epi16(c, one));
}

/* the low and high nibbles of 32 bytes */
AI void nibbles(const uint8_t *p, __m256i *lo, __m256i *hi)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i v = _mm256_loadu_si256((const __m256i *)p);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
}

/* y[r] for rows [r0, r0 + 8) of the panel, n of them stored (n <= 8) */
AI void store8(float *y, __m256 v, int n)
{
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
    } else if (n > 0) {
        float t[8];
        _mm256_storeu_ps(t, v);
        memcpy(y, t, sizeof(float) * (size_t)n);
    }
}

/* Q8_0, rows of one half, activation rows q[0..C): stored byte = 16 hi + lo
 * (nibbles), one group at a time; per row the int16 sums of hi x q and of
 * lo x q over the 8 groups, then isum[s] = 16 sum_hi + sum_lo */
AI void q8_isum(const int C, const uint8_t *blk_h, const int8_t *const *q, __m256i *isum)
{
    __m256i tl[4], th[4];
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        __m256i lo, hi;
        nibbles(blk_h + 64 * g, &lo, &hi);
#pragma GCC unroll 4
        for (int s = 0; s < C; s++) {
            const __m256i a = bcast4(q[s] + 4 * g);
            const __m256i pl = _mm256_maddubs_epi16(lo, a), ph = _mm256_maddubs_epi16(hi, a);
            tl[s] = g ? _mm256_add_epi16(tl[s], pl) : pl;
            th[s] = g ? _mm256_add_epi16(th[s], ph) : ph;
        }
    }
#pragma GCC unroll 4
    for (int s = 0; s < C; s++)
        isum[s] = _mm256_add_epi32(_mm256_madd_epi16(tl[s], _mm256_set1_epi16(1)),
                                   _mm256_madd_epi16(th[s], _mm256_set1_epi16(16)));
}

/* Q4_K, rows [8h, 8h + 8) of super-block sb, sub-block j: dw = d * sc and
 * mw = -(dmin * m), the negation an exact sign flip (packed_impl.h) */
AI __m256 u8x8_ps(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

AI __m256 f16x8_ps(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

AI __m256 q4k_dw(const uint8_t *sb, int64_t j, int h)
{
    return _mm256_mul_ps(f16x8_ps(sb + PK_Q4K_D + 16 * h), u8x8_ps(sb + PK_Q4K_SC + 16 * j + 8 * h));
}

AI __m256 q4k_mw(const uint8_t *sb, int64_t j, int h)
{
    const __m256 dm = _mm256_mul_ps(f16x8_ps(sb + PK_Q4K_D + 32 + 16 * h), u8x8_ps(sb + PK_Q4K_M + 16 * j + 8 * h));
    return _mm256_xor_ps(dm, _mm256_set1_ps(-0.0f));
}

/*
 * Rows [8h, 8h + 8) of the panel: bytes [32h, 32h + 32) of every 64-byte
 * group, scales [8h, 8h + 8). One pass over the blocks per half: with both
 * halves in one pass the 16 unpacked weight vectors or the broadcast
 * activations no longer fit the 16 ymm registers.
 */
AI void tile_half(const pk_kind_t k, const int NS, const int h, int64_t nb, const uint8_t *panel, const void *x,
                  size_t xs, float *y, int64_t ys, int nrows)
{
    const size_t bb = pk_block_bytes(k);
    const size_t qbytes = pk_d_offset(k);
    const int off = pk_offset(k);
    pk_rows_t a;
    pk_rows(&a, x, xs, NS, nb);
    __m256 acc[PK_MAX_NS], macc[PK_MAX_NS];
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++) {
        acc[s] = _mm256_setzero_ps();
        macc[s] = _mm256_setzero_ps();
    }
    const bool q5 = k == PK_Q5_0 || k == PK_Q5_1 || k == PK_Q5_K;
    for (int64_t b = 0; b < nb; b++) {
        /* Q4_K, Q5_K: sub-block b % 8 of super-block b / 8, a Q4_1 (Q5_1) block */
        const uint8_t *sb = panel + (size_t)(b / 8) * pk_super_bytes(k);
        const uint8_t *blk = pk_is_super(k) ? sb + 256 * (b % 8) : panel + (size_t)b * bb;
        if (h == 0 && pk_is_super(k)) {
            for (size_t o = 0; o < 256; o += 64) _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
            _mm_prefetch((const char *)sb + PK_Q4K_D + 64 * (b % 8) + PK_PREFETCH_BYTES, _MM_HINT_T0);
            if (k == PK_Q5_K) _mm_prefetch((const char *)sb + PK_Q5K_H + 64 * (b % 8) + PK_PREFETCH_BYTES, _MM_HINT_T0);
        } else if (h == 0) {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
        }
        const __m256 dw = pk_is_super(k) ? q4k_dw(sb, b % 8, h) : f16x8_ps(blk + qbytes + 16 * h);
        /* Q8_0: stored byte = 16 wh + w (nibbles); Q4_x: w[0..4) the low
         * nibbles (groups 0..3), w[4..8) the high ones (groups 4..7) */
        __m256i w[8], wh[8], isum4[4];
        if (k == PK_Q8_0 && NS <= 4) {
            /* few rows: one group at a time, their int16 sums in registers */
            const int8_t *q[4];
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) q[s] = a.qa[s < NS ? s : 0] + b * 32;
            q8_isum(NS, blk + 32 * h, q, isum4);
        } else if (k == PK_Q8_0) {
            /* many rows: the 16 unpacked vectors serve them all (on Zen 5
             * faster than the path above from 8 rows on, slower up to 2) */
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) nibbles(blk + 64 * g + 32 * h, &w[g], &wh[g]);
        } else {
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) nibbles(blk + 64 * p + 32 * h, &w[p], &w[p + 4]);
        }
        if (q5) { /* bit g of the plane's byte is bit 4 of group g's (as in packed_avx512.c) */
            const __m256i hp = _mm256_loadu_si256(
                (const __m256i *)((k == PK_Q5_K ? sb + PK_Q5K_H + 64 * (b % 8) : blk + PK_Q5_H) + 32 * h));
            const __m256i m10 = _mm256_set1_epi8(0x10);
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                const __m256i t = g < 4 ? _mm256_slli_epi16(hp, 4 - g) : _mm256_srli_epi16(hp, g - 4);
                w[g] = _mm256_or_si256(w[g], _mm256_and_si256(t, m10));
            }
        }
#pragma GCC unroll 8
        for (int s = 0; s < NS; s++) {
            const int8_t *q = a.qa[s] + b * 32;
            __m256i isum;
            if (k == PK_Q8_0 && NS <= 4)
                isum = isum4[s];
            else if (k == PK_Q8_0)
                isum = _mm256_add_epi32(_mm256_madd_epi16(dot8_i16(w, q), _mm256_set1_epi16(1)),
                                        _mm256_madd_epi16(dot8_i16(wh, q), _mm256_set1_epi16(16)));
            else if (q5)
                isum = dot8_i32_q5(w, q);
            else
                isum = _mm256_madd_epi16(dot8_i16(w, q), _mm256_set1_epi16(1));
            if (off) isum = _mm256_add_epi32(isum, _mm256_set1_epi32(-off * a.suma[s][b]));
            acc[s] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(a.da[s][b])), acc[s]);
            if (pk_has_min(k) && NS == 1) {
                const __m256 mw = pk_is_super(k) ? q4k_mw(sb, b % 8, h) : f16x8_ps(blk + qbytes + 32 + 16 * h);
                macc[s] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.sa[s][b]), macc[s]);
            }
        }
    }
    /* Q4_1's and Q4_K's min terms: their own chain per lane, in a loop of
     * their own when there are several rows (fewer live registers above) */
    if (pk_has_min(k) && NS > 1)
        for (int64_t b = 0; b < nb; b++) {
            const __m256 mw = pk_is_super(k) ? q4k_mw(panel + (size_t)(b / 8) * pk_super_bytes(k), b % 8, h)
                                             : f16x8_ps(panel + (size_t)b * bb + qbytes + 32 + 16 * h);
#pragma GCC unroll 8
            for (int s = 0; s < NS; s++) macc[s] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.sa[s][b]), macc[s]);
        }
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++)
        store8(y + (int64_t)s * ys + 8 * h, pk_has_min(k) ? _mm256_add_ps(acc[s], macc[s]) : acc[s],
               nrows - 8 * h);
}

/*
 * Q6_K, rows [8h, 8h + 8) of the panel. Per block: the quants (low nibbles
 * | top 2 bits << 4), the pairs (sc_a, sc_a), (sc_b, sc_b) and (32 sc_a,
 * 32 sc_b) of each row, then per activation row
 *   total = sum over the 4 pairs of groups {0,1}, {2,3} (sc_a), {4,5}, {6,7}
 *           (sc_b) of vpmaddwd(int16 sum of the 2 groups' vpmaddubsw, sc)
 *         - vpmaddwd((32 sc_a, 32 sc_b), (sum_lo, sum - sum_lo))
 *   acc   = fma((float)total, d * da, acc)
 */
AI void tile_half_q6k(const int NS, const int h, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y,
                      int64_t ys, int nrows)
{
    pk_rows_t a;
    pk_rows(&a, x, xs, NS, nb);
    __m256 acc[PK_MAX_NS];
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++) acc[s] = _mm256_setzero_ps();
    const __m256i m30 = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = panel + (size_t)b * PK_Q6K_BYTES;
        if (h == 0)
            for (size_t o = 0; o < PK_Q6K_BYTES; o += 64)
                _mm_prefetch((const char *)blk + PK_PREFETCH_BYTES + o, _MM_HINT_T0);
        /* w[g]: group g's quants; the top 2 bits of group g are bits
         * 2 (g % 4) of hb[g / 4], moved to bits 4..5 (the 16-bit shifts
         * move no bit that the 0x30 mask keeps across bytes) */
        __m256i w[8];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) nibbles(blk + 64 * p + 32 * h, &w[p], &w[p + 4]);
        const __m256i hb[2] = {_mm256_loadu_si256((const __m256i *)(blk + PK_Q6K_H + 32 * h)),
                               _mm256_loadu_si256((const __m256i *)(blk + PK_Q6K_H + 64 + 32 * h))};
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const int gg = g % 4;
            const __m256i t = gg == 0   ? _mm256_slli_epi16(hb[g / 4], 4)
                              : gg == 1 ? _mm256_slli_epi16(hb[g / 4], 2)
                              : gg == 2 ? hb[g / 4]
                                        : _mm256_srli_epi16(hb[g / 4], 2);
            w[g] = _mm256_or_si256(w[g], _mm256_and_si256(t, m30));
        }
        /* int16 pairs per row lane: (sc_a, sc_a), (sc_b, sc_b), and
         * (32 sc_a, 32 sc_b) (in [-4096, 4064]) */
        const __m128i sa = _mm_loadl_epi64((const __m128i *)(blk + PK_Q6K_SC + 8 * h));
        const __m128i sb = _mm_loadl_epi64((const __m128i *)(blk + PK_Q6K_SC + 16 + 8 * h));
        const __m256i sca = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sa, sa));
        const __m256i scb = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sb, sb));
        const __m256i sc32 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sa, sb)), 5);
        const __m256 dw = f16x8_ps(blk + PK_Q6K_D + 16 * h);
#pragma GCC unroll 8
        for (int s = 0; s < NS; s++) {
            const int8_t *q = a.qa[s] + b * 32;
            __m256i p[8];
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) p[g] = _mm256_maddubs_epi16(w[g], bcast4(q + 4 * g));
            /* |sum_lo|, |sum - sum_lo| <= 16 * 128: both fit int16 */
            const int32_t lo = a.sumlo[s][b], hi = a.suma[s][b] - lo;
            const __m256i sums =
                _mm256_set1_epi32((int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16)));
            const __m256i ta = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(p[0], p[1]), sca),
                                                _mm256_madd_epi16(_mm256_add_epi16(p[2], p[3]), sca));
            const __m256i tb = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(p[4], p[5]), scb),
                                                _mm256_madd_epi16(_mm256_add_epi16(p[6], p[7]), scb));
            const __m256i total = _mm256_sub_epi32(_mm256_add_epi32(ta, tb), _mm256_madd_epi16(sc32, sums));
            acc[s] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(dw, _mm256_set1_ps(a.da[s][b])), acc[s]);
        }
    }
#pragma GCC unroll 8
    for (int s = 0; s < NS; s++) store8(y + (int64_t)s * ys + 8 * h, acc[s], nrows - 8 * h);
}

AI void tile(const pk_kind_t k, const int NS, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y,
             int64_t ys, int nrows)
{
    if (k == PK_Q6_K) {
        tile_half_q6k(NS, 0, nb, panel, x, xs, y, ys, nrows);
        if (nrows > 8) tile_half_q6k(NS, 1, nb, panel, x, xs, y, ys, nrows);
        return;
    }
    tile_half(k, NS, 0, nb, panel, x, xs, y, ys, nrows);
    if (nrows > 8) tile_half(k, NS, 1, nb, panel, x, xs, y, ys, nrows);
}


void pk_tile_avx2(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                  int64_t ys, int nrows)
{
    PK_TILE_DISPATCH(tile);
    if (k == PK_Q4_K) PK_TILE_NS(tile, PK_Q4_K)
    if (k == PK_Q6_K) PK_TILE_NS(tile, PK_Q6_K)
    if (k == PK_Q5_0) PK_TILE_NS(tile, PK_Q5_0)
    if (k == PK_Q5_1) PK_TILE_NS(tile, PK_Q5_1)
    if (k == PK_Q5_K) PK_TILE_NS(tile, PK_Q5_K)
}

AI float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

AI int32_t hsum8_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

void pk_act_quantize_avx2(const float *x, void *dst, int64_t n)
{
    const int64_t nb = n / 32;
    int8_t *qs = dst;
    float *d = (float *)((char *)dst + nb * 32), *s = d + nb;
    int32_t *sum = (int32_t *)(s + nb), *sum_lo = sum + nb;
    const __m256 lim = _mm256_set1_ps(127.0f), absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < nb; b++) {
        __m256 v[4];
        /* max_ps(a, m) keeps m where a is NaN, as fmaxf does; m has no NaN,
         * so the order of the horizontal max does not matter */
        __m256 m = _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + b * 32 + 8 * j);
            m = _mm256_max_ps(_mm256_and_ps(v[j], absm), m);
        }
        const float amax = hmax8(m);
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256 p = _mm256_round_ps(_mm256_mul_ps(v[j], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            /* |p| <= 127 but for inf/NaN input, which become 0 as in the reference */
            const __m256 ok = _mm256_cmp_ps(_mm256_and_ps(p, absm), lim, _CMP_LE_OQ);
            q[j] = _mm256_and_si256(_mm256_cvttps_epi32(p), _mm256_castps_si256(ok));
        }
        /* |q| <= 127: the saturating packs are plain narrowing; they
         * interleave 128-bit lanes, the permute restores element order */
        const __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(qs + b * 32), _mm256_permutevar8x32_epi32(q8, perm));
        const int32_t slo = hsum8_epi32(_mm256_add_epi32(q[0], q[1]));
        const int32_t sb = slo + hsum8_epi32(_mm256_add_epi32(q[2], q[3]));
        sum_lo[b] = slo;
        d[b] = db;
        sum[b] = sb;
        s[b] = db * (float)sb;
    }
}
