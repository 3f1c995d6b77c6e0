// rmsnorm.cu - RMSNorm into f16 (a matmul's input), one block per row, the
// residual add optionally fused in; sum of squares reduced in a warp then
// across warps in shared memory.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "rcu.h"

static __global__ void rmsnorm_f16_kernel(float *x, const float *res, const float *w, __half *y, int n, float eps)
{
    const int row = blockIdx.x;
    float *xr = x + (size_t)row * n;
    __half *yr = y + (size_t)row * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (res) {
            v += res[(size_t)row * n + i];
            xr[i] = v;
        }
        s += v * v;
    }
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    __shared__ float part[32];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (threadIdx.x == 0) part[0] = s;
    }
    __syncthreads();
    const float scale = rsqrtf(part[0] / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __float2half(xr[i] * scale * w[i]);
}

int rcu_rmsnorm_f16(float *x, const float *res, const float *w, void *y16, int rows, int n, float eps)
{
    if (rows <= 0 || n <= 0) return (int)cudaErrorInvalidValue;
    rmsnorm_f16_kernel<<<rows, 256, 0, rcu_stream()>>>(x, res, w, (__half *)y16, n, eps);
    return (int)cudaGetLastError();
}
