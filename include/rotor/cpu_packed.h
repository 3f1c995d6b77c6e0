/*
 * cpu_packed.h - the engine's matmul: an int8 GEMM over weights repacked
 * into panels of 16 rows, for batches of sequences.
 *
 * Why: llama.cpp's dot-product order (cpu_quant.h, kept by `rotor generate`
 * for bit-identity with llama.cpp) reduces 8 lanes per row and sequence per
 * 32-block, so its cost per (row, sequence) pair stays high however many
 * sequences share a weight block. Here one AVX-512 VNNI instruction covers 16
 * weight rows x 4 elements of one sequence; the unpacked weights of a panel
 * are shared by every sequence in the call.
 *
 * Weights: Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, Q5_0, Q5_1 and Q5_K rows (ggml layouts)
 * are repacked per panel of CPU_PACK_ROWS rows and per 32-block: the 32
 * quants of the 16 rows interleaved 4 bytes per row (one zmm lane per row, as
 * unsigned bytes; Q8_0 stored + 128; 4-bit nibbles, Q6_K's top 2 bits and
 * Q5's 5th bit in a separate plane),
 * then the rows' scales (and mins); src/cpu/packed_impl.h has the layouts.
 * The last panel is padded with zero rows. About the bytes per row of the
 * original (Q6_K +7%: its fp16 scale is repeated per 32-block). The K-quants
 * and Q5 kinds are packed only where a fast kernel runs them (AVX2, AVX-512).
 *
 * Activations: each row of n floats becomes CPU_ACT8 blocks of 32: int8
 * quants, fp32 scale d = max|x| / 127, the integer sum of the quants, and
 * s = d * sum (cpu_act8_quantize).
 *
 * Numerics, per output element (weight row r, activation row i) - Q4_K is a
 * Q4_1 block per 32-element sub-block with dw = d*sc, mw = -(dmin*m);
 * Q6_K's integer part is sc_a*isum(0..15) + sc_b*isum(16..31), each isum
 * less 32 * its activation sum, then acc = fma((float)that, d * da, acc):
 *   for each 32-block b in order:
 *     isum = sum_k uq[r][k] * qa[i][k] - off * sum(qa[i])   (exact int32;
 *            uq the unsigned stored quant, off 8 for Q4_0, 128 for Q8_0, 0 Q4_1)
 *     acc  = fma((float)isum, dw_b * da_b, acc)
 *     macc = fma(mw_b, sa_b, macc)                            (Q4_1)
 *   y = acc + macc (Q4_1), y = acc (others)
 * The integer part is exact and the float operations are the same scalar
 * operations on every ISA, so results are bit-identical across scalar, AVX2
 * and AVX-512 builds, for any number of activation rows, tile or row range
 * (batch invariance).
 *
 * Nothing here allocates; buffers belong to the caller.
 */
#ifndef ROTOR_CPU_PACKED_H
#define ROTOR_CPU_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"
#include "rotor/types.h"

#define CPU_PACK_ROWS 16

/* True when weights of type t are packed on this CPU (Q4_0, Q4_1, Q8_0;
 * Q4_K, Q6_K, Q5_0, Q5_1 and Q5_K with AVX2 or AVX-512). */
bool cpu_packed_supported(rt_type_t t);

/* Bytes of the packed form of an (n_out x n_in) matrix of type t (n_out
 * rounded up to whole panels); 0 when unsupported or n_in % 32 != 0. */
size_t cpu_packed_size(rt_type_t t, int64_t n_out, int64_t n_in);

/* Pack rows [0, n_out) of W (row stride w_stride bytes) into dst
 * (cpu_packed_size bytes, 64-byte aligned is best). */
rt_status_t cpu_pack_weights(rt_type_t t, const void *W, size_t w_stride, int64_t n_out, int64_t n_in, void *dst);

/* Bytes of one activation row of n elements (n % 32 == 0). */
size_t cpu_act8_row_size(int64_t n);

/* Quantize n floats (n % 32 == 0) into one activation row. */
void cpu_act8_quantize(const float *x, void *dst, int64_t n);

/*
 * Y[i * y_stride + r] = dot(W row r, X row i) for r in [r0, r1), i in [0, m),
 * with P the packed W (n_out rows) and X m activation rows (cpu_act8 rows,
 * stride x_stride bytes). r0 must be a multiple of CPU_PACK_ROWS; r1 a
 * multiple of it or n_out. Threads call it on disjoint row ranges.
 */
void cpu_packed_matmul(rt_type_t t, int64_t n_in, int64_t n_out, const void *P, const void *X, size_t x_stride,
                       int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1);

#endif
