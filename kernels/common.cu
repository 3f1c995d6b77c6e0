// common.cu - devices, memory and cuBLAS behind the C interface (rcu.h).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "rcu.h"

// cuBLAS statuses are returned offset by this, so error_string can tell
// them from cudaError_t values
#define RCU_BLAS_BASE 100000

int rcu_device_count(int *count)
{
    cudaError_t e = cudaGetDeviceCount(count);
    if (e != cudaSuccess) *count = 0;
    return (int)e;
}

const char *rcu_error_string(int err)
{
    if (err >= RCU_BLAS_BASE) return cublasGetStatusString((cublasStatus_t)(err - RCU_BLAS_BASE));
    return cudaGetErrorString((cudaError_t)err);
}

int rcu_set_device(int device) { return (int)cudaSetDevice(device); }

int rcu_device_name(int device, char *name, int n)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e == cudaSuccess && n > 0) snprintf(name, (size_t)n, "%s", p.name);
    return (int)e;
}

int rcu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes)
{
    size_t f = 0, t = 0;
    const cudaError_t e = cudaMemGetInfo(&f, &t);
    *free_bytes = f;
    *total_bytes = t;
    return (int)e;
}

int rcu_malloc(void **p, uint64_t bytes) { return (int)cudaMalloc(p, bytes); }
int rcu_free(void *p) { return (int)cudaFree(p); }
int rcu_memcpy_h2d(void *d, const void *s, uint64_t n) { return (int)cudaMemcpy(d, s, n, cudaMemcpyHostToDevice); }
int rcu_memcpy_d2h(void *d, const void *s, uint64_t n) { return (int)cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost); }
int rcu_memcpy_d2d(void *d, const void *s, uint64_t n) { return (int)cudaMemcpy(d, s, n, cudaMemcpyDeviceToDevice); }
int rcu_sync(void) { return (int)cudaDeviceSynchronize(); }

static int blas(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? 0 : RCU_BLAS_BASE + (int)s; }

int rcu_blas_create(void **handle)
{
    cublasHandle_t h = NULL;
    int e = blas(cublasCreate(&h));
    *handle = e ? NULL : (void *)h;
    return e;
}

int rcu_blas_destroy(void *handle) { return handle ? blas(cublasDestroy((cublasHandle_t)handle)) : 0; }

// Row-major y (n_tok, n_out) = x (n_tok, k) w^T, w (n_out, k): in cuBLAS's
// column-major terms y^T (n_out x n_tok) = w^T' (n_out x k) x^T (k x n_tok),
// with w seen as a k x n_out matrix (ld k), transposed.
int rcu_gemm_f16(void *handle, const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    const float one = 1.0f, zero = 0.0f;
    return blas(cublasGemmEx((cublasHandle_t)handle, CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_tok, k, &one, w, CUDA_R_16F,
                             k, x, CUDA_R_16F, k, &zero, y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
}
