/*
 * packed_impl.h - private to src/cpu: byte layout of the packed weight panels
 * and activation rows of cpu_packed.h, and the per-ISA panel kernels.
 */
#ifndef ROTOR_CPU_PACKED_IMPL_H
#define ROTOR_CPU_PACKED_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/cpu_packed.h"

/*
 * One panel = CPU_PACK_ROWS rows; per 32-block of the panel, in order:
 *   nibble types (Q4_0, Q4_1): q[4][64]: byte 4*r + t of q[p] is row r's
 *     byte qs[4p + t]: low nibble = element 4p + t (group p), high nibble =
 *     element 16 + 4p + t (group p + 4);
 *   Q8_0: q[8][64]: byte 4*r + t of q[g] = row r's qs[4g + t] + 128;
 *   then d[16] (fp16), then for Q4_1 m[16] (fp16).
 * Q5_0, Q5_1 per 32-block: the low 4 bits in the nibble layout (256 bytes),
 *   then h[64]: byte 4*r + t holds at bit g the 5th bit of element 4g + t
 *   (group g; 0..7), then d[16], then for Q5_1 m[16] (fp16). The stored
 *   quant is 0..31 (Q5_0's weight d * (q - 16), Q5_1's d * q + m).
 * Q4_K per 256-element super-block of the panel (PK_Q4K_BYTES):
 *   q[8][256]: sub-block j's 32 quants per row in the nibble layout above;
 *   d[16], dmin[16] (fp16, the rows' super-block scales);
 *   sc[8][16], m[8][16] (u8, the rows' 6-bit sub-block scales and mins).
 *   Weight = d * sc * q - dmin * m, so a sub-block is a Q4_1 block with
 *   dw = d * sc and mw = -(dmin * m), both exact in fp32.
 * Q5_K: the Q4_K super-block, then h[8][64]: sub-block j's 5th bits in the
 *   Q5_0 plane layout below (PK_Q5K_BYTES; quants 0..31).
 * Q6_K per 32-block of the panel (PK_Q6K_BYTES): the 6-bit quants (0..63,
 *   weight = d * sc * (q - 32)) as their low nibbles in the nibble layout
 *   (256 bytes), then their high 2 bits: byte 4*r + t of h[0] holds those of
 *   groups 0..3 (elements 4g + t) at bits 2g, h[1] groups 4..7 (128 bytes),
 *   then sc[2][16] (int8: the scales of elements 0..15 and 16..31), then
 *   d[16] (fp16). The integer part: sc_a * (sum_a - 32 * sum(qa_a)) +
 *   sc_b * (sum_b - 32 * sum(qa_b)), exact in int32.
 * Panels follow each other; a panel's blocks follow each other.
 */
#define PK_NIB_BYTES 256
#define PK_Q8_BYTES 512
#define PK_Q4K_D 2048                  /* offset of d[16] in a Q4_K super-block */
#define PK_Q4K_SC (PK_Q4K_D + 64)      /* sc[8][16] */
#define PK_Q4K_M (PK_Q4K_SC + 128)     /* m[8][16] */
#define PK_Q4K_BYTES (PK_Q4K_M + 128)  /* 2368 = 18.5 bytes per row and 32 weights */
#define PK_Q6K_H 256                   /* offset of h[2][64] in a Q6_K block */
#define PK_Q6K_SC (PK_Q6K_H + 128)     /* sc[2][16] */
#define PK_Q6K_D (PK_Q6K_SC + 32)      /* d[16] */
#define PK_Q6K_BYTES (PK_Q6K_D + 32)   /* 448 = 28 bytes per row and 32 weights */
#define PK_Q5_H 256                    /* offset of h[64] in a Q5_0/Q5_1 block */
#define PK_Q5K_H PK_Q4K_BYTES          /* offset of h[8][64] in a Q5_K super-block */
#define PK_Q5K_BYTES (PK_Q5K_H + 512)  /* 2880 = 22.5 bytes per row and 32 weights */

typedef enum { PK_Q4_0, PK_Q4_1, PK_Q8_0, PK_Q4_K, PK_Q6_K, PK_Q5_0, PK_Q5_1, PK_Q5_K } pk_kind_t;

/* the kinds laid out in 256-element super-blocks of 8 Q4_1-like sub-blocks */
static inline int pk_is_super(pk_kind_t k) { return k == PK_Q4_K || k == PK_Q5_K; }
static inline size_t pk_super_bytes(pk_kind_t k) { return k == PK_Q5_K ? PK_Q5K_BYTES : PK_Q4K_BYTES; }

/* bytes of one 32-block of one panel */
static inline size_t pk_block_bytes(pk_kind_t k)
{
    switch (k) {
    case PK_Q4_0: return PK_NIB_BYTES + 32;
    case PK_Q4_1: return PK_NIB_BYTES + 64;
    case PK_Q8_0: return PK_Q8_BYTES + 32;
    case PK_Q4_K: return PK_Q4K_BYTES / 8; /* not a unit of the layout: see pk_panel_bytes */
    case PK_Q5_K: return PK_Q5K_BYTES / 8;
    case PK_Q6_K: return PK_Q6K_BYTES;
    case PK_Q5_0: return PK_Q5_H + 64 + 32;
    case PK_Q5_1: return PK_Q5_H + 64 + 64;
    }
    return 0;
}

/* offset of d[16] in a block of the 32-block kinds (m[16] follows for Q4_1, Q5_1) */
static inline size_t pk_d_offset(pk_kind_t k)
{
    return k == PK_Q8_0 ? PK_Q8_BYTES : k == PK_Q5_0 || k == PK_Q5_1 ? PK_Q5_H + 64 : PK_NIB_BYTES;
}

/* kinds with a min term (weight = d * q + m) */
static inline int pk_has_min(pk_kind_t k) { return k == PK_Q4_1 || k == PK_Q4_K || k == PK_Q5_1 || k == PK_Q5_K; }

/* bytes of one panel of rows of nb 32-blocks */
static inline size_t pk_panel_bytes(pk_kind_t k, int64_t nb)
{
    return pk_is_super(k) ? (size_t)(nb / 8) * pk_super_bytes(k) : (size_t)nb * pk_block_bytes(k);
}

/* the constant subtracted from every stored quant */
static inline int pk_offset(pk_kind_t k) { return k == PK_Q4_0 ? 8 : k == PK_Q8_0 ? 128 : k == PK_Q5_0 ? 16 : 0; }

/*
 * Activation row of nb blocks: qs[nb * 32] (int8), then d[nb] (float),
 * s[nb] (float, d * sum), sum[nb] (int32), sum_lo[nb] (int32, the sum of
 * the block's first 16 quants: Q6_K's 16-element sub-blocks).
 */
#define PK_ACT_QS(x) ((const int8_t *)(x))
#define PK_ACT_D(x, nb) ((const float *)((const char *)(x) + (size_t)(nb) * 32))
#define PK_ACT_S(x, nb) (PK_ACT_D(x, nb) + (nb))
#define PK_ACT_SUM(x, nb) ((const int32_t *)(PK_ACT_S(x, nb) + (nb)))
#define PK_ACT_SUMLO(x, nb) (PK_ACT_SUM(x, nb) + (nb))

#define PK_MAX_NS 8 /* activation rows per panel kernel call */

/* the parts of ns activation rows (stride xs bytes) a panel kernel reads */
typedef struct {
    const int8_t *qa[PK_MAX_NS];    /* quants */
    const float *da[PK_MAX_NS];     /* scales */
    const float *sa[PK_MAX_NS];     /* scale * sum */
    const int32_t *suma[PK_MAX_NS]; /* sums of the quants */
    const int32_t *sumlo[PK_MAX_NS]; /* sums of the first 16 quants */
} pk_rows_t;

static inline void pk_rows(pk_rows_t *r, const void *x, size_t xs, int ns, int64_t nb)
{
    for (int s = 0; s < ns; s++) {
        const void *xi = (const char *)x + (size_t)s * xs;
        r->qa[s] = PK_ACT_QS(xi);
        r->da[s] = PK_ACT_D(xi, nb);
        r->sa[s] = PK_ACT_S(xi, nb);
        r->suma[s] = PK_ACT_SUM(xi, nb);
        r->sumlo[s] = PK_ACT_SUMLO(xi, nb);
    }
}

/*
 * Panel kernel: rows [0, nrows) (nrows <= 16) of one panel times ns
 * activation rows (1 <= ns <= PK_MAX_NS), x rows at stride xs bytes:
 *   y[i * ys + r] = result for (row r, activation row i).
 */
typedef void (*pk_tile_fn)(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns,
                           float *y, int64_t ys, int nrows);

/* In an ISA file's panel kernel entry: calls TILE(K, NS, nb, panel, x, xs,
 * y, ys, nrows) with compile-time kind K and row count NS (1..PK_MAX_NS), so
 * each (kind, rows) pair gets its own register allocation. */
#define PK_TILE_NS(TILE, K)                                                                                      \
    switch (ns) {                                                                                                \
    case 1: TILE(K, 1, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 2: TILE(K, 2, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 3: TILE(K, 3, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 4: TILE(K, 4, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 5: TILE(K, 5, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 6: TILE(K, 6, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    case 7: TILE(K, 7, nb, panel, x, xs, y, ys, nrows); return;                                                  \
    default: TILE(K, 8, nb, panel, x, xs, y, ys, nrows); return;                                                 \
    }
#define PK_TILE_DISPATCH(TILE)                                                                                   \
    switch (k) {                                                                                                 \
    case PK_Q4_0: PK_TILE_NS(TILE, PK_Q4_0)                                                                      \
    case PK_Q4_1: PK_TILE_NS(TILE, PK_Q4_1)                                                                      \
    case PK_Q8_0: PK_TILE_NS(TILE, PK_Q8_0)                                                                      \
    case PK_Q4_K:                                                                                                \
    case PK_Q6_K:                                                                                                \
    case PK_Q5_0:                                                                                                \
    case PK_Q5_1:                                                                                                \
    case PK_Q5_K: break;                                                                                         \
    }
_Static_assert(PK_MAX_NS == 8, "PK_TILE_NS covers 1..8 rows");

void pk_tile_scalar(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows);
void pk_tile_avx512(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows);
void pk_tile_avx2(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                  int64_t ys, int nrows);
/* 16 activation rows at once (AVX-512; the same bits as two 8-row calls) */
void pk_tile16_avx512(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, float *y, int64_t ys,
                      int nrows);
void pk_act_quantize_scalar(const float *x, void *dst, int64_t n);
void pk_act_quantize_avx2(const float *x, void *dst, int64_t n);
void pk_act_quantize_avx512(const float *x, void *dst, int64_t n);

#endif
