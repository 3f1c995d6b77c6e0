// engine_ops.cu - the element-wise, row and attention kernels of the cuda
// engine backend (rcu.h; the C interface is include/rotor/cuda_kernels.h).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "rcu.h"

#define THREADS 256

static int grid_for(int64_t n)
{
    const int64_t b = (n + THREADS - 1) / THREADS;
    return (int)(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

static int launched(void) { return (int)cudaGetLastError(); }

static __global__ void f32_to_f16_kernel(const float *x, __half *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half(x[i]);
}

int rcu_f32_to_f16(const float *x, void *y, int64_t n)
{
    if (n <= 0) return 0;
    f32_to_f16_kernel<<<grid_for(n), THREADS>>>(x, (__half *)y, n);
    return launched();
}

static __global__ void embed_kernel(const __half *table, const int32_t *tok, float *x, int n)
{
    const __half *row = table + (size_t)tok[blockIdx.x] * n;
    float *out = x + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __half2float(row[i]);
}

int rcu_embed_f16(const void *table, const int32_t *tok, float *x, int n_tok, int n)
{
    if (n_tok <= 0) return 0;
    embed_kernel<<<n_tok, THREADS>>>((const __half *)table, tok, x, n);
    return launched();
}

static __global__ void add_bias_kernel(float *y, const float *b, int64_t total, int n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n];
}

int rcu_add_bias(float *y, const float *b, int rows, int n)
{
    const int64_t total = (int64_t)rows * n;
    if (total <= 0) return 0;
    add_bias_kernel<<<grid_for(total), THREADS>>>(y, b, total, n);
    return launched();
}

static __global__ void add_kernel(float *x, const float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

int rcu_add(float *x, const float *y, int64_t n)
{
    if (n <= 0) return 0;
    add_kernel<<<grid_for(n), THREADS>>>(x, y, n);
    return launched();
}

static __global__ void swiglu_kernel(float *g, const float *u, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

int rcu_swiglu(float *g, const float *u, int64_t n)
{
    if (n <= 0) return 0;
    swiglu_kernel<<<grid_for(n), THREADS>>>(g, u, n);
    return launched();
}

static __global__ void gather_rows_kernel(const float *x, const int32_t *rows, float *y, int width)
{
    const float *src = x + (size_t)rows[blockIdx.x] * width;
    float *dst = y + (size_t)blockIdx.x * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
}

int rcu_gather_rows(const float *x, const int32_t *rows, float *y, int n, int width)
{
    if (n <= 0) return 0;
    gather_rows_kernel<<<n, THREADS>>>(x, rows, y, width);
    return launched();
}

// one block per (token, head), a thread per rotated pair
static __global__ void rope_kernel(float *x, int n_heads, int head_dim, int n_dims, int neox, const float *cs)
{
    const int t = blockIdx.x, h = blockIdx.y;
    float *v = x + ((size_t)t * n_heads + h) * head_dim;
    const float *c = cs + (size_t)t * n_dims;
    const int half = n_dims / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float co = c[2 * i], si = c[2 * i + 1];
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * co - x1 * si;
        v[b] = x0 * si + x1 * co;
    }
}

int rcu_rope(float *x, int n_tok, int n_heads, int head_dim, int n_dims, int neox, const float *cs)
{
    if (n_tok <= 0 || n_heads <= 0) return 0;
    if (n_dims > head_dim || n_dims % 2) return (int)cudaErrorInvalidValue;
    rope_kernel<<<dim3(n_tok, n_heads), 64>>>(x, n_heads, head_dim, n_dims, neox, cs);
    return launched();
}

static __global__ void kv_store_kernel(const float *k, const float *v, __half *kc, __half *vc, const int32_t *slot,
                                       int kv_dim, int64_t layer_off)
{
    const int t = blockIdx.x;
    const size_t dst = (size_t)layer_off + (size_t)slot[t] * kv_dim;
    for (int d = threadIdx.x; d < kv_dim; d += blockDim.x) {
        kc[dst + d] = __float2half(k[(size_t)t * kv_dim + d]);
        vc[dst + d] = __float2half(v[(size_t)t * kv_dim + d]);
    }
}

int rcu_kv_store(const float *k, const float *v, void *kc, void *vc, const int32_t *slot, int n_tok, int kv_dim,
                 int64_t layer_off)
{
    if (n_tok <= 0) return 0;
    kv_store_kernel<<<n_tok, THREADS>>>(k, v, (__half *)kc, (__half *)vc, slot, kv_dim, layer_off);
    return launched();
}

// Paged attention, one block of ATT_WARPS warps per (token, head). Warp w
// takes positions w, w + ATT_WARPS, ...; a lane holds head dims lane, lane
// + 32, ... of the query and of its running output; each position's score
// is a warp sum; softmax online (running max and sum). The warps' partial
// results merge in shared memory at the end.
#define ATT_WARPS 4
#define ATT_MAX_DPL 8 // head_dim <= 256

static __global__ void attention_kernel(const float *q, const __half *kc, const __half *vc, float *out,
                                        const int32_t *pos, const int32_t *tab, const int32_t *tables, int n_head,
                                        int n_kv, int head_dim, int block_size, int64_t layer_off, float scale)
{
    const int t = blockIdx.x, h = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kv_dim = n_kv * head_dim, kvh = h / (n_head / n_kv);
    const float *qh = q + ((size_t)t * n_head + h) * head_dim;
    float qr[ATT_MAX_DPL], acc[ATT_MAX_DPL];
    const int dpl = (head_dim + 31) / 32;
    for (int j = 0; j < ATT_MAX_DPL; j++) {
        const int d = lane + 32 * j;
        qr[j] = j < dpl && d < head_dim ? qh[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int last = pos[t];
    const int32_t *table = tables + tab[t];
    for (int p = warp; p <= last; p += ATT_WARPS) {
        const size_t row = (size_t)layer_off + ((size_t)table[p / block_size] * block_size + p % block_size) * kv_dim +
                           (size_t)kvh * head_dim;
        float s = 0.0f;
        for (int j = 0; j < dpl; j++) {
            const int d = lane + 32 * j;
            if (d < head_dim) s += qr[j] * __half2float(kc[row + d]);
        }
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        s *= scale;
        const float mn = fmaxf(m, s), corr = expf(m - mn), e = expf(s - mn);
        l = l * corr + e;
        for (int j = 0; j < dpl; j++) {
            const int d = lane + 32 * j;
            acc[j] = acc[j] * corr + (d < head_dim ? e * __half2float(vc[row + d]) : 0.0f);
        }
        m = mn;
    }
    __shared__ float sm[ATT_WARPS], sl[ATT_WARPS], sacc[ATT_WARPS][32 * ATT_MAX_DPL];
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    for (int j = 0; j < dpl; j++) sacc[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm[w]);
    float L = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++) L += sm[w] == -INFINITY ? 0.0f : sl[w] * expf(sm[w] - M);
    float *oh = out + ((size_t)t * n_head + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (sm[w] != -INFINITY) o += sacc[w][d] * expf(sm[w] - M);
        oh[d] = o / L;
    }
}

int rcu_attention(const float *q, const void *kc, const void *vc, float *out, const int32_t *pos, const int32_t *tab,
                  const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim, int block_size,
                  int64_t layer_off, float scale)
{
    if (n_tok <= 0) return 0;
    if (head_dim > 32 * ATT_MAX_DPL || n_kv <= 0 || n_head % n_kv) return (int)cudaErrorInvalidValue;
    attention_kernel<<<dim3(n_tok, n_head), 32 * ATT_WARPS>>>(q, (const __half *)kc, (const __half *)vc, out, pos,
                                                              tab, tables, n_head, n_kv, head_dim, block_size,
                                                              layer_off, scale);
    return launched();
}
