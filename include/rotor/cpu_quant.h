/*
 * cpu_quant.h - CPU kernels for quantized and float tensor rows: dequantize,
 * quantize (reference quantizers, bit-identical to ggml's *_ref ones), dot
 * products of a weight row with an activation row in the weight type's
 * vec_dot type, and a tiled matmul over a range of weight rows.
 *
 * SIMD: AVX-512 / AVX2 paths are chosen at run time (cpuid) with a scalar
 * fallback; cpu_quant_set_isa() forces one for tests. Every result is
 * computed with a fixed reduction order per output element, so a given
 * (weight row, activation row) pair yields bit-identical output whatever the
 * number of activation rows in the call, the tile it fell in, or the row range
 * a thread was given (batch invariance). Results may differ between ISAs.
 *
 * None of these functions allocate. Buffers are owned by the caller.
 */
#ifndef ROTOR_CPU_QUANT_H
#define ROTOR_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"
#include "rotor/types.h"

typedef enum { CPU_ISA_SCALAR = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 } cpu_isa_t;

/* Best ISA this CPU and build support. */
cpu_isa_t cpu_quant_detect_isa(void);
/* Force an ISA (clamped to what is available); returns the one in effect. */
cpu_isa_t cpu_quant_set_isa(cpu_isa_t isa);
cpu_isa_t cpu_quant_get_isa(void);
const char *cpu_isa_name(cpu_isa_t isa);

/* dst[0..n) = dequantized src row of type t. n multiple of block size.
 * Returns RT_ERR_UNSUPPORTED for types without a dequantizer. */
rt_status_t cpu_dequantize_row(rt_type_t t, const void *src, float *dst, int64_t n);

/* Quantize n floats into type t (reference quantizer, same bits as ggml's
 * quantize_row_*_ref). Works for every supported weight type and for the
 * activation types Q8_0, Q8_1, Q8_K, F16, BF16, F32. */
rt_status_t cpu_quantize_row(rt_type_t t, const float *src, void *dst, int64_t n);

/* Convert an activation row to vec_dot type vt (fast path of
 * cpu_quantize_row for Q8_0/Q8_1/Q8_K/F16/BF16/F32; same bits). */
void cpu_quantize_act(rt_type_t vt, const float *src, void *dst, int64_t n);

/* Dot product of weight row w (type t, n elements) with activation row a
 * (already in rt_type_traits(t)->vec_dot_type). */
float cpu_vec_dot(rt_type_t t, int64_t n, const void *w, const void *a);

/*
 * Y[i, r] = dot(W row r, X row i) for r in [r0, r1), i in [0, m).
 *   W: weight matrix of type t, n_out rows of n_in elements, row stride w_stride bytes
 *   X: m activation rows already in the vec_dot type, row stride x_stride bytes
 *   Y: float output, row stride y_stride floats (Y[i*y_stride + r])
 * Threads call it on disjoint [r0, r1). Tiles over activation rows so each
 * weight block is unpacked once for several activation rows.
 */
void cpu_matmul(rt_type_t t, int64_t n_in, const void *W, size_t w_stride, const void *X,
                size_t x_stride, int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1);

#endif
