// common.cu - devices, memory, the stream, cuBLAS and graphs behind the C
// interface (rcu.h).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

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

// Every kernel and cuBLAS call goes to this stream, made on the current
// device at first use. It is a blocking stream: the synchronous copies
// below (the legacy default stream) wait for its work and it for theirs,
// so copies and kernels run in the order they are issued. Graphs are
// recorded from it (the legacy stream cannot be captured).
cudaStream_t rcu_stream(void)
{
    static cudaStream_t stream;
    if (!stream && cudaStreamCreate(&stream) != cudaSuccess) stream = NULL;
    return stream;
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
int rcu_host_alloc(void **p, uint64_t bytes) { return (int)cudaMallocHost(p, bytes ? bytes : 1); }
int rcu_host_free(void *p) { return p ? (int)cudaFreeHost(p) : 0; }

static int blas(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? 0 : RCU_BLAS_BASE + (int)s; }

// a cuBLAS handle on the library's stream, with a workspace of its own so
// that recording a graph allocates nothing (cuBLAS's advice for graphs;
// 32 MiB is its size for Hopper)
typedef struct {
    cublasHandle_t h;
    void *workspace;
} rcu_blas_t;
#define RCU_BLAS_WORKSPACE (32u << 20)

int rcu_blas_destroy(void *handle)
{
    rcu_blas_t *b = (rcu_blas_t *)handle;
    if (!b) return 0;
    const int e = b->h ? blas(cublasDestroy(b->h)) : 0;
    if (b->workspace) cudaFree(b->workspace);
    free(b);
    return e;
}

int rcu_blas_create(void **handle)
{
    *handle = NULL;
    rcu_blas_t *b = (rcu_blas_t *)calloc(1, sizeof *b);
    if (!b) return (int)cudaErrorMemoryAllocation;
    if (!rcu_stream()) {
        free(b);
        const int e = (int)cudaGetLastError();
        return e ? e : (int)cudaErrorUnknown;
    }
    int e = blas(cublasCreate(&b->h));
    if (!e) e = (int)cudaMalloc(&b->workspace, RCU_BLAS_WORKSPACE);
    if (!e) e = blas(cublasSetWorkspace(b->h, b->workspace, RCU_BLAS_WORKSPACE));
    if (!e) e = blas(cublasSetStream(b->h, rcu_stream()));
    if (e) {
        rcu_blas_destroy(b);
        return e;
    }
    *handle = b;
    return 0;
}

// Row-major y (n_tok, n_out) = x (n_tok, k) w^T, w (n_out, k): in cuBLAS's
// column-major terms y^T (n_out x n_tok) = w^T' (n_out x k) x^T (k x n_tok),
// with w seen as a k x n_out matrix (ld k), transposed.
int rcu_gemm_f16(void *handle, const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    const float one = 1.0f, zero = 0.0f;
    return blas(cublasGemmEx(((rcu_blas_t *)handle)->h, CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_tok, k, &one, w, CUDA_R_16F,
                             k, x, CUDA_R_16F, k, &zero, y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
}

// Graphs: the stream's work between begin and end is recorded (this
// thread's calls only: the engine's worker thread), then instantiated.
int rcu_graph_begin(void) { return (int)cudaStreamBeginCapture(rcu_stream(), cudaStreamCaptureModeThreadLocal); }

int rcu_graph_end(void **graph)
{
    *graph = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(rcu_stream(), &g);
    if (e == cudaSuccess) {
        cudaGraphExec_t exec = NULL;
        e = cudaGraphInstantiate(&exec, g, 0);
        if (e == cudaSuccess) *graph = (void *)exec;
    }
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess) cudaGetLastError(); // a failed recording leaves the error behind: clear it
    return (int)e;
}

int rcu_graph_launch(void *graph) { return (int)cudaGraphLaunch((cudaGraphExec_t)graph, rcu_stream()); }
int rcu_graph_destroy(void *graph) { return graph ? (int)cudaGraphExecDestroy((cudaGraphExec_t)graph) : 0; }
