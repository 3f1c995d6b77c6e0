// matvec_q8_0.cu - y = W x for q8_0 weights (ggml block layout: fp16 scale +
// 32 int8), one warp per output row.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "rcu.h"

struct block_q8_0_dev {
    __half d;
    int8_t qs[32];
};

static __global__ void matvec_q8_0_kernel(const block_q8_0_dev *W, const float *x, float *y, int rows, int n)
{
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nb = n / 32;
    const block_q8_0_dev *wr = W + (size_t)row * nb;
    float acc = 0.0f;
    for (int b = 0; b < nb; b++) acc += __half2float(wr[b].d) * (float)wr[b].qs[lane] * x[b * 32 + lane];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) y[row] = acc;
}

int rcu_matvec_q8_0(const void *W, const float *x, float *y, int rows, int n)
{
    if (rows <= 0 || n <= 0 || n % 32) return (int)cudaErrorInvalidValue;
    const int warps = 8;
    matvec_q8_0_kernel<<<(rows + warps - 1) / warps, warps * 32, 0, rcu_stream()>>>(
        (const block_q8_0_dev *)W, x, y, rows, n);
    return (int)cudaGetLastError();
}
