// rmsnorm.cu - RMSNorm into f16 (a matmul's input), one block per row, the
// residual add optionally fused in; sum of squares reduced in a warp then
// across warps in shared memory.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "rcu.h"

// x, res and w are distinct arrays (__restrict__): the loads of a thread's
// elements may all be in flight at once. Rows of a multiple of 4 go in
// 16-byte pieces.
static __global__ void rmsnorm_f16_kernel(float *__restrict__ x, const float *__restrict__ res,
                                          const float *__restrict__ w, __half *__restrict__ y, int n, float eps)
{
    const int row = blockIdx.x;
    float *xr = x + (size_t)row * n;
    __half *yr = y + (size_t)row * n;
    const float *rr = res ? res + (size_t)row * n : NULL;
    const bool vec = n % 4 == 0;
    float s = 0.0f;
    if (vec) {
        float4 *x4 = (float4 *)xr;
        const float4 *r4 = (const float4 *)rr;
        for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
            float4 v = x4[i];
            if (r4) {
                const float4 r = r4[i];
                v.x += r.x, v.y += r.y, v.z += r.z, v.w += r.w;
                x4[i] = v;
            }
            s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = xr[i];
            if (rr) {
                v += rr[i];
                xr[i] = v;
            }
            s += v * v;
        }
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
    if (vec) {
        const float4 *x4 = (const float4 *)xr, *w4 = (const float4 *)w;
        __half2 *y2 = (__half2 *)yr;
        for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
            const float4 v = x4[i], g = w4[i];
            y2[2 * i] = __floats2half2_rn(v.x * scale * g.x, v.y * scale * g.y);
            y2[2 * i + 1] = __floats2half2_rn(v.z * scale * g.z, v.w * scale * g.w);
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __float2half(xr[i] * scale * w[i]);
    }
}

int rcu_rmsnorm_f16(float *x, const float *res, const float *w, void *y16, int rows, int n, float eps)
{
    if (rows <= 0 || n <= 0) return (int)cudaErrorInvalidValue;
    rmsnorm_f16_kernel<<<rows, 256, 0, rcu_stream()>>>(x, res, w, (__half *)y16, n, eps);
    return (int)cudaGetLastError();
}
