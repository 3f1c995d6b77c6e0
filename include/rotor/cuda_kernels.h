/*
 * cuda_kernels.h - C interface to rotor's CUDA code (the .cu files in
 * kernels/), for the cuda engine backend (src/engine/backend_cuda.c) and
 * rotor-cuda-check.
 *
 * The kernels and their cuBLAS calls are built by nvcc into one shared
 * library, librotor_cuda.so (build/lib/), which links the CUDA runtime and
 * cuBLAS; rotor itself does not. rt_cuda_load() dlopens it the first time a
 * cuda engine is made (as transfer's ucx backend loads libucp), so a rank
 * that never uses a GPU never loads CUDA, and a build without nvcc still
 * runs everything else. The library exports one symbol, rt_cuda_api(),
 * returning the table below.
 *
 * Every entry returns 0 or a cudaError_t / cublasStatus_t value (say which
 * with error_string). Kernels and cuBLAS calls go to the library's one
 * stream on the current device, in order; the copies are synchronous and
 * ordered with that stream's work (a copy starts after the work before it
 * and the work after it starts after the copy). Pointers are device
 * pointers unless named host. Layouts are row-major.
 *
 * Graphs (CUDA graphs): between graph_begin and graph_end the kernels and
 * cuBLAS calls are recorded, not run (no copies or allocations in
 * between); graph_launch then runs the recorded work with the arguments
 * it was recorded with, reading whatever the buffers hold at launch. One
 * launch replaces hundreds of kernel launches in a decode step.
 */
#ifndef ROTOR_CUDA_KERNELS_H
#define ROTOR_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_CUDA_API_VERSION 3
#define RT_CUDA_GEMV_MAX_TOKENS 8

typedef struct rt_cuda_api {
    int version; /* RT_CUDA_API_VERSION */
    /* devices and memory */
    int (*device_count)(int *count);
    const char *(*error_string)(int err);
    int (*set_device)(int device);
    int (*device_name)(int device, char *name, int n); /* host buffer */
    int (*mem_info)(uint64_t *free_bytes, uint64_t *total_bytes); /* the current device's */
    int (*malloc)(void **p, uint64_t bytes);
    int (*free)(void *p);
    int (*memcpy_h2d)(void *dst, const void *host_src, uint64_t bytes);
    int (*memcpy_d2h)(void *host_dst, const void *src, uint64_t bytes);
    int (*memcpy_d2d)(void *dst, const void *src, uint64_t bytes);
    int (*sync)(void);
    /* cuBLAS: a handle per backend */
    int (*blas_create)(void **handle);
    int (*blas_destroy)(void *handle);
    /* y[t, o] = sum_i w[o, i] x[t, i]: w (n_out, k) f16, x (n_tok, k) f16,
     * y (n_tok, n_out) f32, f32 accumulation (cublasGemmEx) */
    int (*gemm_f16)(void *handle, const void *w, const void *x, float *y, int n_out, int n_tok, int k);
    /* element-wise and row ops */
    int (*f32_to_f16)(const float *x, void *y, int64_t n);
    /* x[t, :] = table[tok[t], :] (table f16, (n_vocab, n)) */
    int (*embed_f16)(const void *table, const int32_t *tok, float *x, int n_tok, int n);
    /* RMSNorm into f16, the matmul's input: with res (else NULL) first
     * x[r, :] += res[r, :] (written back: the residual add fused in); then
     * y16[r, :] = f16(x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w) */
    int (*rmsnorm_f16)(float *x, const float *res, const float *w, void *y16, int rows, int n, float eps);
    /* y[r, :] += b */
    int (*add_bias)(float *y, const float *b, int rows, int n);
    /* x += y */
    int (*add)(float *x, const float *y, int64_t n);
    /* y16[t, i] = f16(silu(gu[t, i]) * gu[t, n + i]): gu (n_tok, 2n), the
     * gate and up projections of one matmul */
    int (*swiglu_f16)(const float *gu, void *y16, int n_tok, int n);
    /* y[j, :] = x[rows[j], :] for j < n */
    int (*gather_rows)(const float *x, const int32_t *rows, float *y, int n, int width);
    /* qkv (n_tok, (n_head + 2 n_kv) head_dim): each token's query heads,
     * key heads and value heads, one matmul's output. In place: every query
     * and key head RMS-normed with qn / kn (head_dim weights; NULL = none:
     * Qwen3 has them), then RoPE'd on its first n_dims (cs (n_tok, n_dims):
     * cos, sin of each pair, cpu_rope_table; neox: pairs (i, i + n_dims/2),
     * else (2i, 2i + 1)); then each token's key and value rows go to the KV
     * cache, k and v (n_layer, n_blocks, block_size, n_kv head_dim) f16, at
     * slot[t] (block * block_size + offset) of the layer starting layer_off
     * elements in */
    int (*qkv_rope_store)(float *qkv, const float *qn, const float *kn, float eps, const float *cs, void *kc, void *vc,
                          const int32_t *slot, int n_tok, int n_head, int n_kv, int head_dim, int n_dims, int neox,
                          int64_t layer_off);
    /* paged attention: token t's query heads (n_head x head_dim from q + t *
     * q_stride) over positions 0..pos[t] of its sequence, whose block ids
     * are tables[tab[t]...]; grouped-query (head h reads kv head h / (n_head
     * / n_kv)); softmax(q.k * scale) v into out16 (n_tok, n_head x head_dim) f16 */
    int (*attention)(const float *q, int q_stride, const void *kc, const void *vc, void *out16, const int32_t *pos,
                     const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                     int block_size, int64_t layer_off, float scale);
    /* the first kernels' checks (rotor-cuda-check) */
    int (*matvec_q8_0)(const void *w, const float *x, float *y, int rows, int n);
    /* page-locked host memory (faster copies); freed by host_free */
    int (*host_alloc)(void **host_p, uint64_t bytes);
    int (*host_free)(void *host_p);
    /* graphs (see above): *graph is owned by the caller, freed by graph_destroy;
     * graph_end ends a recording also when it fails (*graph NULL then) */
    int (*graph_begin)(void);
    int (*graph_end)(void **graph);
    int (*graph_launch)(void *graph);
    int (*graph_destroy)(void *graph);
    /* gemm_f16's product for 1..RT_CUDA_GEMV_MAX_TOKENS tokens in one kernel
     * that reads each weight row once (k a multiple of 8, rows 16-byte aligned) */
    int (*gemv_f16)(const void *w, const void *x, float *y, int n_out, int n_tok, int k);
} rt_cuda_api_t;

/* Exported by librotor_cuda.so. */
const rt_cuda_api_t *rt_cuda_api(void);

#ifdef __cplusplus
}
#endif

#endif
