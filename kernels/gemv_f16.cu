// gemv_f16.cu - y (n_tok, n_out) = x (n_tok, k) w^T for a few tokens (a
// decode step's batch), f16 inputs, f32 accumulation and output: a warp
// (or, for matrices of few rows, a block) per output row streams the row
// once in 16-byte loads and keeps a sum for each token, so the weights are
// read once per step in one kernel.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "rcu.h"

#define GEMV_WARPS 4

// acc[t] += the 16-byte piece i of a weight row (8 halves) . the same piece
// of token t's input
template <int NT>
static __device__ __forceinline__ void dot_piece(const uint4 *wr, const __half *x, int k, int i, float *acc)
{
    const uint4 wv = __ldg(wr + i);
    const __half2 *wh = (const __half2 *)&wv;
    float2 wf[4];
#pragma unroll
    for (int j = 0; j < 4; j++) wf[j] = __half22float2(wh[j]);
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const uint4 xv = __ldg((const uint4 *)(x + (size_t)t * k) + i);
        const __half2 *xh = (const __half2 *)&xv;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 xf = __half22float2(xh[j]);
            acc[t] = fmaf(wf[j].x, xf.x, fmaf(wf[j].y, xf.y, acc[t]));
        }
    }
}

template <int NT>
static __global__ void gemv_f16_kernel(const __half *w, const __half *x, float *y, int n_out, int k)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row = blockIdx.x * GEMV_WARPS + warp;
    if (row >= n_out) return;
    const uint4 *wr = (const uint4 *)(w + (size_t)row * k);
    const int k8 = k / 8;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
#pragma unroll 4
    for (int i = lane; i < k8; i += 32) {
        dot_piece<NT>(wr, x, k, i, acc);
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = acc[t];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) y[(size_t)t * n_out + row] = s;
    }
}

// Matrices of few rows (under GEMV_SPLIT_ROWS: a layer's q/k/v, output and
// down projections) would leave most of the GPU idle at a warp per row:
// there a block of GEMV_WARPS warps takes one row, each warp every
// GEMV_WARPS-th 16-byte piece of it, and the warps' sums meet in shared
// memory.
#define GEMV_SPLIT_ROWS 8192

template <int NT>
static __global__ void gemv_f16_split_kernel(const __half *w, const __half *x, float *y, int n_out, int k)
{
    __shared__ float part[GEMV_WARPS][NT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, row = blockIdx.x;
    const uint4 *wr = (const uint4 *)(w + (size_t)row * k);
    const int k8 = k / 8;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
#pragma unroll 4
    for (int i = threadIdx.x; i < k8; i += 32 * GEMV_WARPS) {
        dot_piece<NT>(wr, x, k, i, acc);
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = acc[t];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) part[warp][t] = s;
    }
    __syncthreads();
    if (threadIdx.x < NT) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < GEMV_WARPS; j++) s += part[j][threadIdx.x];
        y[(size_t)threadIdx.x * n_out + row] = s;
    }
}

template <int NT>
static void gemv_launch(const __half *w, const __half *x, float *y, int n_out, int k, cudaStream_t s)
{
    if (n_out < GEMV_SPLIT_ROWS)
        gemv_f16_split_kernel<NT><<<n_out, 32 * GEMV_WARPS, 0, s>>>(w, x, y, n_out, k);
    else
        gemv_f16_kernel<NT><<<(n_out + GEMV_WARPS - 1) / GEMV_WARPS, 32 * GEMV_WARPS, 0, s>>>(w, x, y, n_out, k);
}

int rcu_gemv_f16(const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    if (n_out <= 0 || n_tok < 1 || n_tok > RCU_GEMV_MAX_TOKENS || k <= 0 || k % 8) return (int)cudaErrorInvalidValue;
    const __half *W = (const __half *)w, *X = (const __half *)x;
    cudaStream_t s = rcu_stream();
    switch (n_tok) {
    case 1: gemv_launch<1>(W, X, y, n_out, k, s); break;
    case 2: gemv_launch<2>(W, X, y, n_out, k, s); break;
    case 3: gemv_launch<3>(W, X, y, n_out, k, s); break;
    case 4: gemv_launch<4>(W, X, y, n_out, k, s); break;
    case 5: gemv_launch<5>(W, X, y, n_out, k, s); break;
    case 6: gemv_launch<6>(W, X, y, n_out, k, s); break;
    case 7: gemv_launch<7>(W, X, y, n_out, k, s); break;
    default: gemv_launch<8>(W, X, y, n_out, k, s); break;
    }
    return (int)cudaGetLastError();
}
