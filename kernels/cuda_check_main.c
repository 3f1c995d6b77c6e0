/*
 * cuda_check_main.c - rotor-cuda-check: loads librotor_cuda.so (cuda_load.h)
 * and checks the CUDA code against the CPU's.
 *
 *   rotor-cuda-check                    every kernel against a C reference
 *   rotor-cuda-check --model F.gguf     also the cuda engine against the cpu
 *                  [--tol T]            engine on the same requests: the first
 *                                       step's logits (error relative to the
 *                                       largest under T, default 5e-3; argmax)
 *                                       and 16 greedy tokens each. Quantized
 *                                       weights want a wider T: the cpu engine
 *                                       quantizes activations to 8 bits for
 *                                       their dot products (as llama.cpp
 *                                       does), the cuda one keeps them f16.
 *
 * (The cuda engine's speed: rotor bench-engine --backend cuda.)
 * With no GPU it loads the library, says so and exits 0 (the build, the
 * link and the library's interface are what CI checks there);
 * bench/gpu/check.sh runs it on a GPU machine. Exit 1 on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/cuda_kernels.h"
#include "rotor/cuda_load.h"
#include "rotor/engine.h"
#include "rotor/types.h"

static const rt_cuda_api_t *cu;

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

#define CK(x)                                                                                      \
    do {                                                                                           \
        int e_ = (x);                                                                              \
        if (e_) {                                                                                  \
            fprintf(stderr, "cuda-check: %s failed: %s\n", #x, cu->error_string(e_));              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *up(const void *h, size_t bytes)
{
    void *d = NULL;
    CK(cu->malloc(&d, bytes));
    if (h) CK(cu->memcpy_h2d(d, h, bytes));
    return d;
}

static void down(void *h, const void *d, size_t bytes)
{
    CK(cu->sync());
    CK(cu->memcpy_d2h(h, d, bytes));
}

static int report(const char *what, const float *got, const float *ref, size_t n, double floor, double tol)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - ref[i]) / (fabs(ref[i]) + floor));
    printf("cuda-check: %-40s max rel err %.3g %s\n", what, worst, worst < tol ? "OK" : "FAIL");
    return worst >= tol;
}

static int check_rmsnorm_matvec(unsigned *seed)
{
    const int rows = 1536, n = 576;
    float *x = malloc(sizeof(float) * rows * n), *w = malloc(sizeof(float) * n);
    float *ref = malloc(sizeof(float) * rows * n), *got = malloc(sizeof(float) * rows * n);
    for (int i = 0; i < rows * n; i++) x[i] = frand(seed);
    for (int i = 0; i < n; i++) w[i] = 1.0f + 0.1f * frand(seed);
    /* rmsnorm_f16 with the residual add: x + res normed, rounded to f16 */
    float *res = malloc(sizeof(float) * rows * n), *sum = malloc(sizeof(float) * rows * n);
    uint16_t *y16 = malloc(sizeof(uint16_t) * rows * n);
    for (int i = 0; i < rows * n; i++) sum[i] = x[i] + (res[i] = frand(seed));
    for (int r = 0; r < rows; r++) cpu_rmsnorm(sum + (size_t)r * n, w, ref + (size_t)r * n, n, 1e-5f);
    float *dx = up(x, sizeof(float) * rows * n), *dw = up(w, sizeof(float) * n), *dy = up(NULL, sizeof(float) * rows * n);
    float *dres = up(res, sizeof(float) * rows * n);
    CK(cu->rmsnorm_f16(dx, dres, dw, dy, rows, n, 1e-5f));
    down(y16, dy, sizeof(uint16_t) * rows * n);
    for (int i = 0; i < rows * n; i++) got[i] = rt_fp16_to_fp32(y16[i]);
    int fail = report("rmsnorm_f16 + residual 1536x576", got, ref, (size_t)rows * n, 1e-2, 1e-3);
    down(got, dx, sizeof(float) * rows * n);
    fail |= report("  (the residual written back)", got, sum, (size_t)rows * n, 1e-6, 1e-6);
    cu->free(dres);
    { /* a width not a multiple of 4: the scalar path; no residual */
        const int r2 = 3, n2 = 70;
        for (int r = 0; r < r2; r++) cpu_rmsnorm(x + (size_t)r * n2, w, ref + (size_t)r * n2, n2, 1e-5f);
        CK(cu->memcpy_h2d(dx, x, sizeof(float) * r2 * n2));
        CK(cu->rmsnorm_f16(dx, NULL, dw, dy, r2, n2, 1e-5f));
        down(y16, dy, sizeof(uint16_t) * r2 * n2);
        for (int i = 0; i < r2 * n2; i++) got[i] = rt_fp16_to_fp32(y16[i]);
        fail |= report("rmsnorm_f16 3x70", got, ref, (size_t)r2 * n2, 1e-2, 1e-3);
    }
    free(res), free(sum), free(y16);

    const size_t rb = rt_type_row_size(RT_TYPE_Q8_0, n);
    char *wq = malloc(rb * rows);
    for (int r = 0; r < rows; r++) cpu_quantize_row(RT_TYPE_Q8_0, x + (size_t)r * n, wq + rb * r, n);
    float *v = malloc(sizeof(float) * n), *yref = malloc(sizeof(float) * rows), *ygot = malloc(sizeof(float) * rows);
    float tmp[576];
    for (int i = 0; i < n; i++) v[i] = frand(seed);
    for (int r = 0; r < rows; r++) {
        cpu_dequantize_row(RT_TYPE_Q8_0, wq + rb * r, tmp, n);
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)tmp[i] * v[i];
        yref[r] = (float)s;
    }
    void *dwq = up(wq, rb * rows);
    CK(cu->memcpy_h2d(dx, v, sizeof(float) * n));
    CK(cu->matvec_q8_0(dwq, dx, dy, rows, n));
    down(ygot, dy, sizeof(float) * rows);
    fail |= report("matvec_q8_0 1536x576", ygot, yref, (size_t)rows, 1e-3, 1e-3);
    cu->free(dx), cu->free(dw), cu->free(dy), cu->free(dwq);
    free(x), free(w), free(ref), free(got), free(wq), free(v), free(yref), free(ygot);
    return fail;
}

/* random f16 w (n_out, k) and x (n_tok, k), and ref = x w^T in double
 * precision of the same f16 values (the caller frees all three) */
static void gemm_case(unsigned *seed, int n_out, int n_tok, int k, uint16_t **w, uint16_t **x, float **ref)
{
    *w = malloc(sizeof **w * n_out * k), *x = malloc(sizeof **x * n_tok * k);
    *ref = malloc(sizeof(float) * n_out * n_tok);
    for (int i = 0; i < n_out * k; i++) (*w)[i] = rt_fp32_to_fp16(frand(seed));
    for (int i = 0; i < n_tok * k; i++) (*x)[i] = rt_fp32_to_fp16(frand(seed));
    for (int t = 0; t < n_tok; t++)
        for (int o = 0; o < n_out; o++) {
            double s = 0;
            for (int i = 0; i < k; i++) s += (double)rt_fp16_to_fp32((*w)[o * k + i]) * rt_fp16_to_fp32((*x)[t * k + i]);
            (*ref)[t * n_out + o] = (float)s;
        }
}

/* gemv_f16 on a matrix of many rows (a warp per row, not a block) */
static int check_gemv_tall(unsigned *seed)
{
    const int n_out = 8200, n_tok = 3, k = 64;
    uint16_t *w, *x;
    float *ref, *got = malloc(sizeof(float) * n_out * n_tok);
    gemm_case(seed, n_out, n_tok, k, &w, &x, &ref);
    void *dw = up(w, sizeof *w * n_out * k), *dx = up(x, sizeof *x * n_tok * k);
    float *dy = up(NULL, sizeof(float) * n_out * n_tok);
    CK(cu->gemv_f16(dw, dx, dy, n_out, n_tok, k));
    down(got, dy, sizeof(float) * n_out * n_tok);
    const int fail = report("gemv_f16 (3 x 64) x (8200 x 64)^T", got, ref, (size_t)n_out * n_tok, 1e-1, 1e-3);
    cu->free(dw), cu->free(dx), cu->free(dy);
    free(w), free(x), free(ref), free(got);
    return fail;
}

/* y = x w^T through cuBLAS (f16 inputs) against a double-precision product
 * of the same f16-rounded values */
static int check_gemm(unsigned *seed)
{
    const int n_out = 384, n_tok = 37, k = 576;
    uint16_t *w, *x;
    float *ref, *got = malloc(sizeof(float) * n_out * n_tok);
    gemm_case(seed, n_out, n_tok, k, &w, &x, &ref);
    void *blas = NULL;
    CK(cu->blas_create(&blas));
    void *dw = up(w, sizeof *w * n_out * k), *dx = up(x, sizeof *x * n_tok * k);
    float *dy = up(NULL, sizeof(float) * n_out * n_tok);
    CK(cu->gemm_f16(blas, dw, dx, dy, n_out, n_tok, k));
    down(got, dy, sizeof(float) * n_out * n_tok);
    int fail = report("gemm_f16 (37 x 576) x (384 x 576)^T", got, ref, (size_t)n_out * n_tok, 1e-1, 1e-3);
    const int few[] = {1, 3, RT_CUDA_GEMV_MAX_TOKENS}; /* the first tokens through rotor's kernel */
    for (size_t i = 0; i < sizeof few / sizeof *few; i++) {
        CK(cu->gemv_f16(dw, dx, dy, n_out, few[i], k));
        down(got, dy, sizeof(float) * n_out * few[i]);
        char what[64];
        snprintf(what, sizeof what, "gemv_f16 (%d x 576) x (384 x 576)^T", few[i]);
        fail |= report(what, got, ref, (size_t)n_out * few[i], 1e-1, 1e-3);
    }
    cu->blas_destroy(blas);
    cu->free(dw), cu->free(dx), cu->free(dy);
    free(w), free(x), free(ref), free(got);
    fail |= check_gemv_tall(seed);
    return fail;
}

/* qkv_rope_store (both RoPE layouts, with and without Qwen3's head norms)
 * against cpu_rmsnorm + cpu_rope_apply and a plain store into the cache */
static int check_qkv_rope_store(unsigned *seed)
{
    enum { T = 5, H = 4, KV = 2, HD = 64, R = 48, W = (H + 2 * KV) * HD, NB = 4, BS = 4 };
    int fail = 0;
    for (int variant = 0; variant < 4; variant++) {
        const int neox = variant & 1, norms = variant >> 1;
        float *x = malloc(sizeof(float) * T * W), *ref = malloc(sizeof(float) * T * W);
        float *got = malloc(sizeof(float) * T * W), *cs = malloc(sizeof(float) * T * R);
        float qn[HD], kn[HD], tmp[HD];
        int32_t slot[T];
        for (int i = 0; i < HD; i++) qn[i] = 1.0f + 0.2f * frand(seed), kn[i] = 1.0f + 0.2f * frand(seed);
        for (int i = 0; i < T * W; i++) ref[i] = x[i] = frand(seed);
        for (int t = 0; t < T; t++) {
            slot[t] = (NB * BS - 1) - 3 * t; /* scattered */
            cpu_rope_table(7 * t + 3, R, 10000.0f, 1.0f, NULL, cs + t * R);
            for (int h = 0; h < H + KV; h++) {
                float *v = ref + (size_t)t * W + (size_t)h * HD;
                if (norms) {
                    cpu_rmsnorm(v, h < H ? qn : kn, tmp, HD, 1e-6f);
                    memcpy(v, tmp, sizeof tmp);
                }
            }
            cpu_rope_apply(ref + (size_t)t * W, H + KV, HD, R, neox, cs + t * R); /* q and k heads are adjacent */
        }
        const size_t cache = (size_t)NB * BS * KV * HD;
        float *dx = up(x, sizeof(float) * T * W), *dcs = up(cs, sizeof(float) * T * R);
        float *dqn = up(qn, sizeof qn), *dkn = up(kn, sizeof kn);
        int32_t *dslot = up(slot, sizeof slot);
        void *kc = up(NULL, cache * 2), *vc = up(NULL, cache * 2);
        CK(cu->qkv_rope_store(dx, norms ? dqn : NULL, norms ? dkn : NULL, 1e-6f, dcs, kc, vc, dslot, T, H, KV, HD, R,
                              neox, 0));
        down(got, dx, sizeof(float) * T * W);
        char what[64];
        snprintf(what, sizeof what, "qkv_rope_store%s%s", neox ? " (NeoX)" : "", norms ? " + head norms" : "");
        fail |= report(what, got, ref, (size_t)T * W, 1e-3, 1e-4);
        uint16_t *k16 = malloc(cache * 2), *v16 = malloc(cache * 2);
        down(k16, kc, cache * 2);
        down(v16, vc, cache * 2);
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int d = 0; d < KV * HD; d++) {
                const float kr = ref[(size_t)t * W + H * HD + d], vr = ref[(size_t)t * W + (H + KV) * HD + d];
                worst = fmax(worst, fabs(rt_fp16_to_fp32(k16[(size_t)slot[t] * KV * HD + d]) - kr) / (fabs(kr) + 1e-2));
                worst = fmax(worst, fabs(rt_fp16_to_fp32(v16[(size_t)slot[t] * KV * HD + d]) - vr) / (fabs(vr) + 1e-2));
            }
        printf("cuda-check: %-40s max rel err %.3g %s\n", "  (keys and values in the cache, f16)", worst,
               worst < 2e-3 ? "OK" : "FAIL");
        fail |= worst >= 2e-3;
        void *ptrs[] = {dx, dcs, dqn, dkn, dslot, kc, vc};
        for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) cu->free(ptrs[i]);
        free(x), free(ref), free(got), free(cs), free(k16), free(v16);
    }
    return fail;
}

/* keys and values stored by qkv_rope_store (no RoPE), then paged attention
 * over scattered blocks with queries read from the q/k/v rows, against a
 * plain loop */
static int check_attention(unsigned *seed, int HD)
{
    enum { NB = 160, BS = 16, NL = 2, NH = 8, NKV = 2, NSEQ = 3, MAX_HD = 256 };
    const int KVD = NKV * HD;
    /* tokens per sequence, all written, all queried; 1100: two of the kernel's chunks of 1024 */
    const int len[NSEQ] = {1, 70, 1100};
    int T = 0;
    for (int s = 0; s < NSEQ; s++) T += len[s];
    int32_t tables[NSEQ][72], tab_off[NSEQ], *flat = malloc(sizeof(int32_t) * NSEQ * 72);
    int n_flat = 0, next = NB - 1;
    for (int s = 0; s < NSEQ; s++) { /* blocks handed out from the top, so tables are not contiguous */
        tab_off[s] = n_flat;
        for (int b = 0; b < (len[s] + BS - 1) / BS; b++) {
            tables[s][b] = next;
            next -= 2;
            flat[n_flat++] = tables[s][b];
        }
    }
    int32_t *pos = malloc(sizeof(int32_t) * T), *tab = malloc(sizeof(int32_t) * T), *slot = malloc(sizeof(int32_t) * T);
    int *seq = malloc(sizeof(int) * T);
    for (int s = 0, i = 0; s < NSEQ; s++)
        for (int p = 0; p < len[s]; p++, i++) {
            pos[i] = p, tab[i] = tab_off[s], seq[i] = s;
            slot[i] = tables[s][p / BS] * BS + p % BS;
        }
    float *q = malloc(sizeof(float) * T * NH * HD), *k = malloc(sizeof(float) * T * KVD);
    float *v = malloc(sizeof(float) * T * KVD), *ref = malloc(sizeof(float) * T * NH * HD);
    float *got = malloc(sizeof(float) * T * NH * HD);
    const int QKV = NH * HD + 2 * KVD;
    float *qkv = malloc(sizeof(float) * T * QKV);
    uint16_t *o16 = malloc(sizeof(uint16_t) * T * NH * HD);
    for (int i = 0; i < T * NH * HD; i++) q[i] = frand(seed);
    for (int i = 0; i < T * KVD; i++) k[i] = rt_fp16_to_fp32(rt_fp32_to_fp16(frand(seed)));
    for (int i = 0; i < T * KVD; i++) v[i] = rt_fp16_to_fp32(rt_fp32_to_fp16(frand(seed)));
    const float scale = 1.0f / sqrtf((float)HD);
    const int layer = 1;
    for (int i = 0; i < T; i++) /* token i: the earlier tokens of its sequence and itself */
        for (int h = 0; h < NH; h++) {
            const int kvh = h / (NH / NKV), first = i - pos[i];
            double m = -INFINITY, l = 0, o[MAX_HD] = {0};
            static double sc[1100];
            for (int j = first; j <= i; j++) {
                double s = 0;
                for (int d = 0; d < HD; d++) s += (double)q[(i * NH + h) * HD + d] * k[j * KVD + kvh * HD + d];
                sc[j - first] = s * scale;
                m = fmax(m, sc[j - first]);
            }
            for (int j = first; j <= i; j++) {
                const double e = exp(sc[j - first] - m);
                l += e;
                for (int d = 0; d < HD; d++) o[d] += e * v[j * KVD + kvh * HD + d];
            }
            for (int d = 0; d < HD; d++) ref[(i * NH + h) * HD + d] = (float)(o[d] / l);
        }
    const size_t layer_elems = (size_t)NB * BS * KVD;
    void *kc = up(NULL, NL * layer_elems * 2), *vc = up(NULL, NL * layer_elems * 2);
    for (int t = 0; t < T; t++) {
        memcpy(qkv + (size_t)t * QKV, q + (size_t)t * NH * HD, sizeof(float) * NH * HD);
        memcpy(qkv + (size_t)t * QKV + NH * HD, k + (size_t)t * KVD, sizeof(float) * KVD);
        memcpy(qkv + (size_t)t * QKV + NH * HD + KVD, v + (size_t)t * KVD, sizeof(float) * KVD);
    }
    float *dqkv = up(qkv, sizeof(float) * T * QKV), *dcs = up(NULL, sizeof(float) * T);
    void *dout = up(NULL, sizeof(uint16_t) * T * NH * HD);
    int32_t *dpos = up(pos, sizeof(int32_t) * T), *dtab = up(tab, sizeof(int32_t) * T);
    int32_t *dslot = up(slot, sizeof(int32_t) * T), *dflat = up(flat, sizeof(int32_t) * n_flat);
    CK(cu->qkv_rope_store(dqkv, NULL, NULL, 1e-6f, dcs, kc, vc, dslot, T, NH, NKV, HD, 0, 0,
                          (int64_t)(layer * layer_elems)));
    CK(cu->attention(dqkv, QKV, kc, vc, dout, dpos, dtab, dflat, T, NH, NKV, HD, BS, (int64_t)(layer * layer_elems),
                     scale));
    down(o16, dout, sizeof(uint16_t) * T * NH * HD);
    for (int i = 0; i < T * NH * HD; i++) got[i] = rt_fp16_to_fp32(o16[i]);
    char what[64];
    snprintf(what, sizeof what, "kv store + paged attention (GQA 8/2, head %d)", HD);
    const int fail = report(what, got, ref, (size_t)T * NH * HD, 1e-2, 2e-3);
    void *ptrs[] = {kc, vc, dqkv, dcs, dout, dpos, dtab, dslot, dflat};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) cu->free(ptrs[i]);
    free(qkv), free(o16);
    free(flat), free(pos), free(tab), free(slot), free(seq), free(q), free(k), free(v), free(ref), free(got);
    return fail;
}

/* ------------------------------------------------------------ the engines */

#define N_REQ 6
#define GEN 16

typedef struct {
    int n_vocab;
    float *first[N_REQ]; /* each request's first-step logits */
} first_logits_t;

static void on_logits(void *ud, uint64_t id, int step, const float *logits, int n_vocab)
{
    first_logits_t *f = ud;
    if (step != 0 || id >= N_REQ) return;
    f->n_vocab = n_vocab;
    f->first[id] = malloc(sizeof(float) * (size_t)n_vocab);
    memcpy(f->first[id], logits, sizeof(float) * (size_t)n_vocab);
}

/* n requests of prompt_len random ids (seeded by their index), gen greedy
 * tokens each, all at once; out[i * gen + j] = request i's token j */
static void run_engine(const char *backend, const char *model, int n, int prompt_len, int gen, int32_t *out,
                       first_logits_t *fl)
{
    engine_config_t c = engine_config_default();
    c.backend = backend;
    c.model_path = model;
    c.max_num_seqs = n < 64 ? 64 : n;
    c.max_num_batched_tokens = 2048;
    c.kv_bytes = 1ll << 30;
    engine_t *e = NULL;
    if (engine_create(&c, &e)) {
        fprintf(stderr, "cuda-check: %s engine: %s\n", backend, rt_error_msg());
        exit(1);
    }
    if (fl) engine_set_logits_observer(e, on_logits, fl);
    const int n_vocab = engine_n_vocab(e);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)prompt_len);
    for (int i = 0; i < n; i++) {
        unsigned s = 1000u + (unsigned)i;
        const int len = prompt_len - (i * 7) % (prompt_len / 2 + 1); /* mixed lengths */
        for (int j = 0; j < len; j++) prompt[j] = (int32_t)((unsigned)(frand(&s) * 1e6f + 1e6f) % (unsigned)n_vocab);
        engine_request_t r = {.id = (uint64_t)i, .prompt = prompt, .n_prompt = (size_t)len,
                              .sampling = sampler_params_default(), .max_tokens = gen, .ignore_eos = true};
        r.sampling.temperature = 0;
        if (engine_add_request(e, &r)) {
            fprintf(stderr, "cuda-check: add request: %s\n", rt_error_msg());
            exit(1);
        }
    }
    const size_t cap = 6 * (size_t)c.max_num_seqs + 16;
    engine_event_t *ev = malloc(sizeof *ev * cap);
    int *count = calloc((size_t)n, sizeof *count);
    while (engine_has_work(e)) {
        size_t k = 0;
        if (engine_step(e, ev, cap, &k, NULL)) {
            fprintf(stderr, "cuda-check: %s step: %s\n", backend, rt_error_msg());
            exit(1);
        }
        for (size_t j = 0; j < k; j++)
            if (ev[j].kind == ENGINE_EV_TOKEN && count[ev[j].request_id] < gen)
                out[ev[j].request_id * (size_t)gen + (size_t)count[ev[j].request_id]++] = ev[j].token;
    }
    free(ev), free(count), free(prompt);
    engine_destroy(e);
}

static int check_engines(const char *model, double tol)
{
    first_logits_t ref = {0}, got = {0};
    int32_t a[N_REQ * GEN], b[N_REQ * GEN];
    run_engine("cpu", model, N_REQ, 40, GEN, a, &ref);
    run_engine("cuda", model, N_REQ, 40, GEN, b, &got);
    int fail = 0, same_argmax = 0, same_ids = 0;
    double worst = 0;
    for (int i = 0; i < N_REQ; i++) {
        if (!ref.first[i] || !got.first[i]) {
            fprintf(stderr, "cuda-check: request %d has no first-step logits\n", i);
            return 1;
        }
        double top = 0;
        int am_r = 0, am_g = 0;
        for (int j = 0; j < ref.n_vocab; j++) {
            top = fmax(top, fabs(ref.first[i][j]));
            if (ref.first[i][j] > ref.first[i][am_r]) am_r = j;
            if (got.first[i][j] > got.first[i][am_g]) am_g = j;
        }
        for (int j = 0; j < ref.n_vocab; j++) worst = fmax(worst, fabs(got.first[i][j] - ref.first[i][j]) / top);
        same_argmax += am_r == am_g;
        same_ids += memcmp(a + i * GEN, b + i * GEN, sizeof(int32_t) * GEN) == 0;
        free(ref.first[i]), free(got.first[i]);
    }
    printf("cuda-check: engine cuda vs cpu on %s: first-step logits max err %.3g of the largest, argmax %d/%d, "
           "%d greedy tokens identical for %d/%d requests\n", model, worst, same_argmax, N_REQ, GEN, same_ids, N_REQ);
    fail |= worst > tol || same_argmax < N_REQ;
    return fail;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    double tol = 5e-3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: rotor-cuda-check [--model FILE.gguf [--tol T]]\n");
            return 2;
        }
    }
    if (rt_cuda_load(&cu)) {
        fprintf(stderr, "cuda-check: %s\n", rt_error_msg());
        return 1;
    }
    int n_dev = 0;
    if (cu->device_count(&n_dev) != 0 || n_dev == 0) {
        printf("cuda-check: librotor_cuda.so loaded (interface %d); no CUDA device, nothing run\n", cu->version);
        return 0;
    }
    char name[256] = "";
    cu->device_name(0, name, sizeof name);
    printf("cuda-check: %s\n", name);
    unsigned seed = 1;
    int fail = check_rmsnorm_matvec(&seed);
    fail |= check_gemm(&seed);
    fail |= check_qkv_rope_store(&seed);
    fail |= check_attention(&seed, 64);
    fail |= check_attention(&seed, 128);
    fail |= check_attention(&seed, 36); /* not a multiple of 8: the kernel's scalar key loads */
    if (model) fail |= check_engines(model, tol);
    printf("cuda-check: %s\n", fail ? "FAILED" : "all OK");
    return fail;
}
