/*
 * forward.c - the batched transformer forward pass on the CPU.
 *
 * Per layer, as in the Llama papers:
 *   xn = RMSNorm(x) * attn_norm
 *   q, k, v = xn Wq (+bq), xn Wk (+bk), xn Wv (+bv)      one threaded matmul run
 *   q, k = RoPE(q, k) at each token's position
 *   K/V of each token -> its sequence's cache slot (paged: block table)
 *   attn = softmax(q K^T / sqrt(hd)) V  per head, GQA   threaded over (seq, kv head)
 *   x += attn Wo
 *   xn = RMSNorm(x) * ffn_norm
 *   x += (silu(xn Wgate) * (xn Wup)) Wdown
 * then logits = RMSNorm(x) * output_norm Woutput for the tokens that ask.
 *
 * Activations are converted once per matmul input to the weight's vec_dot
 * type (Q8_0/Q8_1/Q8_K/F16/...), like ggml. No allocation here: model_ctx_t
 * owns every buffer.
 *
 * Batch invariance: every step but attention works row by row with the same
 * operations whatever the batch (cpu_matmul's tiles give each output element
 * the same bits for any m or row range). Attention's dot-product order is
 * llama.cpp's choice by token count unless the context was set to
 * MODEL_ATTN_INVARIANT (model.h), which the engine does.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward_impl.h"
#include "model/model_impl.h"
#include "rotor/cpu_ops.h"
#include "rotor/cpu_packed.h"
#include "rotor/cpu_quant.h"

#define FWD_MAX_CTX 32768
#define FWD_ROW_ALIGN 16
_Static_assert(FWD_ROW_ALIGN % CPU_PACK_ROWS == 0, "threads split packed matrices at panel bounds");

/* ---- context ---- */

/* Split a few long sequences' attention over their positions: when the batch
 * has at most FWD_SPLIT_TOKENS tokens, fewer (sequence, kv head) units than
 * 2 per thread, and some token sees more than one chunk. The bits do not
 * change (cpu_attn_engine_part/merge are the pieces of cpu_attn_engine). */
#define FWD_SPLIT_TOKENS 4
/* the llama.cpp-order attention converts a head's K and V to f32 once for a
 * sequence with this many tokens in the batch (attn_gather_head) */
#define FWD_GATHER_TOKENS 4
/* row-wise work (norms, RoPE, SwiGLU, activation quantization) runs on the pool from this many tokens */
#define FWD_ROWS_PARALLEL 8
/* decode-sized batches prefetch their KV slots at the start of a layer */
#define FWD_KV_PREFETCH_TOKENS 16

static bool fwd_attn_split(const model_ctx_t *c, const model_batch_t *b)
{
    if (c->attn_order != MODEL_ATTN_ENGINE || b->n_tokens > FWD_SPLIT_TOKENS) return false;
    if (b->n_seqs * c->m->hp.n_head_kv >= 2 * model_ctx_threads(c)) return false;
    for (int i = 0; i < b->n_tokens; i++)
        if (b->pos[i] + 1 > CPU_ATTN_ENGINE_CHUNK) return true;
    return false;
}

static int fwd_max_chunks(const model_ctx_t *c) { return c->att_cap / CPU_ATTN_ENGINE_CHUNK + 1; }

/* the split attention's merges in this batch: one per (token, head) and chunk after the first */
#define FWD_SERIAL_MERGES 64
static int fwd_attn_merges(const model_ctx_t *c, const model_batch_t *b)
{
    int n = 0;
    for (int i = 0; i < b->n_tokens; i++) n += b->pos[i] / CPU_ATTN_ENGINE_CHUNK;
    return n * c->m->hp.n_head;
}

rt_status_t model_ctx_create(const model_t *m, int max_tokens, int n_threads, model_ctx_t **out)
{
    if (max_tokens < 1 || max_tokens > 65536)
        return rt_error_set(RT_ERR_RANGE, "model ctx: max_tokens %d out of range 1..65536", max_tokens);
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    rt_status_t st;
    model_ctx_t *c = calloc(1, sizeof *c);
    if (!c) return rt_error_set(RT_ERR_NOMEM, "model ctx: out of memory");
    c->m = m;
    c->max_tokens = max_tokens;
    const model_hparams_t *hp = &m->hp;
    size_t T = (size_t)max_tokens;
    size_t E = (size_t)hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim,
           KVD = (size_t)hp->n_head_kv * hp->head_dim, FF = (size_t)hp->n_ff;
    /* g and u hold the dense FFN's, an expert's or the shared expert's hidden rows */
    if ((size_t)hp->n_ff_exp > FF) FF = (size_t)hp->n_ff_exp;
    if ((size_t)hp->n_ff_shexp > FF) FF = (size_t)hp->n_ff_shexp;
    c->ff_max = (int)FF;
    size_t wide = E > QD ? E : QD;
    if (FF > wide) wide = FF;
    /* the widest quantized activation row: n_ff or n_embd elements in any vec_dot type */
    size_t xq_row = 0;
    const rt_type_t vts[] = {RT_TYPE_F32, RT_TYPE_F16, RT_TYPE_BF16, RT_TYPE_Q8_0, RT_TYPE_Q8_1, RT_TYPE_Q8_K};
    for (size_t i = 0; i < sizeof vts / sizeof *vts; i++) {
        const rt_type_traits_t *tr = rt_type_traits(vts[i]);
        int64_t n = (int64_t)wide;
        n = (n + tr->block_size - 1) / tr->block_size * tr->block_size;
        size_t b = rt_type_row_size(vts[i], n);
        if (b > xq_row) xq_row = b;
    }
    {
        const size_t a8 = cpu_act8_row_size(((int64_t)wide + 31) / 32 * 32);
        if (a8 > xq_row) xq_row = a8;
    }
    c->xq_stride = (xq_row + 63) & ~(size_t)63;
    c->att_cap = hp->n_ctx_train < FWD_MAX_CTX ? hp->n_ctx_train : FWD_MAX_CTX;
    if (c->att_cap < 4096) c->att_cap = 4096;
    c->att_cap = (c->att_cap + 63) & ~63; /* attention pads positions to 64 */
    if ((st = threadpool_create(n_threads, &c->pool))) goto err;
#define ALLOC(ptr, n)                                                            \
    if (!(ptr = aligned_alloc(64, (((n) * sizeof *ptr) + 63) & ~(size_t)63))) { \
        st = rt_error_set(RT_ERR_NOMEM, "model ctx: out of memory");             \
        goto err;                                                                \
    }
    ALLOC(c->x, T * E);
    ALLOC(c->xn, T * wide);
    ALLOC(c->q, T * QD);
    ALLOC(c->k, T * KVD);
    ALLOC(c->v, T * KVD);
    ALLOC(c->attn, T * QD);
    ALLOC(c->g, T * FF);
    ALLOC(c->u, T * FF);
    ALLOC(c->xo, T * E);
    ALLOC(c->out_rows, T);
    ALLOC(c->rope_cs, T * (size_t)hp->rope_dim);
    ALLOC(c->att_parts, (size_t)FWD_SPLIT_TOKENS * hp->n_head * (size_t)fwd_max_chunks(c) * (size_t)(hp->head_dim + 2));
    ALLOC(c->att_scores, (size_t)n_threads * 4 * (size_t)c->att_cap); /* cpu_attn_engine: 4 heads */
    ALLOC(c->att_claim, T * (size_t)hp->n_head_kv);
    ALLOC(c->att_first, T);
    ALLOC(c->kv_tmp, (size_t)n_threads * 2 * (size_t)c->att_cap * (size_t)hp->head_dim);
    if (hp->n_expert > 0) {
        const size_t NX = (size_t)hp->n_expert, K = (size_t)hp->n_expert_used;
        ALLOC(c->moe_logits, T * NX);
        ALLOC(c->moe_sel, T * K);
        ALLOC(c->moe_w, T * K);
        ALLOC(c->moe_rows, T);
        ALLOC(c->moe_x, T * E);
        ALLOC(c->moe_y, T * E);
        ALLOC(c->moe_slot, T * K * E);
        ALLOC(c->moe_gate, T);
    }
    c->xq = aligned_alloc(64, 3 * T * c->xq_stride);
    if (!c->xq) {
        st = rt_error_set(RT_ERR_NOMEM, "model ctx: out of memory");
        goto err;
    }
#undef ALLOC
    *out = c;
    return RT_OK;
err:
    model_ctx_destroy(c);
    return st;
}

void model_ctx_destroy(model_ctx_t *c)
{
    if (!c) return;
    threadpool_destroy(c->pool);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->attn);
    free(c->g);
    free(c->u);
    free(c->xo);
    free(c->out_rows);
    free(c->rope_cs);
    free(c->att_parts);
    free(c->att_scores);
    free(c->att_claim);
    free(c->att_first);
    free(c->kv_tmp);
    free(c->moe_logits);
    free(c->moe_sel);
    free(c->moe_w);
    free(c->moe_rows);
    free(c->moe_x);
    free(c->moe_y);
    free(c->moe_slot);
    free(c->moe_gate);
    free(c->ep_send);
    free(c->ep_map);
    free(c->ep_counts);
    free(c->xq);
    free(c);
}

int model_ctx_threads(const model_ctx_t *c) { return threadpool_size(c->pool); }
threadpool_t *model_ctx_pool(model_ctx_t *c) { return c->pool; }

void model_ctx_set_attn_order(model_ctx_t *c, model_attn_order_t order) { c->attn_order = order; }

void model_ctx_set_matmul(model_ctx_t *c, model_matmul_t mm) { c->matmul = mm; }

void model_ctx_set_expert_parallel(model_ctx_t *c, int rank, int size, model_ep_combine_fn combine, void *ud)
{
    const bool on = combine && size > 1 && rank >= 0 && rank < size;
    c->ep_rank = on ? rank : 0;
    c->ep_size = on ? size : 1;
    c->ep_combine = on ? combine : NULL;
    c->ep_ud = ud;
}

rt_status_t model_ctx_set_expert_parallel_dp(model_ctx_t *c, int rank, int size, model_ep_alltoall_fn alltoall,
                                             void *ud)
{
    const model_hparams_t *hp = &c->m->hp;
    if (!alltoall || size < 2 || rank < 0 || rank >= size || hp->n_expert <= 0) return RT_OK;
    const size_t rows = (size_t)c->max_tokens * (size_t)hp->n_expert_used;
    free(c->ep_send);
    free(c->ep_map);
    free(c->ep_counts);
    c->ep_send = malloc(rows * ((size_t)hp->n_embd + 1) * sizeof *c->ep_send);
    c->ep_map = malloc(rows * sizeof *c->ep_map);
    c->ep_counts = malloc(4 * (size_t)size * sizeof *c->ep_counts);
    if (!c->ep_send || !c->ep_map || !c->ep_counts)
        return rt_error_set(RT_ERR_NOMEM, "expert parallelism: out of memory for %zu exchange rows", rows);
    c->ep_rank = rank;
    c->ep_size = size;
    c->ep_combine = NULL;
    c->ep_alltoall = alltoall;
    c->ep_ud = ud;
    return RT_OK;
}

rt_status_t model_forward_idle(model_ctx_t *c)
{
    if (!c->ep_alltoall) return rt_error_set(RT_ERR_INVALID, "model_forward_idle: no data-parallel expert parallelism");
    const fwd_run_t none = {0, 0, false, NULL};
    for (int l = 0; l < c->m->hp.n_layer; l++) fwd_moe(c, &c->m->layers[l], &none);
    return RT_OK;
}

/* the packed panels of w when the context uses them, else NULL */
static const void *fwd_packed(const model_ctx_t *c, const model_weight_t *w)
{
    return c->matmul == MODEL_MATMUL_PACKED ? w->packed : NULL;
}

/* activation format of the packed GEMM, next to the vec_dot types */
#define FWD_VT_ACT8 RT_TYPE_COUNT

/* ---- threaded matmul over up to 3 weights sharing one input ---- */

typedef struct {
    int n;
    const model_weight_t *w[3];
    const void *packed[3]; /* panels of w[i] to use, or NULL */
    const void *xq[3];
    float *y[3];
    int64_t y_stride[3];
    int64_t m;
    size_t xq_stride;
    const model_ctx_t *c;
    int n_next;                      /* weights of the next matmul, */
    const model_weight_t *next[3];   /* asked for by each thread when its share is done */
} mm_job_t;

static void fwd_prefetch_share(const model_ctx_t *c, int n, const model_weight_t *const *w, int64_t m, int t);

static void mm_worker(void *arg, int ith, int nth)
{
    const mm_job_t *j = arg;
    for (int i = 0; i < j->n; i++) {
        const model_weight_t *w = j->w[i];
        int64_t r0, r1;
        threadpool_split(w->ne1, ith, nth, FWD_ROW_ALIGN, &r0, &r1);
        if (r0 >= r1) continue;
        if (j->packed[i])
            cpu_packed_matmul(w->type, w->ne0, w->ne1, j->packed[i], j->xq[i], j->xq_stride, j->m, j->y[i],
                              j->y_stride[i], r0, r1);
        else
            cpu_matmul(w->type, w->ne0, w->data, w->row_bytes, j->xq[i], j->xq_stride, j->m, j->y[i],
                       j->y_stride[i], r0, r1);
    }
    fwd_prefetch_share(j->c, j->n_next, j->next, j->m, ith);
}

typedef struct {
    rt_type_t vt;
    const float *x;
    int64_t x_stride, n, m;
    void *dst;
    size_t dst_stride;
} quant_job_t;

static void quant_worker(void *arg, int ith, int nth)
{
    const quant_job_t *q = arg;
    int64_t r0, r1;
    threadpool_split(q->m, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        if (q->vt == FWD_VT_ACT8)
            cpu_act8_quantize(q->x + r * q->x_stride, (char *)q->dst + r * q->dst_stride, q->n);
        else
            cpu_quantize_act(q->vt, q->x + r * q->x_stride, (char *)q->dst + r * q->dst_stride, q->n);
    }
}

/* Decode streams every weight from memory in ~150 short matmuls per token,
 * with serial work (norms, quantization, RoPE) on the caller between them
 * while the other threads wait; each stream then starts cold. So each
 * thread, when its share of a parallel section (a matmul, the attention) is
 * done, asks for the first FWD_PREFETCH_BYTES of its share of the next
 * matmul's weights: the requests overlap the serial work and the other
 * threads' tails, and every core asks for its own lines (the caller asking
 * for all of them stalled on its miss buffers for ~1 us per section: the
 * serial sections of an engine decode token at 512-768 positions took
 * 0.093 ms, now 0.050; decode +3%). Only for
 * m <= FWD_PREFETCH_M (a batch's matmuls are compute-bound). */
#define FWD_PREFETCH_BYTES 8192
#define FWD_PREFETCH_M 4

/* thread share t (threadpool_split's) of the n weights: its first bytes */
static void fwd_prefetch_share(const model_ctx_t *c, int n, const model_weight_t *const *w, int64_t m, int t)
{
    if (m > FWD_PREFETCH_M) return;
    const int nth = model_ctx_threads(c);
    for (int i = 0; i < n; i++) {
        const void *packed = fwd_packed(c, w[i]);
        const size_t panel = packed ? cpu_packed_size(w[i]->type, CPU_PACK_ROWS, w[i]->ne0) : 0;
        int64_t r0, r1;
        threadpool_split(w[i]->ne1, t, nth, FWD_ROW_ALIGN, &r0, &r1);
        if (r0 >= r1) continue;
        const char *p = packed ? (const char *)packed + (size_t)(r0 / CPU_PACK_ROWS) * panel
                               : (const char *)w[i]->data + (size_t)r0 * w[i]->row_bytes;
        const size_t len = packed ? (size_t)((r1 - r0 + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS) * panel
                                  : (size_t)(r1 - r0) * w[i]->row_bytes;
        for (size_t o = 0; o < len && o < FWD_PREFETCH_BYTES; o += 64) __builtin_prefetch(p + o, 0, 3);
    }
}

/* every thread's share, from the caller: before the first matmul */
static void fwd_prefetch_weights(const model_ctx_t *c, int n, const model_weight_t *const *w, int64_t m)
{
    for (int t = 0; t < model_ctx_threads(c); t++) fwd_prefetch_share(c, n, w, m, t);
}

static void fwd_matmul(model_ctx_t *c, int n, const model_weight_t *const *w, const float *x, int64_t x_stride,
                       int64_t m, float *const *y, const int64_t *y_stride, int n_next,
                       const model_weight_t *const *next)
{
    fwd_matmul_rows(c, n, w, x, x_stride, m, y, y_stride, n_next, next, 0, false);
}

void fwd_matmul_rows(model_ctx_t *c, int n, const model_weight_t *const *w, const float *x, int64_t x_stride,
                     int64_t m, float *const *y, const int64_t *y_stride, int n_next, const model_weight_t *const *next,
                     int64_t xq_row0, bool serial)
{
    mm_job_t j = {.n = n, .m = m, .xq_stride = c->xq_stride, .c = c, .n_next = n_next};
    for (int i = 0; i < n_next; i++) j.next[i] = next[i];
    rt_type_t done_vt[3];
    int n_done = 0;
    for (int i = 0; i < n; i++) {
        const void *packed = fwd_packed(c, w[i]);
        rt_type_t vt = packed ? FWD_VT_ACT8 : rt_type_traits(w[i]->type)->vec_dot_type;
        int slot = -1;
        for (int s = 0; s < n_done; s++)
            if (done_vt[s] == vt) slot = s;
        void *buf = (char *)c->xq + ((size_t)(slot >= 0 ? slot : n_done) * (size_t)c->max_tokens + (size_t)xq_row0) *
                                        c->xq_stride;
        if (slot < 0) {
            quant_job_t q = {vt, x, x_stride, w[i]->ne0, m, buf, c->xq_stride};
            if (m >= FWD_ROWS_PARALLEL && !serial) threadpool_run(c->pool, quant_worker, &q);
            else quant_worker(&q, 0, 1);
            done_vt[n_done++] = vt;
        }
        j.w[i] = w[i];
        j.packed[i] = packed;
        j.xq[i] = buf;
        j.y[i] = y[i];
        j.y_stride[i] = y_stride[i];
    }
    if (serial) mm_worker(&j, 0, 1);
    else threadpool_run(c->pool, mm_worker, &j);
}

/* ---- attention ---- */

typedef struct {
    model_ctx_t *c;
    const kv_cache_t *kv;
    const model_batch_t *b;
    int layer;
    _Atomic int next; /* next unit of work of the paged path, taken by any thread */
    bool split;       /* engine order: (token, kv head, chunk) units into att_parts */
    const model_weight_t *wo; /* asked for by each thread when its units are done */
} attn_job_t;



static void attn_units(void *arg, int ith, int nth);

/* The engine order's unit of attention: sequence s's tokens among [i0, i1),
 * the query heads of kv head hk (scores: the thread's scratch) */
static void attn_engine_unit(model_ctx_t *c, const kv_cache_t *kv, const model_batch_t *b, int layer, int s, int hk,
                             int i0, int i1, float *scores)
{
    const model_hparams_t *hp = &c->m->hp;
    const int HD = hp->head_dim, KVD = kv->kv_dim, QD = hp->n_head * HD, group = hp->n_head / hp->n_head_kv;
    const size_t layer_off = (size_t)layer * kv->n_blocks * kv->block_size * KVD;
    const char *kl = (const char *)kv->k + layer_off * kv->elt, *vl = (const char *)kv->v + layer_off * kv->elt;
    const kv_block_table_t *bt = &b->seq_tables[s];
    for (int i = i0; i < i1; i++) {
        if (b->seq[i] != s) continue;
        const size_t qo = (size_t)i * QD + (size_t)hk * group * HD;
        cpu_attn_engine(c->q + qo, group, HD, kl, vl, kv->type == RT_TYPE_F16, bt->blocks, kv->block_size, KVD,
                        hk * HD, HD, b->pos[i] + 1, 1.0f / sqrtf((float)HD), scores, c->attn + qo, HD);
    }
}

/* The llama.cpp-layout cache's kv head hk, positions [0, max_pos] of the
 * sequence with block table bt, as f32: K rows (max_pos + 1, hd) into kt, V
 * transposed (hd rows of n_pad, zero past max_pos) into vt */
static void attn_gather_head(const kv_cache_t *kv, size_t layer_off, const kv_block_table_t *bt, int hk, int HD,
                             int max_pos, int n_pad, float *kt, float *vt)
{
    const size_t KVD = (size_t)kv->kv_dim;
    const bool f16 = kv->type == RT_TYPE_F16;
    const int BS = kv->block_size;
    for (int p = 0; p <= max_pos; p++) {
        size_t slot = (size_t)bt->blocks[p / BS] * BS + p % BS;
        size_t off = (layer_off + slot * KVD + (size_t)hk * HD) * kv->elt;
        if (f16)
            cpu_f16_to_f32_row((const uint16_t *)((const char *)kv->k + off), kt + (size_t)p * HD, HD);
        else
            memcpy(kt + (size_t)p * HD, (const char *)kv->k + off, (size_t)HD * 4);
    }
    for (int p0 = 0; p0 <= max_pos; p0 += BS) {
        const int run = max_pos + 1 - p0 < BS ? max_pos + 1 - p0 : BS;
        const size_t blk = (size_t)bt->blocks[p0 / BS];
        for (int d = 0; d < HD; d++) {
            size_t off = (layer_off + blk * BS * KVD + ((size_t)hk * HD + d) * BS) * kv->elt;
            float *dst = vt + (size_t)d * n_pad + p0;
            if (f16) cpu_f16_to_f32_row((const uint16_t *)((const char *)kv->v + off), dst, run);
            else memcpy(dst, (const char *)kv->v + off, (size_t)run * 4);
        }
    }
    for (int d = 0; d < HD; d++)
        for (int p = max_pos + 1; p < n_pad; p++) vt[(size_t)d * n_pad + p] = 0.0f;
}

static void attn_worker(void *arg, int ith, int nth)
{
    const attn_job_t *a = arg;
    attn_units(arg, ith, nth);
    const model_weight_t *wo[1] = {a->wo};
    fwd_prefetch_share(a->c, 1, wo, a->b->n_tokens, ith);
}

/* the split attention's merge: (token, head) units, chunks in order */
static void attn_merge_worker(void *arg, int ith, int nth)
{
    const attn_job_t *a = arg;
    model_ctx_t *c = a->c;
    const model_hparams_t *hp = &c->m->hp;
    const int HD = hp->head_dim, mc = fwd_max_chunks(c), ps = HD + 2;
    int64_t r0, r1;
    threadpool_split((int64_t)a->b->n_tokens * hp->n_head, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int i = (int)(r / hp->n_head), h = (int)(r % hp->n_head);
        const int n_chunks = (a->b->pos[i] + CPU_ATTN_ENGINE_CHUNK) / CPU_ATTN_ENGINE_CHUNK;
        float *state = c->att_parts + (size_t)r * (size_t)mc * ps; /* chunk 0's part */
        for (int ch = 1; ch < n_chunks; ch++) cpu_attn_engine_merge(state, state + (size_t)ch * ps, HD);
        cpu_attn_engine_finish(state, c->attn + (size_t)i * hp->n_head * HD + (size_t)h * HD, HD);
    }
}

static void attn_units(void *arg, int ith, int nth)
{
    const attn_job_t *a = arg;
    model_ctx_t *c = a->c;
    const model_hparams_t *hp = &c->m->hp;
    const kv_cache_t *kv = a->kv;
    const model_batch_t *b = a->b;
    const int HD = hp->head_dim, KVD = kv->kv_dim, QD = hp->n_head * HD;
    const int group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)HD);
    const bool f16 = kv->type == RT_TYPE_F16;
    const bool invariant = c->attn_order == MODEL_ATTN_INVARIANT;
    float *scores = c->att_scores + (size_t)ith * 4 * c->att_cap;
    float *kt = c->kv_tmp + (size_t)ith * 2 * c->att_cap * HD;
    float *vt = kt + (size_t)c->att_cap * HD; /* transposed: (HD, n_pad) */
    float qh[4096];
    uint16_t qh16[4096];
    const size_t layer_off = (size_t)a->layer * kv->n_blocks * kv->block_size * KVD;
    attn_job_t *aj = arg;
    if (c->attn_order == MODEL_ATTN_ENGINE) {
        /* units: a (sequence, kv head) with all its query heads and tokens,
         * even when there are fewer units than threads: reading a K/V slice
         * once for the group beat balancing single heads (SmolLM2, one
         * sequence at 512-640 positions: decode 295-300 -> 340-373 tok/s,
         * prefill of 512 2270-2390 -> 3160-3270 tok/s) */
        const int n_units = b->n_seqs * hp->n_head_kv; /* unit u: sequence u / n_head_kv, kv head u % n_head_kv */
        const char *kl = (const char *)kv->k + layer_off * kv->elt, *vl = (const char *)kv->v + layer_off * kv->elt;
        if (a->split) { /* units (token, kv head, chunk) -> att_parts[token][head][chunk] */
            const int nk = hp->n_head_kv, mc = fwd_max_chunks(c), ps = HD + 2;
            const int n_split = b->n_tokens * nk * mc;
            for (;;) {
                const int u = atomic_fetch_add_explicit(&aj->next, 1, memory_order_relaxed);
                if (u >= n_split) break;
                /* chunk-major: the short last chunks come last, so the
                 * threads run out of work at nearly the same time */
                const int ch = u / (b->n_tokens * nk), i = u % (b->n_tokens * nk) / nk, hk = u % nk;
                const int n_pos = b->pos[i] + 1, p0 = ch * CPU_ATTN_ENGINE_CHUNK;
                if (p0 >= n_pos) continue;
                const int p1 = p0 + CPU_ATTN_ENGINE_CHUNK < n_pos ? p0 + CPU_ATTN_ENGINE_CHUNK : n_pos;
                const kv_block_table_t *bt = &b->seq_tables[b->seq[i]];
                float *part = c->att_parts + (((size_t)i * (size_t)hp->n_head + (size_t)hk * group) * (size_t)mc + ch) * ps;
                cpu_attn_engine_part(c->q + (size_t)i * QD + (size_t)hk * group * HD, group, HD, kl, vl, f16, bt->blocks,
                                     kv->block_size, KVD, hk * HD, HD, p0, p1, scale, scores, part, mc * ps);
            }
            return;
        }
        /* First the units of the sequences whose first token is in this
         * thread's share of the row passes (fwd_rows: its RoPE wrote their
         * q and new K/V, and the cache of earlier steps, from this core),
         * then, from the other end, any unit still free: the data stays on
         * its core where the two cores are far apart (this VM: a cache line
         * round trip between the cores takes ~100 ns at times and ~400 ns
         * at others; 16 sequences decode +5% in the far state, +2% near). */
        int64_t t0 = 0, t1 = b->n_tokens;
        if (b->n_tokens >= FWD_ROWS_PARALLEL) threadpool_split(b->n_tokens, ith, nth, 1, &t0, &t1);
        else if (ith != 0) t1 = 0;
        for (int k = 0; k < 2 * n_units; k++) {
            const int u = k < n_units ? k : 2 * n_units - 1 - k;
            const int s = u / hp->n_head_kv;
            if (k < n_units && (c->att_first[s] < t0 || c->att_first[s] >= t1)) continue;
            if (atomic_exchange_explicit(&c->att_claim[u], 1, memory_order_relaxed)) continue;
            attn_engine_unit(c, kv, b, a->layer, s, u % hp->n_head_kv, 0, b->n_tokens, scores);
        }
        return;
    }
    if (f16 && kv->block_size % 16 == 0 && cpu_quant_get_isa() == CPU_ISA_AVX512) {
        /* read the f16 cache in place (same bits as the gather path below).
         * Threads take units of work as they finish the last: a (sequence,
         * kv head) with its query heads when there are plenty, so a thread
         * reads that K/V slice from memory once for the group; single
         * (sequence, query head) tasks when there are few (one sequence). */
        const uint16_t *kl = (const uint16_t *)kv->k + layer_off, *vl = (const uint16_t *)kv->v + layer_off;
        if (!invariant && b->n_tokens == b->n_seqs && HD % 64 == 0) {
            /* decode, one token per sequence: units (sequence, kv head), the
             * group's query heads sharing every K/V load (same bits per head) */
            const int n_units = b->n_seqs * hp->n_head_kv;
            for (;;) {
                const int u = atomic_fetch_add_explicit(&aj->next, 1, memory_order_relaxed);
                if (u >= n_units) break;
                const int s = u / hp->n_head_kv, hk = u % hp->n_head_kv;
                int i = 0;
                while (b->seq[i] != s) i++;
                const kv_block_table_t *bt = &b->seq_tables[s];
                for (int g0 = 0; g0 < group; g0 += 4) {
                    const int ng = group - g0 < 4 ? group - g0 : 4;
                    const size_t qo = (size_t)i * QD + (size_t)(hk * group + g0) * HD;
                    cpu_f32_to_f16_row(c->q + qo, qh16, ng * HD);
                    cpu_f16_to_f32_row(qh16, qh, ng * HD);
                    cpu_compat_attn_group_decode_avx512(ng, qh, kl, vl, bt->blocks, kv->block_size, KVD, hk * HD, HD,
                                                        b->pos[i] + 1, scale, scores, c->attn + qo, HD);
                }
            }
            return;
        }
        const int n_tasks = b->n_seqs * hp->n_head;
        const int unit = b->n_seqs * hp->n_head_kv >= 4 * nth ? group : 1;
        for (;;) {
            const int u = atomic_fetch_add_explicit(&aj->next, 1, memory_order_relaxed);
            if (u * unit >= n_tasks) break;
            int gathered = -1; /* the (sequence, kv head) whose K and V are in kt, vt */
            for (int task = u * unit; task < (u + 1) * unit; task++) {
                const int s = task / hp->n_head, h = task % hp->n_head, hk = h / group;
                int n_tok = 0, max_pos = -1;
                for (int i = 0; i < b->n_tokens; i++)
                    if (b->seq[i] == s) {
                        n_tok++;
                        if (b->pos[i] > max_pos) max_pos = b->pos[i];
                    }
                const bool gemm = invariant || n_tok >= 2;
                const kv_block_table_t *bt = &b->seq_tables[s];
                /* many tokens of the sequence (a prefill): its K and V
                 * converted to f32 once, not once per token */
                const bool gather = n_tok >= FWD_GATHER_TOKENS && max_pos < c->att_cap;
                const int n_pad = (max_pos + 1 + 63) & ~63;
                if (gather && gathered != s * hp->n_head_kv + hk) {
                    attn_gather_head(kv, layer_off, bt, hk, HD, max_pos, n_pad, kt, vt);
                    gathered = s * hp->n_head_kv + hk;
                }
                for (int i = 0; i < b->n_tokens; i++) {
                    if (b->seq[i] != s) continue;
                    const float *q = c->q + (size_t)i * QD + (size_t)h * HD;
                    float *o = c->attn + (size_t)i * QD + (size_t)h * HD;
                    cpu_f32_to_f16_row(q, qh16, HD);
                    cpu_f16_to_f32_row(qh16, qh, HD);
                    if (gather)
                        cpu_compat_attn_head_gathered_avx512(qh, kt, vt, n_pad, HD, b->pos[i] + 1, scale, gemm, scores,
                                                             o);
                    else
                        cpu_compat_attn_head_paged_avx512(qh, kl, vl, bt->blocks, kv->block_size, KVD, hk * HD, HD,
                                                          b->pos[i] + 1, scale, gemm, scores, o);
                }
            }
        }
        return;
    }
    int n_tasks = b->n_seqs * hp->n_head_kv;
    for (int task = ith; task < n_tasks; task += nth) {
        int s = task / hp->n_head_kv, hk = task % hp->n_head_kv;
        int max_pos = -1, n_tok = 0;
        for (int i = 0; i < b->n_tokens; i++)
            if (b->seq[i] == s) {
                n_tok++;
                if (b->pos[i] > max_pos) max_pos = b->pos[i];
            }
        if (max_pos < 0) continue;
        const bool gemm = invariant || n_tok >= 2;
        const int n_pad = (max_pos + 1 + 63) & ~63;
        attn_gather_head(kv, layer_off, &b->seq_tables[s], hk, HD, max_pos, n_pad, kt, vt);
        for (int i = 0; i < b->n_tokens; i++) {
            if (b->seq[i] != s) continue;
            const int n_pos = b->pos[i] + 1;
            for (int h = hk * group; h < (hk + 1) * group; h++) {
                const float *q = c->q + (size_t)i * QD + (size_t)h * HD;
                /* llama.cpp converts q to the K type (f16) before KQ */
                for (int d = 0; d < HD; d++) qh[d] = f16 ? rt_fp16_to_fp32(rt_fp32_to_fp16(q[d])) : q[d];
                float *o = c->attn + (size_t)i * QD + (size_t)h * HD;
                cpu_compat_attn_head(qh, kt, vt, HD, n_pos, n_pad, scale, gemm, !f16, f16, scores, o);
            }
        }
    }
}

static rt_status_t fwd_check_batch(const model_ctx_t *c, const kv_cache_t *kv, const model_batch_t *b)
{
    const model_hparams_t *hp = &c->m->hp;
    if (b->n_tokens < 1 || b->n_tokens > c->max_tokens)
        return rt_error_set(RT_ERR_RANGE, "forward: batch of %d tokens (1..%d allowed)", b->n_tokens, c->max_tokens);
    if (b->n_seqs < 1 || b->n_seqs > c->max_tokens)
        return rt_error_set(RT_ERR_RANGE, "forward: batch of %d sequences (1..%d allowed)", b->n_seqs, c->max_tokens);
    if (kv->n_layer != hp->n_layer || kv->kv_dim != hp->n_head_kv * hp->head_dim)
        return rt_error_set(RT_ERR_INVALID, "forward: KV cache was made for another model");
    if ((c->attn_order == MODEL_ATTN_ENGINE) != (kv->layout == KV_LAYOUT_ENGINE))
        return rt_error_set(RT_ERR_INVALID, "forward: the engine attention order needs the engine KV layout, "
                                            "and only it");
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab)
            return rt_error_set(RT_ERR_RANGE, "forward: token id %d out of range (vocab %d)", b->tokens[i], hp->n_vocab);
        if (b->seq[i] < 0 || b->seq[i] >= b->n_seqs)
            return rt_error_set(RT_ERR_RANGE, "forward: token %d has sequence %d of %d", i, b->seq[i], b->n_seqs);
        int p = b->pos[i];
        if (p < 0 || p >= c->att_cap)
            return rt_error_set(RT_ERR_RANGE, "forward: position %d out of range (context %d)", p, c->att_cap);
        const kv_block_table_t *bt = &b->seq_tables[b->seq[i]];
        if (p / kv->block_size >= bt->n_blocks)
            return rt_error_set(RT_ERR_RANGE, "forward: position %d has no KV block in its table", p);
        for (int j = 0; j <= p / kv->block_size; j++)
            if (bt->blocks[j] < 0 || bt->blocks[j] >= kv->n_blocks)
                return rt_error_set(RT_ERR_RANGE, "forward: KV block id %d out of range", bt->blocks[j]);
    }
    return RT_OK;
}

/* ---- per-token (row) phases between matmuls, threaded for big batches ---- */

/* RMSNorm in llama.cpp's order, or the engine's with its attention order */
static inline void fwd_rmsnorm(const model_ctx_t *c, const float *x, const float *w, float *y, int n, float eps)
{
    if (c->attn_order == MODEL_ATTN_ENGINE) cpu_rmsnorm_engine(x, w, y, n, eps);
    else cpu_rmsnorm(x, w, y, n, eps);
}

typedef enum { ROWS_ATTN_NORM, ROWS_ROPE_STORE, ROWS_RESID_FFN_NORM, ROWS_SWIGLU, ROWS_RESID } rows_phase_t;

typedef struct {
    rows_phase_t phase;
    model_ctx_t *c;
    kv_cache_t *kv;
    const model_batch_t *b;
    const model_layer_t *L;
    int layer;
} rows_job_t;

/* Ask for the cache lines rope_store_row will write for token i of layer l
 * (its slot's K and V: one run of kv_dim elements, and one element every
 * block_size for the transposed one), so the writes after the QKV matmul do
 * not wait for ~100 lines from memory one by one. */
static void kv_prefetch_slot(const kv_cache_t *kv, const model_batch_t *b, int l, int i)
{
    const size_t bs = (size_t)kv->block_size, KVD = (size_t)kv->kv_dim, elt = kv->elt;
    const int p = b->pos[i];
    const size_t blk = (size_t)b->seq_tables[b->seq[i]].blocks[p / kv->block_size];
    const size_t layer_off = (size_t)l * (size_t)kv->n_blocks * bs * KVD;
    const char *row = (const char *)(kv->layout == KV_LAYOUT_ENGINE ? kv->v : kv->k) +
                      (layer_off + (blk * bs + (size_t)(p % kv->block_size)) * KVD) * elt;
    const char *col = (const char *)(kv->layout == KV_LAYOUT_ENGINE ? kv->k : kv->v) +
                      (layer_off + blk * bs * KVD + (size_t)(p % kv->block_size)) * elt;
    for (size_t o = 0; o < KVD * elt; o += 64) __builtin_prefetch(row + o, 1, 3);
    const size_t step = bs * elt >= 64 ? 1 : 64 / (bs * elt);
    for (size_t d = 0; d < KVD; d += step) __builtin_prefetch(col + d * bs * elt, 1, 3);
}

static void rope_store_row(const rows_job_t *j, int i)
{
    model_ctx_t *c = j->c;
    const model_t *m = c->m;
    const model_hparams_t *hp = &m->hp;
    kv_cache_t *kv = j->kv;
    const model_batch_t *b = j->b;
    const model_layer_t *L = j->L;
    const int HD = hp->head_dim, QD = hp->n_head * HD, KVD = hp->n_head_kv * HD;
    const float *cs = c->rope_cs + (size_t)i * (size_t)hp->rope_dim;
    float *q = c->q + (size_t)i * QD, *k = c->k + (size_t)i * KVD, *v = c->v + (size_t)i * KVD;
    if (L->bq) {
        for (int d = 0; d < QD; d++) q[d] += L->bq[d];
        for (int d = 0; d < KVD; d++) k[d] += L->bk[d];
        for (int d = 0; d < KVD; d++) v[d] += L->bv[d];
    }
    if (L->q_norm) { /* qwen3: RMSNorm of each head, before RoPE */
        for (int h = 0; h < hp->n_head; h++) fwd_rmsnorm(c, q + (size_t)h * HD, L->q_norm, q + (size_t)h * HD, HD, hp->rms_eps);
        for (int h = 0; h < hp->n_head_kv; h++)
            fwd_rmsnorm(c, k + (size_t)h * HD, L->k_norm, k + (size_t)h * HD, HD, hp->rms_eps);
    }
    cpu_rope_apply(q, hp->n_head, HD, hp->rope_dim, hp->rope_neox, cs);
    cpu_rope_apply(k, hp->n_head_kv, HD, hp->rope_dim, hp->rope_neox, cs);
    const size_t layer_off = (size_t)j->layer * kv->n_blocks * kv->block_size * KVD;
    const kv_block_table_t *bt = &b->seq_tables[b->seq[i]];
    const int p = b->pos[i];
    const size_t bs = (size_t)kv->block_size, blk = (size_t)bt->blocks[p / kv->block_size];
    const size_t off = (layer_off + (blk * bs + (size_t)(p % kv->block_size)) * KVD) * kv->elt;
    /* V is transposed within its block: (kv_dim, block_size) */
    const size_t voff = layer_off + blk * bs * KVD + (size_t)(p % kv->block_size);
    if (kv->layout == KV_LAYOUT_ENGINE) { /* the other way round: K transposed, V rows */
        const size_t kt = voff, vr = off / kv->elt;
        if (kv->type == RT_TYPE_F16) {
            uint16_t *kd = (uint16_t *)kv->k + kt;
            for (int d = 0; d < KVD; d++) kd[(size_t)d * bs] = rt_fp32_to_fp16(k[d]);
            cpu_f32_to_f16_row(v, (uint16_t *)kv->v + vr, KVD);
        } else {
            float *kd = (float *)kv->k + kt;
            for (int d = 0; d < KVD; d++) kd[(size_t)d * bs] = k[d];
            memcpy((float *)kv->v + vr, v, (size_t)KVD * 4);
        }
        return;
    }
    if (kv->type == RT_TYPE_F16) {
        cpu_f32_to_f16_row(k, (uint16_t *)((char *)kv->k + off), KVD);
        uint16_t *vd = (uint16_t *)kv->v + voff;
        for (int d = 0; d < KVD; d++) vd[(size_t)d * bs] = rt_fp32_to_fp16(v[d]);
    } else {
        memcpy((char *)kv->k + off, k, (size_t)KVD * 4);
        float *vd = (float *)kv->v + voff;
        for (int d = 0; d < KVD; d++) vd[(size_t)d * bs] = v[d];
    }
}

/* the row pass j->phase over tokens [r0, r1) */
static void rows_range(const rows_job_t *j, int64_t r0, int64_t r1)
{
    model_ctx_t *c = j->c;
    const model_hparams_t *hp = &c->m->hp;
    const int E = hp->n_embd, FF = hp->n_ff;
    for (int64_t i = r0; i < r1; i++) {
        float *x = c->x + (size_t)i * E, *xn = c->xn + (size_t)i * E;
        switch (j->phase) {
        case ROWS_ATTN_NORM: fwd_rmsnorm(c, x, j->L->attn_norm, xn, E, hp->rms_eps); break;
        case ROWS_ROPE_STORE: rope_store_row(j, (int)i); break;
        case ROWS_RESID_FFN_NORM:
            for (int d = 0; d < E; d++) x[d] += xn[d];
            fwd_rmsnorm(c, x, j->L->ffn_norm, xn, E, hp->rms_eps);
            break;
        case ROWS_SWIGLU: cpu_compat_swiglu(c->g + (size_t)i * FF, c->u + (size_t)i * FF, FF); break;
        case ROWS_RESID:
            for (int d = 0; d < E; d++) x[d] += xn[d];
            break;
        }
    }
}

static void rows_worker(void *arg, int ith, int nth)
{
    const rows_job_t *j = arg;
    int64_t r0, r1;
    threadpool_split(j->b->n_tokens, ith, nth, 1, &r0, &r1);
    rows_range(j, r0, r1);
}

static void fwd_rows(model_ctx_t *c, rows_job_t *j)
{
    if (j->b->n_tokens >= FWD_ROWS_PARALLEL) threadpool_run(c->pool, rows_worker, j);
    else rows_worker(j, 0, 1);
}

/* ---- data-parallel forward ----
 * A batch of many sequences runs its layers as one forward per thread:
 * thread t takes its share of the sequences (whole sequences, at least
 * FWD_DP_MIN_ROWS tokens) through every layer alone - norms, GEMMs over all
 * the weight rows for its rows, RoPE, attention - with no fork/join and
 * nothing crossing to another core; the head is then split by vocabulary
 * rows as usual. Each GEMM is still one pass over the weights for all of
 * the thread's sequences, and at 8+ rows the packed kernel runs within a
 * few % of its 16-row speed; what goes is the ~12 fork/joins per layer and
 * the hand-over of every activation between a matmul's column split and a
 * row pass's row split. On this VM's two vCPUs, 16 sequences (bench-engine,
 * interleaved with the split forward): 2.65-2.7k -> 3.25-3.3k tok/s while
 * the vCPUs sat on two dies, about even (3.2-3.4k) while they shared an L3;
 * 64 sequences 3.2-3.5k -> 3.5-3.65k. The bits are the split forward's:
 * every kernel gives each output element the same operations whatever the
 * rows and row ranges. The layer weights are read once per thread per step:
 * with many cores, groups of cores (a die each) would split rows within and
 * sequences across - not done here (one level, all threads). */
#define FWD_DP_MIN_ROWS 8
#define FWD_DP_MAX_THREADS 64

typedef struct {
    model_ctx_t *c;
    kv_cache_t *kv;
    const model_batch_t *b;
    int cut[FWD_DP_MAX_THREADS + 1]; /* thread t: tokens [cut[t], cut[t + 1]) */
} dp_job_t;

/* Cut the batch into near-equal shares of whole sequences (each within 25%
 * of T / nth tokens, at least FWD_DP_MIN_ROWS), or return false. Needs
 * c->att_first and every sequence's tokens contiguous. */
static bool fwd_dp_plan(const model_ctx_t *c, const model_batch_t *b, dp_job_t *d)
{
    const int nth = model_ctx_threads(c), T = b->n_tokens;
    if (c->ep_size > 1) return false; /* one collective per MoE layer, not one per thread */
    if (c->attn_order != MODEL_ATTN_ENGINE || nth < 2 || nth > FWD_DP_MAX_THREADS || T < FWD_DP_MIN_ROWS * nth)
        return false;
    for (int i = 1; i < T; i++) /* contiguous: a new sequence starts where it first appears */
        if (b->seq[i] != b->seq[i - 1] && c->att_first[b->seq[i]] != i) return false;
    d->cut[0] = 0;
    d->cut[nth] = T;
    for (int t = 1; t < nth; t++) { /* the sequence bound nearest the ideal cut */
        const int ideal = (int)((int64_t)T * t / nth);
        int k = -1;
        for (int dist = 0; dist <= T && k < 0; dist++) {
            if (ideal - dist > 0 && b->seq[ideal - dist] != b->seq[ideal - dist - 1]) k = ideal - dist;
            else if (ideal + dist < T && b->seq[ideal + dist] != b->seq[ideal + dist - 1]) k = ideal + dist;
        }
        if (k < 0) return false;
        d->cut[t] = k;
    }
    const double share = (double)T / nth;
    for (int t = 0; t < nth; t++) {
        const int n = d->cut[t + 1] - d->cut[t];
        if (n < FWD_DP_MIN_ROWS || n < 0.75 * share || n > 1.25 * share) return false;
    }
    return true;
}


static void fwd_rows_run(model_ctx_t *c, rows_job_t *rj, rows_phase_t phase, const fwd_run_t *r)
{
    rj->phase = phase;
    if (r->dp) rows_range(rj, r->t0, r->t1);
    else fwd_rows(c, rj);
}

static void fwd_attention(model_ctx_t *c, kv_cache_t *kv, const model_batch_t *b, const model_layer_t *L, int l,
                          const fwd_run_t *r)
{
    if (r->dp) {
        for (int i = r->t0; i < r->t1; i++) /* each sequence of the share, from its first token */
            if (c->att_first[b->seq[i]] == i)
                for (int hk = 0; hk < c->m->hp.n_head_kv; hk++)
                    attn_engine_unit(c, kv, b, l, b->seq[i], hk, i, r->t1, r->scores);
        return;
    }
    attn_job_t aj = {c, kv, b, l, 0, fwd_attn_split(c, b), &L->wo};
    if (c->attn_order == MODEL_ATTN_ENGINE && !aj.split) /* attn_worker's claims of units, per sequence */
        for (int u = 0; u < b->n_seqs * c->m->hp.n_head_kv; u++)
            atomic_store_explicit(&c->att_claim[u], 0, memory_order_relaxed);
    threadpool_run(c->pool, attn_worker, &aj);
    /* a few merges (a few hundred FMAs each) on the caller: cheaper than a fork/join */
    if (aj.split && fwd_attn_merges(c, b) <= FWD_SERIAL_MERGES) attn_merge_worker(&aj, 0, 1);
    else if (aj.split) threadpool_run(c->pool, attn_merge_worker, &aj);
}

/* layer l for the tokens and threads r says */
static void fwd_layer(model_ctx_t *c, kv_cache_t *kv, const model_batch_t *b, int l, const fwd_run_t *r)
{
    const model_t *m = c->m;
    const model_hparams_t *hp = &m->hp;
    const int E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD, KVD = hp->n_head_kv * HD, FF = hp->n_ff;
    const size_t t0 = (size_t)r->t0;
    const int64_t mt = r->t1 - r->t0;
    const model_layer_t *L = &m->layers[l];
    rows_job_t rj = {ROWS_ATTN_NORM, c, kv, b, L, l};
    const model_weight_t *wqkv[3] = {&L->wq, &L->wk, &L->wv};
    const model_weight_t *wo[1] = {&L->wo}, *wgu[2] = {&L->w_gate, &L->w_up}, *wdown[1] = {&L->w_down};
    const model_layer_t *N = l + 1 < hp->n_layer ? &m->layers[l + 1] : NULL;
    const model_weight_t *wnext[3] = {N ? &N->wq : &m->output, N ? &N->wk : NULL, N ? &N->wv : NULL};
    if (!r->dp) {
        /* each matmul's threads ask for the next one's weights (fwd_prefetch_share): the caller starts the chain */
        if (l == 0) fwd_prefetch_weights(c, 3, wqkv, mt);
        if (mt <= FWD_KV_PREFETCH_TOKENS)
            for (int i = r->t0; i < r->t1; i++) kv_prefetch_slot(kv, b, l, i);
    }
    fwd_rows_run(c, &rj, ROWS_ATTN_NORM, r);
    float *yqkv[3] = {c->q + t0 * QD, c->k + t0 * KVD, c->v + t0 * KVD};
    const int64_t sqkv[3] = {QD, KVD, KVD};
    fwd_matmul_rows(c, 3, wqkv, c->xn + t0 * E, E, mt, yqkv, sqkv, 0, NULL, r->t0, r->dp);
    fwd_rows_run(c, &rj, ROWS_ROPE_STORE, r);
    fwd_attention(c, kv, b, L, l, r);
    float *yo[1] = {c->xn + t0 * E};
    const int64_t sE[1] = {E};
    const bool moe = hp->n_expert > 0;
    fwd_matmul_rows(c, 1, wo, c->attn + t0 * QD, QD, mt, yo, sE, moe ? 0 : 2, wgu, r->t0, r->dp);
    fwd_rows_run(c, &rj, ROWS_RESID_FFN_NORM, r);
    if (moe) {
        fwd_moe(c, L, r);
    } else {
        float *ygu[2] = {c->g + t0 * FF, c->u + t0 * FF};
        const int64_t sFF[2] = {FF, FF};
        fwd_matmul_rows(c, 2, wgu, c->xn + t0 * E, E, mt, ygu, sFF, 1, wdown, r->t0, r->dp);
        fwd_rows_run(c, &rj, ROWS_SWIGLU, r);
        fwd_matmul_rows(c, 1, wdown, c->g + t0 * FF, FF, mt, yo, sE, N ? 3 : 1, wnext, r->t0, r->dp);
    }
    fwd_rows_run(c, &rj, ROWS_RESID, r);
}

static void dp_worker(void *arg, int ith, int nth)
{
    const dp_job_t *d = arg;
    model_ctx_t *c = d->c;
    const fwd_run_t r = {d->cut[ith], d->cut[ith + 1], true, c->att_scores + (size_t)ith * 4 * c->att_cap};
    (void)nth;
    for (int l = 0; l < c->m->hp.n_layer; l++) fwd_layer(c, d->kv, d->b, l, &r);
}

rt_status_t model_forward(model_ctx_t *c, kv_cache_t *kv, const model_batch_t *b, float *logits)
{
    rt_status_t st = fwd_check_batch(c, kv, b);
    if (st) return st;
    const model_t *m = c->m;
    const model_hparams_t *hp = &m->hp;
    const int T = b->n_tokens, E = hp->n_embd;

    /* RoPE's cos/sin per token, shared by every layer */
    for (int i = 0; i < T; i++)
        cpu_rope_table(b->pos[i], hp->rope_dim, hp->rope_base, hp->rope_freq_scale, m->rope_freqs,
                       c->rope_cs + (size_t)i * (size_t)hp->rope_dim);

    /* each sequence's first token (attn_worker's affinity) */
    for (int i = 0; i < b->n_seqs; i++) c->att_first[i] = INT32_MAX;
    for (int i = T - 1; i >= 0; i--) c->att_first[b->seq[i]] = i;

    /* embeddings */
    for (int i = 0; i < T; i++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)b->tokens[i] * m->tok_embd.row_bytes;
        st = cpu_dequantize_row(m->tok_embd.type, row, c->x + (size_t)i * E, E);
        if (st) return st;
    }

    dp_job_t dp = {.c = c, .kv = kv, .b = b};
    if (fwd_dp_plan(c, b, &dp)) threadpool_run(c->pool, dp_worker, &dp);
    else {
        const fwd_run_t all = {0, T, false, NULL};
        for (int l = 0; l < hp->n_layer; l++) fwd_layer(c, kv, b, l, &all);
    }

    /* head: only for the rows that want logits (the last down matmul asked
     * for its weights); split by vocabulary rows after the data-parallel
     * layers too, so the largest matrix (30 MB for SmolLM2) is read once
     * per step, not once per thread (the same speed on this VM, 5
     * interleaved runs each way; half the memory traffic for it) */
    int n_out = 0;
    for (int i = 0; i < T; i++)
        if (b->logits[i]) {
            fwd_rmsnorm(c, c->x + (size_t)i * E, m->output_norm, c->xo + (size_t)n_out * E, E, hp->rms_eps);
            n_out++;
        }
    if (n_out > 0) {
        const model_weight_t *w[1] = {&m->output};
        float *y[1] = {logits};
        int64_t ys[1] = {hp->n_vocab};
        fwd_matmul(c, 1, w, c->xo, E, n_out, y, ys, 0, NULL);
    }
    return RT_OK;
}

