/*
 * quant_impl.h - private to src/cpu: the ggml-compatible block layouts of the
 * quantized types, fast inline fp16/bf16 helpers, and the per-ISA kernel
 * tables that quant_dispatch.c and matmul.c pick from.
 *
 * Block layouts are bit-identical to ggml's (ggml-common.h), so rows of a
 * GGUF file are used in place. Blocks are only 2-byte aligned in files.
 */
#ifndef ROTOR_CPU_QUANT_IMPL_H
#define ROTOR_CPU_QUANT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rotor/cpu_quant.h"
#include "rotor/types.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t rt_half;

typedef struct {
    rt_half d;             /* delta */
    uint8_t qs[QK4_0 / 2]; /* nibbles: low = element j, high = element j+16 */
} block_q4_0;

typedef struct {
    rt_half d; /* delta */
    rt_half m; /* min */
    uint8_t qs[QK4_1 / 2];
} block_q4_1;

typedef struct {
    rt_half d;
    uint8_t qh[4]; /* 5th bit of each element */
    uint8_t qs[QK5_0 / 2];
} block_q5_0;

typedef struct {
    rt_half d;
    rt_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;

typedef struct {
    rt_half d;
    int8_t qs[QK8_0];
} block_q8_0;

typedef struct {
    rt_half d;
    rt_half s; /* d * sum(qs) */
    int8_t qs[QK8_1];
} block_q8_1;

typedef struct {
    uint8_t scales[QK_K / 16]; /* 4-bit scale | 4-bit min << 4 */
    uint8_t qs[QK_K / 4];      /* 2-bit quants */
    rt_half d;
    rt_half dmin;
} block_q2_K;

typedef struct {
    uint8_t hmask[QK_K / 8]; /* high bit */
    uint8_t qs[QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];      /* 6-bit scales, packed */
    rt_half d;
} block_q3_K;

typedef struct {
    rt_half d;
    rt_half dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 6-bit scales and mins, packed */
    uint8_t qs[QK_K / 2];
} block_q4_K;

typedef struct {
    rt_half d;
    rt_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

typedef struct {
    uint8_t ql[QK_K / 2];     /* low 4 bits */
    uint8_t qh[QK_K / 4];     /* high 2 bits */
    int8_t scales[QK_K / 16]; /* 8-bit scales */
    rt_half d;
} block_q6_K;

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sum of qs in groups of 16 */
} block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

/* Exact half -> float without tables (same value as rt_fp16_to_fp32). */
static inline float cpu_h2f(rt_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        float f = (float)mant * 0x1p-24f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0);
    } else {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline float cpu_bf2f(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* ggml's nearest_int: round half to even for |f| < 2^22. */
static inline int cpu_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* 6-bit scale and min j of a Q4_K/Q5_K block. */
static inline void cpu_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/*
 * Dot-tile kernel: for iw in [0, nw) and k in [0, nr),
 *   out[iw * CPU_DOT_NR + k] = dot(w + iw*w_stride, x + k*x_stride)
 * with 1 <= nw <= CPU_DOT_NW, 1 <= nr <= CPU_DOT_NR, n elements; x rows are
 * in the vec_dot type. The value for a given (weight row, x row) pair must
 * not depend on nw, nr or its place in the tile (batch invariance).
 */
typedef void (*cpu_dot_tile_fn)(int64_t n, const void *w, size_t w_stride, int nw, const void *x,
                                size_t x_stride, int nr, float *out);
#define CPU_DOT_NW 4
#define CPU_DOT_NR 4
/* Tile shapes matmul asks for: GEMV (m = 1) 4 weight rows per call,
 * prefill 4 weight rows x 4 activation rows (kernels may split it). */
#define CPU_GEMV_NW 4
#define CPU_GEMM_NW 4

/* Per-ISA tables indexed by weight type id; NULL = use the scalar kernel. */
extern const cpu_dot_tile_fn cpu_dot_scalar[RT_TYPE_COUNT];
extern const cpu_dot_tile_fn cpu_dot_avx2[RT_TYPE_COUNT];
extern const cpu_dot_tile_fn cpu_dot_avx512[RT_TYPE_COUNT];

/* The kernel in effect for type t under the current ISA (never NULL for a
 * supported type). */
cpu_dot_tile_fn cpu_dot_kernel(rt_type_t t);
/* Bit t set: the AVX-512 kernel of type t prefetches its weights itself as a
 * GEMV (nr = 1). cpu_dot_gemv_prefetches: that holds for the ISA in effect. */
extern const uint64_t cpu_dot_avx512_gemv_prefetch;
bool cpu_dot_gemv_prefetches(rt_type_t t);

/* Reference (scalar) row converters in quant_ref.c. */
rt_status_t cpu_ref_dequantize(rt_type_t t, const void *src, float *dst, int64_t n);
rt_status_t cpu_ref_quantize(rt_type_t t, const float *src, void *dst, int64_t n);

/* llama.cpp-order Q4_1/Q8_0 dot tiles (quant_compat*.c) and the Q8_0/Q8_1
 * activation quantizer with llama.cpp's run-time semantics. */
void cpu_compat_q4_1_scalar(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_q8_0_scalar(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_q4_1_avx2(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_q8_0_avx2(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_q4_1_avx512(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_q8_0_avx512(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, int nr, float *out);
void cpu_compat_quantize_q8(const float *x, void *dst, int64_t n, bool with_sum);

/* Batched tiles for m >= 8 (AVX-512, llama.cpp-order Q4_1/Q8_0): 4 weight
 * rows x CPU_GEMM8_NR activation rows per call, written to y[k * ys + iw],
 * each element with the same bits as the dot tile's. prep converts the
 * activation rows' block scales into sc (CPU_GEMM8_SC floats per 32-block)
 * once per group of rows. */
#define CPU_GEMM8_NR 8
#define CPU_GEMM8_SC 16
typedef struct {
    void (*prep)(int64_t nb, const void *x, size_t xs, float *sc);
    void (*tile)(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc, float *y,
                 int64_t ys);
} cpu_gemm8_t;
/* The batched tile for type t under the current ISA, or NULL. */
const cpu_gemm8_t *cpu_gemm8_kernel(rt_type_t t);
void cpu_compat_q4_1_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc);
void cpu_compat_q8_0_gemm8_prep_avx512(int64_t nb, const void *x, size_t xs, float *sc);
void cpu_compat_q4_1_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys);
void cpu_compat_q8_0_gemm8_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, const float *sc,
                                  float *y, int64_t ys);

/* F16 weights x F16 activations, 4 weight rows x 6 activation rows per call
 * (AVX-512): y[k * ys + iw], each element with the dot tile's bits. */
#define CPU_F16_GEMM_NR 6
/* how far ahead the AVX-512 F16 GEMV asks for its weight lines (f16w_tile) */
#define CPU_F16_GEMV_PF 12288
void cpu_f16_gemm46_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *y, int64_t ys);

/* Fast activation quantizers, per ISA (Q8_0/Q8_1 with llama.cpp's run-time
 * semantics as cpu_compat_quantize_q8, the others as the reference). */
void cpu_quantize_act_avx512(rt_type_t vt, const float *src, void *dst, int64_t n);

#endif
