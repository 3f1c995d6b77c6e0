/*
 * cpu_ops.h - small CPU kernels of the transformer besides matmul: RMSNorm,
 * RoPE and f16 row conversion (ops.c), and attention, softmax and SwiGLU in
 * llama.cpp's floating-point order (ops_compat*.c).
 */
#ifndef ROTOR_CPU_OPS_H
#define ROTOR_CPU_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps) * w   (sum in double, as ggml) */
void cpu_rmsnorm(const float *x, const float *w, float *y, int n, float eps);
/* The same with the engine's order: x^2 summed in 16 float FMA chains (lane
 * l takes elements l, l+16, ...), reduced pairwise as _mm512_reduce_add_ps,
 * the n % 16 last elements FMA'd after in order; vectorizes, the same bits
 * on every ISA. */
void cpu_rmsnorm_engine(const float *x, const float *w, float *y, int n, float eps);
/* cos/sin table for one position: cs[2*i] = cos, cs[2*i+1] = sin of
 * (pos * freq_scale * base^(-2i/n_dims)) / freq_factors[i] (llama.cpp's way). */
void cpu_rope_table(int pos, int n_dims, float base, float freq_scale, const float *freq_factors, float *cs);
/* Rotate n_heads heads of head_dim values in place with table cs. */
void cpu_rope_apply(float *x, int n_heads, int head_dim, int n_dims, bool neox, const float *cs);
void cpu_f16_to_f32_row(const uint16_t *src, float *dst, int n);
void cpu_f32_to_f16_row(const float *src, uint16_t *dst, int n);


/* ---- llama.cpp-compatible numerics (ops_compat.c) ----
 * SwiGLU (g = silu(g) * u) and one head of attention in the exact floating-point order
 * of llama.cpp's AVX-512 CPU backend; see ops_compat.c. */
void cpu_compat_swiglu(float *g, const float *u, int n);
/* x[0..n) = softmax(x) in the order of ggml's soft_max row (16-lane groups
 * with the vectorized exp, their sums in double, the rest with expf). */
void cpu_compat_softmax(float *x, int n);
/* dot(a, b) of n floats (n % 16 == 0) in the order of llama.cpp's F32 matmul
 * for 2+ tokens (tinyBLAS: one 16-lane FMA chain, then the lanes' sum). */
float cpu_compat_dot_f32_gemm(const float *a, const float *b, int n);
void cpu_compat_attn_head(const float *q, const float *kt, const float *vt, int hd, int n_pos, int n_pad,
                          float scale, bool gemm, bool kq_gemv_always, bool round_p_f16, float *p,
                          float *out);
/* The same head reading an f16 paged KV cache in place (AVX-512 only; the
 * caller checks cpu_quant_get_isa() and block_size % 16 == 0). */
void cpu_compat_attn_head_paged_avx512(const float *q, const uint16_t *k, const uint16_t *v,
                                       const int32_t *blocks, int bs, int kvd, int hoff, int hd,
                                       int n_pos, float scale, bool gemm, float *p, float *out);
/* The same head over f32 copies of a paged head's K and V gathered once for
 * the many tokens of a prefill (kt: n_pos rows of hd; vt: hd rows of vstride,
 * positions in order): the same bits without converting K and V again for
 * every token. */
void cpu_compat_attn_head_gathered_avx512(const float *q, const float *kt, const float *vt, int vstride, int hd,
                                          int n_pos, float scale, bool gemm, float *p, float *out);
/* Decode (gemm = false) for G <= 4 query heads of one kv head at once, each
 * with that function's bits; hd % 64 == 0. q: G rows of hd floats; p: scratch
 * of G * ((n_pos + 15) & ~15) floats; out: G rows, stride out_stride. */
void cpu_compat_attn_group_decode_avx512(int G, const float *q, const uint16_t *k, const uint16_t *v,
                                         const int32_t *blocks, int bs, int kvd, int hoff, int hd, int n_pos,
                                         float scale, float *p, float *out, int out_stride);

/* ---- the engine's attention (attn_engine.c) ----
 * G query heads sharing one kv head, one query token, over positions
 * [0, n_pos) of a paged cache in the engine layout (bs % 16 == 0):
 *   K transposed in its block: element d of position i at
 *     k[(blocks[i/bs] * kvd + hoff + d) * bs + i % bs]
 *   V rows: element d of position i at v[(blocks[i/bs] * bs + i % bs) * kvd + hoff + d]
 * k, v: this layer's base, f16 when f16 else f32. q: G rows, stride q_stride
 * floats; out: G rows, stride out_stride. p: scratch of 4 * CPU_ATTN_ENGINE_CHUNK
 * floats. hd <= CPU_ATTN_ENGINE_MAX_HD.
 * Order per head, in chunks of CPU_ATTN_ENGINE_CHUNK positions (so that one
 * long sequence can be split over threads with the same bits):
 *   per chunk c: s_i = (q . k_i, one 16-position FMA chain over d in order)
 *     * scale; m_c = max s_i; e_i = exp(s_i - m_c) (ggml's exp scheme);
 *     l_c = sum e_i as 16-lane partials in position order then a fixed
 *     pairwise reduction; o_c[d] = FMA chain over positions of e_i * v_i[d];
 *   merged in chunk order (cpu_attn_engine_merge): M = max(M, m_c),
 *     L = fma(L, exp(M_old - M), l_c * exp(m_c - M)), O likewise;
 *   out[d] = O[d] * (1 / L).
 * The same bits on every ISA, for any G, grouping or split. */
#define CPU_ATTN_ENGINE_MAX_HD 256
#define CPU_ATTN_ENGINE_CHUNK 256
void cpu_attn_engine(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                     const int32_t *blocks, int bs, int kvd, int hoff, int hd, int n_pos, float scale, float *p,
                     float *out, int out_stride);
/* The pieces of cpu_attn_engine, for splitting a sequence's positions over
 * threads: the chunk [p0, p1) (p0 a multiple of CPU_ATTN_ENGINE_CHUNK, p1 -
 * p0 <= it) of G heads into part[g * part_stride ...] = m, l, o[hd]; a part
 * merged into a head's running state (the first chunk's part is the initial
 * state), in chunk order; the head's output from its state. */
void cpu_attn_engine_part(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                          const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale,
                          float *p, float *part, int part_stride);
void cpu_attn_engine_merge(float *state, const float *part, int hd);
void cpu_attn_engine_finish(const float *state, float *out, int hd);

#endif
