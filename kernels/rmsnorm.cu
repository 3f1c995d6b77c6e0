// rmsnorm.cu - RMSNorm, one block per row; sum of squares reduced in a warp
// then across warps in shared memory.
#include <cuda_runtime.h>

#include "rcu.h"

static __global__ void rmsnorm_f32_kernel(const float *x, const float *w, float *y, int n, float eps)
{
    const int row = blockIdx.x;
    const float *xr = x + (size_t)row * n;
    float *yr = y + (size_t)row * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i] * xr[i];
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
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

int rcu_rmsnorm(const float *x, const float *w, float *y, int rows, int n, float eps)
{
    if (rows <= 0 || n <= 0) return (int)cudaErrorInvalidValue;
    rmsnorm_f32_kernel<<<rows, 256>>>(x, w, y, n, eps);
    return (int)cudaGetLastError();
}
