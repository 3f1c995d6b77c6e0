/*
 * packed_scalar.c - the reference panel kernel and activation quantizer of
 * cpu_packed.h. Every SIMD version must give these bits.
 *
 * Order per (row r, activation row i), blocks b in order:
 *   isum = sum_k uq[r][k] * qa[i][k] - off * sum(qa[i])        exact
 *   acc  = fma((float)isum, dw_b * da_b, acc)
 *   macc = fma(mw_b, sa_b, macc)                               (Q4_1, Q5_1)
 *   y    = acc + macc                                          (Q4_1, Q5_1; else acc)
 */
#include <math.h>
#include <string.h>

#include "cpu/packed_impl.h"
#include "cpu/quant_impl.h"

/* the unsigned stored quant of row r, element k of a packed block */
static inline int pk_quant(pk_kind_t k, const uint8_t *blk, int r, int e)
{
    if (k == PK_Q8_0) return blk[(e / 4) * 64 + r * 4 + e % 4];
    const int hi = e >= 16, g = (e % 16) / 4;
    const uint8_t v = blk[g * 64 + r * 4 + e % 4];
    const int q = hi ? v >> 4 : v & 0x0F;
    if (k != PK_Q5_0 && k != PK_Q5_1) return q;
    return q | (((blk[PK_Q5_H + r * 4 + e % 4] >> (e / 4)) & 1) << 4); /* element e is in group e / 4 */
}

void pk_tile_scalar(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows)
{
    const size_t bb = pk_block_bytes(k);
    const size_t qbytes = pk_d_offset(k);
    const int off = pk_offset(k);
    for (int i = 0; i < ns; i++) {
        const void *xi = (const char *)x + (size_t)i * xs;
        const int8_t *qa = PK_ACT_QS(xi);
        const float *da = PK_ACT_D(xi, nb), *sa = PK_ACT_S(xi, nb);
        const int32_t *suma = PK_ACT_SUM(xi, nb);
        for (int r = 0; r < nrows; r++) {
            float acc = 0.0f, macc = 0.0f;
            for (int64_t b = 0; b < nb && pk_is_super(k); b++) {
                /* sub-block b % 8 of super-block b / 8: a Q4_1 block with
                 * dw = d * sc, mw = -(dmin * m) (both exact); Q5_K's quant
                 * has its 5th bit in the sub-block's plane */
                const uint8_t *sb = panel + (size_t)(b / 8) * pk_super_bytes(k);
                const int j = (int)(b % 8);
                int32_t isum = 0;
                for (int e = 0; e < 32; e++) {
                    int q = pk_quant(PK_Q4_1, sb + 256 * j, r, e);
                    if (k == PK_Q5_K) q |= ((sb[PK_Q5K_H + 64 * j + r * 4 + e % 4] >> (e / 4)) & 1) << 4;
                    isum += q * qa[b * 32 + e];
                }
                rt_half hd, hm;
                memcpy(&hd, sb + PK_Q4K_D + 2 * r, 2);
                memcpy(&hm, sb + PK_Q4K_D + 32 + 2 * r, 2);
                const float dw = cpu_h2f(hd) * (float)sb[PK_Q4K_SC + 16 * j + r];
                const float mw = -(cpu_h2f(hm) * (float)sb[PK_Q4K_M + 16 * j + r]);
                acc = fmaf((float)isum, dw * da[b], acc);
                macc = fmaf(mw, sa[b], macc);
            }
            for (int64_t b = 0; b < nb && k == PK_Q6_K; b++) {
                const uint8_t *blk = panel + (size_t)b * PK_Q6K_BYTES;
                const int32_t *sumlo = PK_ACT_SUMLO(xi, nb);
                int32_t ia = -32 * sumlo[b], ib = -32 * (suma[b] - sumlo[b]);
                for (int e = 0; e < 32; e++) {
                    const int g = e / 4, t = e % 4;
                    const int hi = (blk[PK_Q6K_H + 64 * (g / 4) + r * 4 + t] >> (2 * (g % 4))) & 3;
                    const int q6 = pk_quant(PK_Q4_1, blk, r, e) | (hi << 4);
                    if (e < 16) ia += q6 * qa[b * 32 + e];
                    else ib += q6 * qa[b * 32 + e];
                }
                const int32_t total = (int8_t)blk[PK_Q6K_SC + r] * ia + (int8_t)blk[PK_Q6K_SC + 16 + r] * ib;
                rt_half hd;
                memcpy(&hd, blk + PK_Q6K_D + 2 * r, 2);
                acc = fmaf((float)total, cpu_h2f(hd) * da[b], acc);
            }
            for (int64_t b = 0; b < nb && !pk_is_super(k) && k != PK_Q6_K; b++) {
                const uint8_t *blk = panel + (size_t)b * bb;
                int32_t isum = -off * suma[b];
                for (int e = 0; e < 32; e++) isum += pk_quant(k, blk, r, e) * qa[b * 32 + e];
                rt_half hd, hm;
                memcpy(&hd, blk + qbytes + 2 * r, 2);
                acc = fmaf((float)isum, cpu_h2f(hd) * da[b], acc);
                if (pk_has_min(k)) {
                    memcpy(&hm, blk + qbytes + 32 + 2 * r, 2);
                    macc = fmaf(cpu_h2f(hm), sa[b], macc);
                }
            }
            y[(int64_t)i * ys + r] = pk_has_min(k) ? acc + macc : acc;
        }
    }
}

void pk_act_quantize_scalar(const float *x, void *dst, int64_t n)
{
    const int64_t nb = n / 32;
    int8_t *qs = dst;
    float *d = (float *)((char *)dst + nb * 32), *s = d + nb;
    int32_t *sum = (int32_t *)(s + nb), *sum_lo = sum + nb;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        int32_t sb = 0;
        for (int j = 0; j < 32; j++) {
            const float v = nearbyintf(xb[j] * id); /* |v| <= 127 but for inf/NaN input */
            const int q = v >= -127.0f && v <= 127.0f ? (int)v : 0;
            qs[b * 32 + j] = (int8_t)q;
            sb += q;
            if (j == 15) sum_lo[b] = sb;
        }
        d[b] = db;
        sum[b] = sb;
        s[b] = db * (float)sb;
    }
}
