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
 * Panels follow each other; a panel's blocks follow each other.
 */
#define PK_NIB_BYTES 256
#define PK_Q8_BYTES 512

typedef enum { PK_Q4_0, PK_Q4_1, PK_Q8_0 } pk_kind_t;

/* bytes of one 32-block of one panel */
static inline size_t pk_block_bytes(pk_kind_t k)
{
    switch (k) {
    case PK_Q4_0: return PK_NIB_BYTES + 32;
    case PK_Q4_1: return PK_NIB_BYTES + 64;
    case PK_Q8_0: return PK_Q8_BYTES + 32;
    }
    return 0;
}

/* the constant subtracted from every stored quant */
static inline int pk_offset(pk_kind_t k) { return k == PK_Q4_0 ? 8 : k == PK_Q8_0 ? 128 : 0; }

/*
 * Activation row of nb blocks: qs[nb * 32] (int8), then d[nb] (float),
 * s[nb] (float, d * sum), sum[nb] (int32).
 */
#define PK_ACT_QS(x) ((const int8_t *)(x))
#define PK_ACT_D(x, nb) ((const float *)((const char *)(x) + (size_t)(nb) * 32))
#define PK_ACT_S(x, nb) (PK_ACT_D(x, nb) + (nb))
#define PK_ACT_SUM(x, nb) ((const int32_t *)(PK_ACT_S(x, nb) + (nb)))

/*
 * Panel kernel: rows [0, nrows) (nrows <= 16) of one panel times ns
 * activation rows (1 <= ns <= PK_MAX_NS), x rows at stride xs bytes:
 *   y[i * ys + r] = result for (row r, activation row i).
 */
#define PK_MAX_NS 8
typedef void (*pk_tile_fn)(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns,
                           float *y, int64_t ys, int nrows);

void pk_tile_scalar(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows);
void pk_tile_avx512(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                    int64_t ys, int nrows);
void pk_tile_avx2(pk_kind_t k, int64_t nb, const uint8_t *panel, const void *x, size_t xs, int ns, float *y,
                  int64_t ys, int nrows);
void pk_act_quantize_scalar(const float *x, void *dst, int64_t n);
void pk_act_quantize_avx2(const float *x, void *dst, int64_t n);
void pk_act_quantize_avx512(const float *x, void *dst, int64_t n);

#endif
