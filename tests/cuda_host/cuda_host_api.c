/*
 * cuda_host_api.c - the CUDA interface (include/rotor/cuda_kernels.h)
 * implemented on the host, in plain C, for tests on machines without a GPU.
 * Built into build/lib/librotor_cuda_host.so; ROTOR_CUDA_LIB pointed at it
 * makes the cuda engine backend (src/engine/backend_cuda.c) run on the CPU,
 * so its host-side logic (weight upload, the batch's KV slots and block
 * tables, the layer sequence, the head's rows, KV block copies) is tested
 * in CI against the cpu backend; the kernels themselves are checked against
 * C references of the same ops on a GPU (rotor-cuda-check).
 *
 * Each op computes what its kernel does, with the same roundings: matmul
 * inputs are f16 and accumulate in f32 (here: double, then f32), the KV
 * cache is f16, activations f32. Memory is malloc'd; "device" pointers are
 * host pointers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/cuda_kernels.h"

/* IEEE half, round to nearest even: what __float2half does (the library
 * stands alone: it is loaded into rotor, whose own symbols it cannot see) */
static uint16_t rt_fp32_to_fp16(float f)
{
    const _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

static float rt_fp16_to_fp32(uint16_t u)
{
    _Float16 h;
    memcpy(&h, &u, sizeof h);
    return (float)h;
}

static int device_count(int *count)
{
    *count = 1;
    return 0;
}
/* the codes it returns are cudaError_t's: 2 cudaErrorMemoryAllocation, 1 cudaErrorInvalidValue */
static const char *error_string(int err)
{
    return err == 0 ? "no error" : err == 2 ? "out of memory" : err == 1 ? "invalid argument" : "error";
}
static int set_device(int device) { return device == 0 ? 0 : 1; }
static int device_name(int device, char *name, int n)
{
    (void)device;
    snprintf(name, (size_t)n, "host (librotor_cuda_host.so, no GPU)");
    return 0;
}
/* a "device" of 4 GiB ($ROTOR_CUDA_HOST_MEMORY bytes if set): each
 * allocation carries its size in front, so mem_info can say what is free */
#define HEADER 64
static uint64_t allocated;
static uint64_t host_memory(void)
{
    const char *v = getenv("ROTOR_CUDA_HOST_MEMORY");
    const unsigned long long n = v && *v ? strtoull(v, NULL, 10) : 0;
    return n ? (uint64_t)n : 4ull << 30;
}
static int mem_info(uint64_t *free_bytes, uint64_t *total_bytes)
{
    const uint64_t total = host_memory();
    *total_bytes = total;
    *free_bytes = allocated < total ? total - allocated : 0;
    return 0;
}
static int dmalloc(void **p, uint64_t bytes)
{
    *p = NULL;
    if (allocated + bytes > host_memory()) return 2; /* cudaErrorMemoryAllocation */
    char *b = calloc(1, HEADER + (bytes ? bytes : 1));
    if (!b) return 2;
    memcpy(b, &bytes, sizeof bytes);
    allocated += bytes;
    *p = b + HEADER;
    return 0;
}
static int dfree(void *p)
{
    if (!p) return 0;
    char *b = (char *)p - HEADER;
    uint64_t bytes;
    memcpy(&bytes, b, sizeof bytes);
    allocated -= bytes;
    free(b);
    return 0;
}
static int copy(void *d, const void *s, uint64_t n)
{
    if (n) memcpy(d, s, n);
    return 0;
}
static int sync_all(void) { return 0; }
static int blas_create(void **h)
{
    static int token;
    *h = &token;
    return 0;
}
static int blas_destroy(void *h)
{
    (void)h;
    return 0;
}

static int gemm_f16(void *h, const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    (void)h;
    const uint16_t *W = w, *X = x;
    float *xf = malloc(sizeof(float) * (size_t)k);
    if (!xf) return 2;
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < k; i++) xf[i] = rt_fp16_to_fp32(X[(size_t)t * k + i]);
        for (int o = 0; o < n_out; o++) {
            const uint16_t *wr = W + (size_t)o * k;
            double s = 0;
            for (int i = 0; i < k; i++) s += (double)rt_fp16_to_fp32(wr[i]) * xf[i];
            y[(size_t)t * n_out + o] = (float)s;
        }
    }
    free(xf);
    return 0;
}

static int f32_to_f16(const float *x, void *y, int64_t n)
{
    uint16_t *o = y;
    for (int64_t i = 0; i < n; i++) o[i] = rt_fp32_to_fp16(x[i]);
    return 0;
}

static int embed_f16(const void *table, const int32_t *tok, float *x, int n_tok, int n)
{
    const uint16_t *t = table;
    for (int i = 0; i < n_tok; i++)
        for (int j = 0; j < n; j++) x[(size_t)i * n + j] = rt_fp16_to_fp32(t[(size_t)tok[i] * n + j]);
    return 0;
}

static int rmsnorm(const float *x, const float *w, float *y, int rows, int n, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        float s = 0;
        for (int i = 0; i < n; i++) s += xr[i] * xr[i];
        const float scale = 1.0f / sqrtf(s / n + eps);
        for (int i = 0; i < n; i++) yr[i] = xr[i] * scale * w[i];
    }
    return 0;
}

static int add_bias(float *y, const float *b, int rows, int n)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) y[(size_t)r * n + i] += b[i];
    return 0;
}

static int add(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
    return 0;
}

static int swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return 0;
}

static int gather_rows(const float *x, const int32_t *rows, float *y, int n, int width)
{
    for (int j = 0; j < n; j++) memmove(y + (size_t)j * width, x + (size_t)rows[j] * width, sizeof(float) * (size_t)width);
    return 0;
}

static int rope(float *x, int n_tok, int n_heads, int head_dim, int n_dims, int neox, const float *cs)
{
    const int half = n_dims / 2;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            const float *c = cs + (size_t)t * n_dims;
            for (int i = 0; i < half; i++) {
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c[2 * i] - x1 * c[2 * i + 1];
                v[b] = x0 * c[2 * i + 1] + x1 * c[2 * i];
            }
        }
    return 0;
}

static int kv_store(const float *k, const float *v, void *kc, void *vc, const int32_t *slot, int n_tok, int kv_dim,
                    int64_t layer_off)
{
    uint16_t *K = kc, *V = vc;
    for (int t = 0; t < n_tok; t++) {
        const size_t dst = (size_t)layer_off + (size_t)slot[t] * kv_dim;
        for (int d = 0; d < kv_dim; d++) {
            K[dst + d] = rt_fp32_to_fp16(k[(size_t)t * kv_dim + d]);
            V[dst + d] = rt_fp32_to_fp16(v[(size_t)t * kv_dim + d]);
        }
    }
    return 0;
}

static int attention(const float *q, const void *kc, const void *vc, float *out, const int32_t *pos,
                     const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                     int block_size, int64_t layer_off, float scale)
{
    const uint16_t *K = kc, *V = vc;
    const int kv_dim = n_kv * head_dim;
    float *sc = NULL;
    double *o = malloc(sizeof(double) * (size_t)head_dim);
    if (!o) return 2;
    for (int t = 0; t < n_tok; t++) {
        const int last = pos[t];
        float *s2 = realloc(sc, sizeof(float) * (size_t)(last + 1));
        if (!s2) {
            free(sc), free(o);
            return 2;
        }
        sc = s2;
        for (int h = 0; h < n_head; h++) {
            const int kvh = h / (n_head / n_kv);
            const float *qh = q + ((size_t)t * n_head + h) * head_dim;
            float m = -INFINITY;
            for (int p = 0; p <= last; p++) {
                const size_t row = (size_t)layer_off +
                                   ((size_t)tables[tab[t] + p / block_size] * block_size + p % block_size) * kv_dim +
                                   (size_t)kvh * head_dim;
                float s = 0;
                for (int d = 0; d < head_dim; d++) s += qh[d] * rt_fp16_to_fp32(K[row + d]);
                sc[p] = s * scale;
                if (sc[p] > m) m = sc[p];
            }
            double l = 0;
            memset(o, 0, sizeof(double) * (size_t)head_dim);
            for (int p = 0; p <= last; p++) {
                const size_t row = (size_t)layer_off +
                                   ((size_t)tables[tab[t] + p / block_size] * block_size + p % block_size) * kv_dim +
                                   (size_t)kvh * head_dim;
                const double e = exp((double)sc[p] - m);
                l += e;
                for (int d = 0; d < head_dim; d++) o[d] += e * rt_fp16_to_fp32(V[row + d]);
            }
            float *oh = out + ((size_t)t * n_head + h) * head_dim;
            for (int d = 0; d < head_dim; d++) oh[d] = (float)(o[d] / l);
        }
    }
    free(sc);
    free(o);
    return 0;
}

static int matvec_q8_0(const void *w, const float *x, float *y, int rows, int n)
{
    (void)w, (void)x, (void)y, (void)rows, (void)n;
    return 1; /* not needed by the engine */
}

static const rt_cuda_api_t api = {
    .version = RT_CUDA_API_VERSION,
    .device_count = device_count,
    .error_string = error_string,
    .set_device = set_device,
    .device_name = device_name,
    .mem_info = mem_info,
    .malloc = dmalloc,
    .free = dfree,
    .memcpy_h2d = copy,
    .memcpy_d2h = copy,
    .memcpy_d2d = copy,
    .sync = sync_all,
    .blas_create = blas_create,
    .blas_destroy = blas_destroy,
    .gemm_f16 = gemm_f16,
    .f32_to_f16 = f32_to_f16,
    .embed_f16 = embed_f16,
    .rmsnorm = rmsnorm,
    .add_bias = add_bias,
    .add = add,
    .swiglu = swiglu,
    .gather_rows = gather_rows,
    .rope = rope,
    .kv_store = kv_store,
    .attention = attention,
    .matvec_q8_0 = matvec_q8_0,
};

__attribute__((visibility("default"))) const rt_cuda_api_t *rt_cuda_api(void) { return &api; }
