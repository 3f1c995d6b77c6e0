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
 * host pointers. Graphs behave as CUDA's do: between graph_begin and
 * graph_end the ops are recorded with their arguments and not run (a copy
 * or an allocation then is an error), and graph_launch runs them reading
 * the buffers as they are at launch, so a backend that relied on recorded
 * work having run, or on arguments that change between launches, fails here.
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
/* graphs: a recorded call, an op and its arguments */
enum { OP_GEMM, OP_GEMV, OP_F16, OP_EMBED, OP_RMSNORM, OP_BIAS, OP_ADD, OP_SWIGLU, OP_GATHER, OP_QKV, OP_ATTN };
typedef struct {
    int op;
    const void *p[8];
    int64_t i[8];
    float f[2];
} host_call_t;
typedef struct {
    host_call_t *calls;
    int n, cap;
} host_graph_t;
static host_graph_t *recording;
#define ERR_CAPTURE 900 /* cudaErrorStreamCaptureUnsupported */

static int record(host_call_t c)
{
    if (recording->n == recording->cap) {
        const int cap = recording->cap ? 2 * recording->cap : 64;
        host_call_t *n = realloc(recording->calls, sizeof *n * (size_t)cap);
        if (!n) return 2;
        recording->calls = n;
        recording->cap = cap;
    }
    recording->calls[recording->n++] = c;
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
    if (recording) return ERR_CAPTURE;
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
    if (recording) return ERR_CAPTURE;
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

#define RECORD(...)                                                                                                    \
    do {                                                                                                               \
        if (recording) return record((host_call_t){__VA_ARGS__});                                                     \
    } while (0)

static int gemm_f16(void *h, const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    RECORD(.op = OP_GEMM, .p = {h, w, x, y}, .i = {n_out, n_tok, k});
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

/* the same product as gemm_f16, for a few tokens */
static int gemv_f16(const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    RECORD(.op = OP_GEMV, .p = {w, x, y}, .i = {n_out, n_tok, k});
    if (n_out <= 0 || n_tok < 1 || n_tok > RT_CUDA_GEMV_MAX_TOKENS || k <= 0 || k % 8) return 1;
    return gemm_f16(NULL, w, x, y, n_out, n_tok, k);
}

static int f32_to_f16(const float *x, void *y, int64_t n)
{
    RECORD(.op = OP_F16, .p = {x, y}, .i = {n});
    uint16_t *o = y;
    for (int64_t i = 0; i < n; i++) o[i] = rt_fp32_to_fp16(x[i]);
    return 0;
}

static int embed_f16(const void *table, const int32_t *tok, float *x, int n_tok, int n)
{
    RECORD(.op = OP_EMBED, .p = {table, tok, x}, .i = {n_tok, n});
    const uint16_t *t = table;
    for (int i = 0; i < n_tok; i++)
        for (int j = 0; j < n; j++) x[(size_t)i * n + j] = rt_fp16_to_fp32(t[(size_t)tok[i] * n + j]);
    return 0;
}

static int rmsnorm_f16(float *x, const float *res, const float *w, void *y16, int rows, int n, float eps)
{
    RECORD(.op = OP_RMSNORM, .p = {x, res, w, y16}, .i = {rows, n}, .f = {eps});
    uint16_t *y = y16;
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * n;
        if (res)
            for (int i = 0; i < n; i++) xr[i] += res[(size_t)r * n + i];
        float s = 0;
        for (int i = 0; i < n; i++) s += xr[i] * xr[i];
        const float scale = 1.0f / sqrtf(s / n + eps);
        for (int i = 0; i < n; i++) y[(size_t)r * n + i] = rt_fp32_to_fp16(xr[i] * scale * w[i]);
    }
    return 0;
}

static int add_bias(float *y, const float *b, int rows, int n)
{
    RECORD(.op = OP_BIAS, .p = {y, b}, .i = {rows, n});
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) y[(size_t)r * n + i] += b[i];
    return 0;
}

static int add(float *x, const float *y, int64_t n)
{
    RECORD(.op = OP_ADD, .p = {x, y}, .i = {n});
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
    return 0;
}

static int swiglu_f16(const float *gu, void *y16, int n_tok, int n)
{
    RECORD(.op = OP_SWIGLU, .p = {gu, y16}, .i = {n_tok, n});
    uint16_t *y = y16;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) {
            const float g = gu[(size_t)t * 2 * n + i], u = gu[(size_t)t * 2 * n + n + i];
            y[(size_t)t * n + i] = rt_fp32_to_fp16(g / (1.0f + expf(-g)) * u);
        }
    return 0;
}

static int gather_rows(const float *x, const int32_t *rows, float *y, int n, int width)
{
    RECORD(.op = OP_GATHER, .p = {x, rows, y}, .i = {n, width});
    for (int j = 0; j < n; j++) memmove(y + (size_t)j * width, x + (size_t)rows[j] * width, sizeof(float) * (size_t)width);
    return 0;
}

static void head_norm(float *v, const float *w, int n, float eps)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += v[i] * v[i];
    const float scale = 1.0f / sqrtf(s / n + eps);
    for (int i = 0; i < n; i++) v[i] = v[i] * scale * w[i];
}

static int qkv_rope_store(float *qkv, const float *qn, const float *kn, float eps, const float *cs, void *kc, void *vc,
                          const int32_t *slot, int n_tok, int n_head, int n_kv, int head_dim, int n_dims, int neox,
                          int64_t layer_off)
{
    RECORD(.op = OP_QKV, .p = {qkv, qn, kn, cs, kc, vc, slot},
           .i = {n_tok, n_head, n_kv, head_dim, n_dims, neox, layer_off}, .f = {eps});
    if (n_dims > head_dim || n_dims % 2 || n_kv <= 0) return 1;
    uint16_t *K = kc, *V = vc;
    const int half = n_dims / 2, kv_dim = n_kv * head_dim;
    const size_t stride = (size_t)(n_head + 2 * n_kv) * head_dim;
    for (int t = 0; t < n_tok; t++) {
        const float *c = cs + (size_t)t * n_dims;
        for (int h = 0; h < n_head + n_kv; h++) {
            float *v = qkv + (size_t)t * stride + (size_t)h * head_dim;
            const float *w = h < n_head ? qn : kn;
            if (w) head_norm(v, w, head_dim, eps);
            for (int i = 0; i < half; i++) {
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c[2 * i] - x1 * c[2 * i + 1];
                v[b] = x0 * c[2 * i + 1] + x1 * c[2 * i];
            }
        }
        const float *k = qkv + (size_t)t * stride + (size_t)n_head * head_dim, *vv = k + kv_dim;
        const size_t dst = (size_t)layer_off + (size_t)slot[t] * kv_dim;
        for (int d = 0; d < kv_dim; d++) {
            K[dst + d] = rt_fp32_to_fp16(k[d]);
            V[dst + d] = rt_fp32_to_fp16(vv[d]);
        }
    }
    return 0;
}

static int attention(const float *q, int q_stride, const void *kc, const void *vc, void *out16, const int32_t *pos,
                     const int32_t *tab, const int32_t *tables, int n_tok, int n_head, int n_kv, int head_dim,
                     int block_size, int64_t layer_off, float scale)
{
    RECORD(.op = OP_ATTN, .p = {q, kc, vc, out16, pos, tab, tables},
           .i = {n_tok, n_head, n_kv, head_dim, block_size, layer_off, q_stride}, .f = {scale});
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
            const float *qh = q + (size_t)t * q_stride + (size_t)h * head_dim;
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
            uint16_t *oh = (uint16_t *)out16 + ((size_t)t * n_head + h) * head_dim;
            for (int d = 0; d < head_dim; d++) oh[d] = rt_fp32_to_fp16((float)(o[d] / l));
        }
    }
    free(sc);
    free(o);
    return 0;
}

/* Q8_0 rows: blocks of an f16 scale and 32 int8 values */
static int matvec_q8_0(const void *w, const float *x, float *y, int rows, int n)
{
    if (rows <= 0 || n <= 0 || n % 32) return 1;
    const unsigned char *b = w;
    for (int r = 0; r < rows; r++) {
        float acc = 0;
        for (int k = 0; k < n / 32; k++, b += 34) {
            uint16_t d;
            memcpy(&d, b, 2);
            float s = 0;
            for (int j = 0; j < 32; j++) s += (float)(signed char)b[2 + j] * x[k * 32 + j];
            acc += rt_fp16_to_fp32(d) * s;
        }
        y[r] = acc;
    }
    return 0;
}

static int host_alloc(void **p, uint64_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    return *p ? 0 : 2;
}
static int host_free(void *p)
{
    free(p);
    return 0;
}

static int graph_begin(void)
{
    if (recording) return ERR_CAPTURE;
    recording = calloc(1, sizeof *recording);
    return recording ? 0 : 2;
}
static int graph_end(void **graph)
{
    *graph = recording;
    const int e = recording ? 0 : 1;
    recording = NULL;
    return e;
}
static int graph_destroy(void *graph)
{
    host_graph_t *g = graph;
    if (g) free(g->calls);
    free(g);
    return 0;
}
static int graph_launch(void *graph)
{
    const host_graph_t *g = graph;
    if (recording || !g) return ERR_CAPTURE;
    for (int j = 0; j < g->n; j++) {
        const host_call_t *c = &g->calls[j];
        const void *const *p = c->p;
        const int64_t *i = c->i;
        int e = 0;
        switch (c->op) {
        case OP_GEMM: e = gemm_f16((void *)p[0], p[1], p[2], (float *)p[3], (int)i[0], (int)i[1], (int)i[2]); break;
        case OP_GEMV: e = gemv_f16(p[0], p[1], (float *)p[2], (int)i[0], (int)i[1], (int)i[2]); break;
        case OP_F16: e = f32_to_f16(p[0], (void *)p[1], i[0]); break;
        case OP_EMBED: e = embed_f16(p[0], p[1], (float *)p[2], (int)i[0], (int)i[1]); break;
        case OP_RMSNORM:
            e = rmsnorm_f16((float *)p[0], p[1], p[2], (void *)p[3], (int)i[0], (int)i[1], c->f[0]);
            break;
        case OP_BIAS: e = add_bias((float *)p[0], p[1], (int)i[0], (int)i[1]); break;
        case OP_ADD: e = add((float *)p[0], p[1], i[0]); break;
        case OP_SWIGLU: e = swiglu_f16(p[0], (void *)p[1], (int)i[0], (int)i[1]); break;
        case OP_GATHER: e = gather_rows(p[0], p[1], (float *)p[2], (int)i[0], (int)i[1]); break;
        case OP_QKV:
            e = qkv_rope_store((float *)p[0], p[1], p[2], c->f[0], p[3], (void *)p[4], (void *)p[5], p[6], (int)i[0],
                               (int)i[1], (int)i[2], (int)i[3], (int)i[4], (int)i[5], i[6]);
            break;
        case OP_ATTN:
            e = attention(p[0], (int)i[6], p[1], p[2], (void *)p[3], p[4], p[5], p[6], (int)i[0], (int)i[1], (int)i[2],
                          (int)i[3], (int)i[4], i[5], c->f[0]);
            break;
        default: e = 1;
        }
        if (e) return e;
    }
    return 0;
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
    .rmsnorm_f16 = rmsnorm_f16,
    .add_bias = add_bias,
    .add = add,
    .swiglu_f16 = swiglu_f16,
    .gather_rows = gather_rows,
    .qkv_rope_store = qkv_rope_store,
    .attention = attention,
    .matvec_q8_0 = matvec_q8_0,
    .host_alloc = host_alloc,
    .host_free = host_free,
    .graph_begin = graph_begin,
    .graph_end = graph_end,
    .graph_launch = graph_launch,
    .graph_destroy = graph_destroy,
    .gemv_f16 = gemv_f16,
};

__attribute__((visibility("default"))) const rt_cuda_api_t *rt_cuda_api(void) { return &api; }
