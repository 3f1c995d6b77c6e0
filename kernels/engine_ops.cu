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
    f32_to_f16_kernel<<<grid_for(n), THREADS, 0, rcu_stream()>>>(x, (__half *)y, n);
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
    embed_kernel<<<n_tok, THREADS, 0, rcu_stream()>>>((const __half *)table, tok, x, n);
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
    add_bias_kernel<<<grid_for(total), THREADS, 0, rcu_stream()>>>(y, b, total, n);
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
    add_kernel<<<grid_for(n), THREADS, 0, rcu_stream()>>>(x, y, n);
    return launched();
}

static __global__ void swiglu_f16_kernel(const float *gu, __half *y, int64_t total, int n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / n, j = i % n;
        const float g = gu[t * 2 * n + j], u = gu[t * 2 * n + n + j];
        y[i] = __float2half(g / (1.0f + expf(-g)) * u);
    }
}

int rcu_swiglu_f16(const float *gu, void *y16, int n_tok, int n)
{
    const int64_t total = (int64_t)n_tok * n;
    if (total <= 0) return 0;
    swiglu_f16_kernel<<<grid_for(total), THREADS, 0, rcu_stream()>>>(gu, (__half *)y16, total, n);
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
    gather_rows_kernel<<<n, THREADS, 0, rcu_stream()>>>(x, rows, y, width);
    return launched();
}

// the sum of every thread's s, to every thread of the block (blockDim a
// multiple of 32, at most 1024)
static __device__ float block_sum(float s)
{
    __shared__ float part[32];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    __syncthreads(); // part may still be read from an earlier call
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    s = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += part[w];
    return s;
}

// one block per (token, head): query heads first, then key heads, whose
// blocks also store the key and value rows in the cache
#define QKV_THREADS 64
static __global__ void qkv_rope_store_kernel(float *qkv, const float *qn, const float *kn, float eps, const float *cs,
                                             __half *kc, __half *vc, const int32_t *slot, int n_head, int n_kv,
                                             int head_dim, int n_dims, int neox, int64_t layer_off)
{
    const int t = blockIdx.x, h = blockIdx.y;
    const bool is_k = h >= n_head;
    const size_t stride = (size_t)(n_head + 2 * n_kv) * head_dim;
    float *v = qkv + (size_t)t * stride + (size_t)h * head_dim; // h counts on into the key heads
    const float *w = is_k ? kn : qn;
    if (w) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < head_dim; i += blockDim.x) s += v[i] * v[i];
        const float scale = rsqrtf(block_sum(s) / head_dim + eps);
        for (int i = threadIdx.x; i < head_dim; i += blockDim.x) v[i] = v[i] * scale * w[i];
        __syncthreads();
    }
    const float *c = cs + (size_t)t * n_dims;
    const int half = n_dims / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float co = c[2 * i], si = c[2 * i + 1];
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * co - x1 * si;
        v[b] = x0 * si + x1 * co;
    }
    if (!is_k) return;
    __syncthreads();
    const int kvh = h - n_head, kv_dim = n_kv * head_dim;
    const float *vv = v + (size_t)n_kv * head_dim; // this head's value row
    const size_t dst = (size_t)layer_off + (size_t)slot[t] * kv_dim + (size_t)kvh * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        kc[dst + d] = __float2half(v[d]);
        vc[dst + d] = __float2half(vv[d]);
    }
}

int rcu_qkv_rope_store(float *qkv, const float *qn, const float *kn, float eps, const float *cs, void *kc, void *vc,
                       const int32_t *slot, int n_tok, int n_head, int n_kv, int head_dim, int n_dims, int neox,
                       int64_t layer_off)
{
    if (n_tok <= 0 || n_head <= 0) return 0;
    if (n_dims > head_dim || n_dims % 2 || n_kv <= 0) return (int)cudaErrorInvalidValue;
    qkv_rope_store_kernel<<<dim3(n_tok, n_head + n_kv), QKV_THREADS, 0, rcu_stream()>>>(
        qkv, qn, kn, eps, cs, (__half *)kc, (__half *)vc, slot, n_head, n_kv, head_dim, n_dims, neox, layer_off);
    return launched();
}

static __device__ float block_max(float m)
{
    __shared__ float part[32];
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) m = fmaxf(m, part[w]);
    return m;
}

// Paged attention, one block of ATT_THREADS threads per (token, head), over
// the positions in chunks of ATT_CHUNK with the softmax online (running
// max M and sum L across chunks). In a chunk every thread scores its own
// positions (a whole dot product each, the key row in 16-byte loads), the
// block takes the chunk's max and turns scores into weights, then threads
// split as G groups x head_dim lanes accumulate the weighted values of
// every G-th position; the groups' sums merge at the end. A decode step's
// few dozen positions are one chunk: a handful of dependent loads, not one
// per position.
#define ATT_THREADS 256
#define ATT_CHUNK 1024
#define ATT_MAX_HD 256

// the key or value row of position p: its block through the table
static __device__ __forceinline__ size_t kv_row(const int32_t *table, int p, int block_size, int kv_dim, int kvh,
                                                int head_dim, int64_t layer_off)
{
    return (size_t)layer_off + ((size_t)table[p / block_size] * block_size + p % block_size) * kv_dim +
           (size_t)kvh * head_dim;
}

static __global__ void attention_kernel(const float *q, int q_stride, const __half *kc, const __half *vc,
                                        __half *out, const int32_t *pos, const int32_t *tab, const int32_t *tables,
                                        int n_head, int n_kv, int head_dim, int block_size, int64_t layer_off,
                                        float scale)
{
    __shared__ float qs[ATT_MAX_HD], sc[ATT_CHUNK], part[ATT_THREADS];
    const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int kv_dim = n_kv * head_dim, kvh = h / (n_head / n_kv);
    const float *qh = q + (size_t)t * q_stride + (size_t)h * head_dim;
    for (int i = tid; i < head_dim; i += blockDim.x) qs[i] = qh[i] * scale;
    __syncthreads();
    const int n_pos = pos[t] + 1;
    const int32_t *table = tables + tab[t];
    const int G = blockDim.x / head_dim, g = tid / head_dim, d = tid % head_dim; // value groups
    const bool vec = head_dim % 8 == 0;
    float M = -INFINITY, L = 0.0f, acc = 0.0f;
    for (int c0 = 0; c0 < n_pos; c0 += ATT_CHUNK) {
        const int n = min(ATT_CHUNK, n_pos - c0);
        float m = -INFINITY;
        for (int i = tid; i < n; i += blockDim.x) {
            const __half *k = kc + kv_row(table, c0 + i, block_size, kv_dim, kvh, head_dim, layer_off);
            float s = 0.0f;
            if (vec) {
                for (int j = 0; j < head_dim; j += 8) {
                    const uint4 kv = *(const uint4 *)(k + j);
                    const __half2 *k2 = (const __half2 *)&kv;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float2 f = __half22float2(k2[e]);
                        s = fmaf(qs[j + 2 * e], f.x, fmaf(qs[j + 2 * e + 1], f.y, s));
                    }
                }
            } else {
                for (int j = 0; j < head_dim; j++) s = fmaf(qs[j], __half2float(k[j]), s);
            }
            sc[i] = s;
            m = fmaxf(m, s);
        }
        const float Mn = fmaxf(M, block_max(m)); // block_max syncs: the scores are in
        float l = 0.0f;
        for (int i = tid; i < n; i += blockDim.x) {
            const float w = expf(sc[i] - Mn);
            sc[i] = w;
            l += w;
        }
        const float corr = expf(M - Mn); // 0 on the first chunk
        L = L * corr + block_sum(l);     // syncs: the weights are in
        acc *= corr;
        M = Mn;
        if (g < G) {
            const __half *v = vc + d;
            for (int i = g; i < n; i += G) acc = fmaf(sc[i], __half2float(v[kv_row(table, c0 + i, block_size, kv_dim,
                                                                               kvh, head_dim, layer_off)]), acc);
        }
        __syncthreads(); // the next chunk's scores overwrite sc
    }
    part[tid] = acc;
    __syncthreads();
    if (tid < head_dim) {
        float o = 0.0f;
        for (int j = 0; j < G; j++) o += part[j * head_dim + tid];
        out[((size_t)t * n_head + h) * head_dim + tid] = __float2half(o / L);
    }
}

int rcu_attention(const float *q, int q_stride, const void *kc, const void *vc, void *out16, const int32_t *pos,
                  const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                  int block_size, int64_t layer_off, float scale)
{
    if (n_tok <= 0) return 0;
    if (head_dim > ATT_MAX_HD || head_dim < 1 || n_kv <= 0 || n_head % n_kv) return (int)cudaErrorInvalidValue;
    attention_kernel<<<dim3(n_tok, n_head), ATT_THREADS, 0, rcu_stream()>>>(
        q, q_stride, (const __half *)kc, (const __half *)vc, (__half *)out16, pos, tab, tables, n_head, n_kv, head_dim,
        block_size, layer_off, scale);
    return launched();
}
