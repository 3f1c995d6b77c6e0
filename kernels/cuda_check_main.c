/*
 * cuda_check_main.c - rotor-cuda-check: loads librotor_cuda.so (cuda_load.h)
 * and checks the CUDA code against the CPU's.
 *
 *   rotor-cuda-check                    every kernel against a C reference
 *   rotor-cuda-check --model F.gguf     also the cuda engine against the cpu
 *                                       engine on the same requests: the first
 *                                       step's logits (relative error, argmax)
 *                                       and 16 greedy tokens each
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
    for (int r = 0; r < rows; r++) cpu_rmsnorm(x + (size_t)r * n, w, ref + (size_t)r * n, n, 1e-5f);
    float *dx = up(x, sizeof(float) * rows * n), *dw = up(w, sizeof(float) * n), *dy = up(NULL, sizeof(float) * rows * n);
    CK(cu->rmsnorm(dx, dw, dy, rows, n, 1e-5f));
    down(got, dy, sizeof(float) * rows * n);
    int fail = report("rmsnorm 1536x576", got, ref, (size_t)rows * n, 1e-6, 1e-4);

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

/* y = x w^T through cuBLAS (f16 inputs) against a double-precision product
 * of the same f16-rounded values */
static int check_gemm(unsigned *seed)
{
    const int n_out = 384, n_tok = 37, k = 576;
    uint16_t *w = malloc(sizeof *w * n_out * k), *x = malloc(sizeof *x * n_tok * k);
    float *ref = malloc(sizeof(float) * n_out * n_tok), *got = malloc(sizeof(float) * n_out * n_tok);
    for (int i = 0; i < n_out * k; i++) w[i] = rt_fp32_to_fp16(frand(seed));
    for (int i = 0; i < n_tok * k; i++) x[i] = rt_fp32_to_fp16(frand(seed));
    for (int t = 0; t < n_tok; t++)
        for (int o = 0; o < n_out; o++) {
            double s = 0;
            for (int i = 0; i < k; i++) s += (double)rt_fp16_to_fp32(w[o * k + i]) * rt_fp16_to_fp32(x[t * k + i]);
            ref[t * n_out + o] = (float)s;
        }
    void *blas = NULL;
    CK(cu->blas_create(&blas));
    void *dw = up(w, sizeof *w * n_out * k), *dx = up(x, sizeof *x * n_tok * k);
    float *dy = up(NULL, sizeof(float) * n_out * n_tok);
    CK(cu->gemm_f16(blas, dw, dx, dy, n_out, n_tok, k));
    down(got, dy, sizeof(float) * n_out * n_tok);
    const int fail = report("gemm_f16 (37 x 576) x (384 x 576)^T", got, ref, (size_t)n_out * n_tok, 1e-1, 1e-3);
    cu->blas_destroy(blas);
    cu->free(dw), cu->free(dx), cu->free(dy);
    free(w), free(x), free(ref), free(got);
    return fail;
}

/* RoPE (both layouts) against cpu_rope_apply */
static int check_rope(unsigned *seed)
{
    const int T = 5, H = 3, HD = 64, R = 48;
    int fail = 0;
    for (int neox = 0; neox < 2; neox++) {
        float *x = malloc(sizeof(float) * T * H * HD), *ref = malloc(sizeof(float) * T * H * HD);
        float *got = malloc(sizeof(float) * T * H * HD), *cs = malloc(sizeof(float) * T * R);
        for (int i = 0; i < T * H * HD; i++) ref[i] = x[i] = frand(seed);
        for (int t = 0; t < T; t++) {
            cpu_rope_table(7 * t + 3, R, 10000.0f, 1.0f, NULL, cs + t * R);
            cpu_rope_apply(ref + (size_t)t * H * HD, H, HD, R, neox, cs + t * R);
        }
        float *dx = up(x, sizeof(float) * T * H * HD), *dcs = up(cs, sizeof(float) * T * R);
        CK(cu->rope(dx, T, H, HD, R, neox, dcs));
        down(got, dx, sizeof(float) * T * H * HD);
        fail |= report(neox ? "rope (NeoX)" : "rope", got, ref, (size_t)T * H * HD, 1e-3, 1e-4);
        cu->free(dx), cu->free(dcs);
        free(x), free(ref), free(got), free(cs);
    }
    return fail;
}

/* kv_store + paged attention over scattered blocks against a plain loop */
static int check_attention(unsigned *seed)
{
    enum { NB = 64, BS = 16, NL = 2, NH = 8, NKV = 2, HD = 64, KVD = NKV * HD, NSEQ = 3 };
    const int len[NSEQ] = {1, 70, 333}; /* tokens per sequence, all written, all queried */
    int T = 0;
    for (int s = 0; s < NSEQ; s++) T += len[s];
    int32_t tables[NSEQ][24], tab_off[NSEQ], *flat = malloc(sizeof(int32_t) * NSEQ * 24);
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
    for (int i = 0; i < T * NH * HD; i++) q[i] = frand(seed);
    for (int i = 0; i < T * KVD; i++) k[i] = rt_fp16_to_fp32(rt_fp32_to_fp16(frand(seed)));
    for (int i = 0; i < T * KVD; i++) v[i] = rt_fp16_to_fp32(rt_fp32_to_fp16(frand(seed)));
    const float scale = 1.0f / sqrtf((float)HD);
    const int layer = 1;
    for (int i = 0; i < T; i++) /* token i: the earlier tokens of its sequence and itself */
        for (int h = 0; h < NH; h++) {
            const int kvh = h / (NH / NKV), first = i - pos[i];
            double m = -INFINITY, l = 0, o[HD] = {0};
            double sc[333];
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
    float *dq = up(q, sizeof(float) * T * NH * HD), *dk = up(k, sizeof(float) * T * KVD);
    float *dv = up(v, sizeof(float) * T * KVD), *dout = up(NULL, sizeof(float) * T * NH * HD);
    int32_t *dpos = up(pos, sizeof(int32_t) * T), *dtab = up(tab, sizeof(int32_t) * T);
    int32_t *dslot = up(slot, sizeof(int32_t) * T), *dflat = up(flat, sizeof(int32_t) * n_flat);
    CK(cu->kv_store(dk, dv, kc, vc, dslot, T, KVD, (int64_t)(layer * layer_elems)));
    CK(cu->attention(dq, kc, vc, dout, dpos, dtab, dflat, T, NH, NKV, HD, BS, (int64_t)(layer * layer_elems), scale));
    down(got, dout, sizeof(float) * T * NH * HD);
    const int fail = report("kv_store + paged attention (GQA 8/2)", got, ref, (size_t)T * NH * HD, 1e-2, 1e-3);
    void *ptrs[] = {kc, vc, dq, dk, dv, dout, dpos, dtab, dslot, dflat};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) cu->free(ptrs[i]);
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

static int check_engines(const char *model)
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
    fail |= worst > 2e-2 || same_argmax < N_REQ;
    return fail;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else {
            fprintf(stderr, "usage: rotor-cuda-check [--model FILE.gguf]\n");
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
    fail |= check_rope(&seed);
    fail |= check_attention(&seed);
    if (model) fail |= check_engines(model);
    printf("cuda-check: %s\n", fail ? "FAILED" : "all OK");
    return fail;
}
