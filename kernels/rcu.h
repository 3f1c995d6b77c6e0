// rcu.h - the CUDA functions behind rt_cuda_api_t (include/rotor/cuda_kernels.h),
// one group per .cu file; api.cu gathers them into the table.
#ifndef ROTOR_KERNELS_RCU_H
#define ROTOR_KERNELS_RCU_H

#include <stdint.h>

#include <cuda_runtime.h>

// common.cu: devices, memory, cuBLAS, graphs
cudaStream_t rcu_stream(void); // the library's stream: every kernel and cuBLAS call
int rcu_device_count(int *count);
const char *rcu_error_string(int err);
int rcu_set_device(int device);
int rcu_device_name(int device, char *name, int n);
int rcu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes);
int rcu_malloc(void **p, uint64_t bytes);
int rcu_free(void *p);
int rcu_memcpy_h2d(void *dst, const void *src, uint64_t bytes);
int rcu_memcpy_d2h(void *dst, const void *src, uint64_t bytes);
int rcu_memcpy_d2d(void *dst, const void *src, uint64_t bytes);
int rcu_sync(void);
int rcu_blas_create(void **handle);
int rcu_blas_destroy(void *handle);
int rcu_gemm_f16(void *handle, const void *w, const void *x, float *y, int n_out, int n_tok, int k);
int rcu_host_alloc(void **p, uint64_t bytes);
int rcu_host_free(void *p);
int rcu_graph_begin(void);
int rcu_graph_end(void **graph);
int rcu_graph_launch(void *graph);
int rcu_graph_destroy(void *graph);

// gemv_f16.cu
#define RCU_GEMV_MAX_TOKENS 8 // RT_CUDA_GEMV_MAX_TOKENS
int rcu_gemv_f16(const void *w, const void *x, float *y, int n_out, int n_tok, int k);

// rmsnorm.cu, matvec_q8_0.cu
int rcu_rmsnorm_f16(float *x, const float *res, const float *w, void *y16, int rows, int n, float eps);
int rcu_matvec_q8_0(const void *w, const float *x, float *y, int rows, int n);

// engine_ops.cu
int rcu_f32_to_f16(const float *x, void *y, int64_t n);
int rcu_embed_f16(const void *table, const int32_t *tok, float *x, int n_tok, int n);
int rcu_add_bias(float *y, const float *b, int rows, int n);
int rcu_add(float *x, const float *y, int64_t n);
int rcu_swiglu_f16(const float *gu, void *y16, int n_tok, int n);
int rcu_gather_rows(const float *x, const int32_t *rows, float *y, int n, int width);
int rcu_qkv_rope_store(float *qkv, const float *qn, const float *kn, float eps, const float *cs, void *kc, void *vc,
                       const int32_t *slot, int n_tok, int n_head, int n_kv, int head_dim, int n_dims, int neox,
                       int64_t layer_off);
int rcu_attention(const float *q, int q_stride, const void *kc, const void *vc, void *out16, const int32_t *pos,
                  const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                  int block_size, int64_t layer_off, float scale);

#endif
