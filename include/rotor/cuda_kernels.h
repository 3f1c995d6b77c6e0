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
 * with error_string); all work goes to the calling thread's current device
 * and its default stream, in order. Pointers are device pointers unless
 * named host. Layouts are row-major.
 */
#ifndef ROTOR_CUDA_KERNELS_H
#define ROTOR_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_CUDA_API_VERSION 2

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
    /* y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w */
    int (*rmsnorm)(const float *x, const float *w, float *y, int rows, int n, float eps);
    /* y[r, :] += b */
    int (*add_bias)(float *y, const float *b, int rows, int n);
    /* x += y */
    int (*add)(float *x, const float *y, int64_t n);
    /* g = silu(g) * u */
    int (*swiglu)(float *g, const float *u, int64_t n);
    /* y[j, :] = x[rows[j], :] for j < n */
    int (*gather_rows)(const float *x, const int32_t *rows, float *y, int n, int width);
    /* RoPE of x (n_tok, n_heads, head_dim) in place, the first n_dims of each
     * head; cs (n_tok, n_dims): cos, sin of each pair (cpu_rope_table);
     * neox: pairs (i, i + n_dims/2), else (2i, 2i + 1) */
    int (*rope)(float *x, int n_tok, int n_heads, int head_dim, int n_dims, int neox, const float *cs);
    /* the KV cache: k and v (n_layer, n_blocks, block_size, kv_dim) f16;
     * store token t's k, v rows (kv_dim each) at slot[t] (block * block_size
     * + offset) of the layer starting layer_off elements in */
    int (*kv_store)(const float *k, const float *v, void *kc, void *vc, const int32_t *slot, int n_tok,
                    int kv_dim, int64_t layer_off);
    /* paged attention: token t's query heads (n_head x head_dim at q + t *
     * n_head * head_dim) over positions 0..pos[t] of its sequence, whose
     * block ids are tables[tab[t]...]; grouped-query (head h reads kv head
     * h / (n_head / n_kv)); softmax(q.k * scale) v into out (same shape as q) */
    int (*attention)(const float *q, const void *kc, const void *vc, float *out, const int32_t *pos,
                     const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                     int block_size, int64_t layer_off, float scale);
    /* the first kernels' checks (rotor-cuda-check) */
    int (*matvec_q8_0)(const void *w, const float *x, float *y, int rows, int n);
} rt_cuda_api_t;

/* Exported by librotor_cuda.so. */
const rt_cuda_api_t *rt_cuda_api(void);

#ifdef __cplusplus
}
#endif

#endif
