/*
 * backend_cuda.c - the engine's CUDA backend (engine:backend = cuda): dense
 * Llama-family models (llama, qwen2, qwen3, mistral) on one GPU through
 * the kernels of librotor_cuda.so (cuda_kernels.h, loaded at run time).
 *
 * Weights: every matrix is dequantized on the host and kept on the device
 * in f16 (n_params x 2 bytes: SmolLM2-135M 270 MB, an 8B model 16 GB);
 * matmuls are cuBLAS GemmEx, f16 inputs with f32 accumulation and f32
 * outputs; activations stay f32 between matmuls. The KV cache is f16 on the
 * device, (n_layer, n_blocks, block_size, kv_dim) for K and for V, sized as
 * vLLM sizes it (engine:gpu_memory_utilization of the GPU's memory, less the
 * weights and scratch, unless engine:kv_cache_blocks says), and
 * attention reads it through each sequence's block table (paged). RoPE
 * tables come from the host's cpu_rope_table, so both layouts and Llama-3
 * frequency factors mean what they mean on the CPU. Sampling stays on the
 * host: only the rows that want logits are copied back.
 *
 * Not yet: quantized weights kept quantized (dequantizing to f16 costs
 * memory, not accuracy), mixture-of-experts models, tensor parallelism,
 * CUDA graphs, overlapping host preparation with the GPU. Each rank takes
 * the GPU of its node-local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID)
 * modulo the devices it sees, or engine:cuda_device.
 *
 * Ownership: the backend owns its device buffers, cuBLAS handle and model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/cuda_load.h"
#include "rotor/engine.h"
#include "rotor/log.h"

typedef struct {
    void *wq, *wk, *wv, *wo, *wg, *wu, *wd;                 /* f16 matrices */
    float *attn_norm, *ffn_norm, *bq, *bk, *bv, *qn, *kn;   /* f32 vectors, NULL if none */
} cuda_layer_t;

typedef struct {
    const rt_cuda_api_t *cu;
    model_t *model;
    model_hparams_t hp;
    void *blas;
    cuda_layer_t *layers; /* (n_layer) */
    void *embd, *head;    /* f16; head == embd when tied */
    float *out_norm;
    /* the KV cache */
    void *kc, *vc;
    int n_blocks, block_size;
    int64_t layer_elems; /* n_blocks * block_size * kv_dim */
    /* device scratch for max_tokens tokens */
    int max_tokens, max_out;
    int64_t max_tables;
    float *x, *xn, *q, *k, *v, *att, *g, *u, *logits, *cs;
    void *h16;
    int32_t *d_tok, *d_pos, *d_slot, *d_tab, *d_tables, *d_rows;
    /* host staging */
    int32_t *h_slot, *h_tab, *h_tables, *h_rows, *h_seq_off;
    float *h_cs;
    size_t device_bytes;
} cuda_backend_t;

#define CU(call, what)                                                                                        \
    do {                                                                                                      \
        const int e_ = (call);                                                                                \
        if (e_) return rt_error_set(RT_ERR_IO, "cuda: %s: %s", (what), b->cu->error_string(e_));              \
    } while (0)

static rt_status_t dev_alloc(cuda_backend_t *b, void **p, size_t bytes, const char *what)
{
    *p = NULL;
    const int e = b->cu->malloc(p, bytes ? bytes : 1);
    if (e) {
        *p = NULL;
        return rt_error_set(RT_ERR_NOMEM, "cuda: %s (%zu bytes; %zu already on the device): %s", what, bytes,
                            b->device_bytes, b->cu->error_string(e));
    }
    b->device_bytes += bytes;
    return RT_OK;
}

/* a matrix, dequantized and converted to f16 on the host, to the device */
static rt_status_t upload_matrix(cuda_backend_t *b, const model_matrix_t *m, void **out, const char *what)
{
    *out = NULL;
    if (!m->data) return RT_OK;
    const size_t n = (size_t)m->ne0 * (size_t)m->ne1;
    uint16_t *h = malloc(n * sizeof *h);
    float *row = malloc((size_t)m->ne0 * sizeof *row);
    rt_status_t st = h && row ? RT_OK : rt_error_set(RT_ERR_NOMEM, "cuda: out of host memory for %s", what);
    for (int64_t r = 0; !st && r < m->ne1; r++) {
        st = cpu_dequantize_row(m->type, (const char *)m->data + (size_t)r * m->row_bytes, row, m->ne0);
        if (!st) cpu_f32_to_f16_row(row, h + (size_t)r * (size_t)m->ne0, (int)m->ne0);
    }
    free(row);
    if (!st) st = dev_alloc(b, out, n * sizeof *h, what);
    if (!st) {
        const int e = b->cu->memcpy_h2d(*out, h, n * sizeof *h);
        if (e) st = rt_error_set(RT_ERR_IO, "cuda: upload %s: %s", what, b->cu->error_string(e));
    }
    free(h);
    return st;
}

static rt_status_t upload_vector(cuda_backend_t *b, const float *v, size_t n, float **out, const char *what)
{
    *out = NULL;
    if (!v) return RT_OK;
    rt_status_t st = dev_alloc(b, (void **)out, n * sizeof *v, what);
    if (st) return st;
    CU(b->cu->memcpy_h2d(*out, v, n * sizeof *v), what);
    return RT_OK;
}

static void cuda_destroy(void *state)
{
    cuda_backend_t *b = state;
    if (!b) return;
    if (b->cu) {
        if (b->layers)
            for (int l = 0; l < b->hp.n_layer; l++) {
                cuda_layer_t *L = &b->layers[l];
                void *ptrs[] = {L->wq, L->wk, L->wv, L->wo, L->wg, L->wu, L->wd, L->attn_norm, L->ffn_norm,
                                L->bq, L->bk, L->bv, L->qn, L->kn};
                for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
                    if (ptrs[i]) b->cu->free(ptrs[i]);
            }
        void *ptrs[] = {b->embd, b->head != b->embd ? b->head : NULL, b->out_norm, b->kc, b->vc, b->x, b->xn, b->q,
                        b->k, b->v, b->att, b->g, b->u, b->logits, b->cs, b->h16, b->d_tok, b->d_pos, b->d_slot,
                        b->d_tab, b->d_tables, b->d_rows};
        for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
            if (ptrs[i]) b->cu->free(ptrs[i]);
        if (b->blas) b->cu->blas_destroy(b->blas);
    }
    free(b->layers);
    free(b->h_slot);
    free(b->h_tab);
    free(b->h_tables);
    free(b->h_rows);
    free(b->h_seq_off);
    free(b->h_cs);
    model_free(b->model);
    free(b);
}

/* the GPU of this rank: engine:cuda_device, else its node-local rank modulo
 * the devices */
static int pick_device(int configured, int count)
{
    if (configured >= 0) return configured;
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) % count;
    }
    return 0;
}

/* The KV pool: engine:kv_cache_blocks, else what is left of
 * gpu_memory_utilization x the GPU's memory once weights and scratch are
 * in (vLLM's sizing). */
static size_t cuda_block_bytes(void *state);

static rt_status_t kv_pool_blocks(cuda_backend_t *b, const engine_config_t *cfg, int64_t *nb)
{
    const int64_t per_block = (int64_t)cuda_block_bytes(b);
    *nb = cfg->kv_blocks;
    if (*nb <= 0) {
        uint64_t free_b = 0, total = 0;
        CU(b->cu->mem_info(&free_b, &total), "memory info");
        const double budget = cfg->gpu_memory_utilization * (double)total - (double)(total - free_b);
        *nb = budget > 0 ? (int64_t)(budget / (double)per_block) : 0;
        if (*nb < 1)
            return rt_error_set(RT_ERR_NOMEM, "engine cuda: no room for a KV pool: weights and scratch take %.2f GB "
                                "of %.2f GB, over engine:gpu_memory_utilization = %.2f of it", (double)(total - free_b) / 1e9,
                                (double)total / 1e9, cfg->gpu_memory_utilization);
        if (*nb > (1 << 24)) *nb = 1 << 24;
    }
    if (*nb > (1 << 24)) return rt_error_set(RT_ERR_RANGE, "engine cuda: a KV pool of %lld blocks", (long long)*nb);
    return RT_OK;
}

static rt_status_t create_device(cuda_backend_t *b, const engine_config_t *cfg)
{
    const rt_cuda_api_t *cu = b->cu;
    const model_hparams_t *hp = &b->hp;
    int count = 0;
    const int e = cu->device_count(&count);
    if (e || count == 0)
        return rt_error_set(RT_ERR_UNAVAILABLE, "cuda: no CUDA device (%s)", e ? cu->error_string(e) : "none found");
    const int dev = pick_device(cfg->cuda_device, count);
    if (dev >= count) return rt_error_set(RT_ERR_INVALID, "engine:cuda_device %d: this node has %d", dev, count);
    CU(cu->set_device(dev), "set device");
    char name[256] = "";
    cu->device_name(dev, name, sizeof name);
    CU(cu->blas_create(&b->blas), "cuBLAS");

    const int E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD, KVD = hp->n_head_kv * HD, FF = hp->n_ff;
    rt_status_t st = RT_OK;
    b->layers = calloc((size_t)hp->n_layer, sizeof *b->layers);
    if (!b->layers) return rt_error_set(RT_ERR_NOMEM, "cuda: out of memory");
    for (int l = 0; !st && l < hp->n_layer; l++) {
        cuda_layer_t *L = &b->layers[l];
        const model_t *m = b->model;
        const model_matrix_t mq = model_layer_matrix(m, l, MODEL_MAT_Q), mk = model_layer_matrix(m, l, MODEL_MAT_K),
                             mv = model_layer_matrix(m, l, MODEL_MAT_V), mo = model_layer_matrix(m, l, MODEL_MAT_O),
                             mg = model_layer_matrix(m, l, MODEL_MAT_GATE),
                             mu = model_layer_matrix(m, l, MODEL_MAT_UP),
                             md = model_layer_matrix(m, l, MODEL_MAT_DOWN);
        if (!st) st = upload_matrix(b, &mq, &L->wq, "attn_q");
        if (!st) st = upload_matrix(b, &mk, &L->wk, "attn_k");
        if (!st) st = upload_matrix(b, &mv, &L->wv, "attn_v");
        if (!st) st = upload_matrix(b, &mo, &L->wo, "attn_output");
        if (!st) st = upload_matrix(b, &mg, &L->wg, "ffn_gate");
        if (!st) st = upload_matrix(b, &mu, &L->wu, "ffn_up");
        if (!st) st = upload_matrix(b, &md, &L->wd, "ffn_down");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_ATTN_NORM), (size_t)E, &L->attn_norm, "attn_norm");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_FFN_NORM), (size_t)E, &L->ffn_norm, "ffn_norm");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_BQ), (size_t)QD, &L->bq, "attn_q.bias");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_BK), (size_t)KVD, &L->bk, "attn_k.bias");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_BV), (size_t)KVD, &L->bv, "attn_v.bias");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_Q_NORM), (size_t)HD, &L->qn, "attn_q_norm");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_K_NORM), (size_t)HD, &L->kn, "attn_k_norm");
    }
    const model_matrix_t me = model_embedding(b->model), mh = model_output_matrix(b->model);
    if (!st) st = upload_matrix(b, &me, &b->embd, "token_embd");
    if (!st) {
        if (mh.data == me.data) b->head = b->embd;
        else st = upload_matrix(b, &mh, &b->head, "output");
    }
    if (!st) st = upload_vector(b, model_output_norm(b->model), (size_t)E, &b->out_norm, "output_norm");
    if (st) return st;

    /* scratch */
    const size_t T = (size_t)cfg->max_num_batched_tokens;
    const int wide = FF > QD ? (FF > E ? FF : E) : (QD > E ? QD : E);
    b->max_tokens = (int)T;
    /* a decode's row and its drafts', and the prompt logprobs' */
    b->max_out = cfg->max_num_seqs * (1 + cfg->spec.tokens) + ENGINE_PROMPT_LOGPROB_ROWS;
    const int64_t per_seq = ((cfg->max_model_len > 0 ? cfg->max_model_len : hp->n_ctx_train) + cfg->block_size - 1) /
                                cfg->block_size + 1;
    b->max_tables = (int64_t)cfg->max_num_seqs * per_seq;
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } bufs[] = {
        {(void **)&b->x, T * E * 4, "activations"},  {(void **)&b->xn, T * E * 4, "activations"},
        {(void **)&b->q, T * QD * 4, "queries"},     {(void **)&b->k, T * KVD * 4, "keys"},
        {(void **)&b->v, T * KVD * 4, "values"},     {(void **)&b->att, T * QD * 4, "attention"},
        {(void **)&b->g, T * FF * 4, "ffn"},         {(void **)&b->u, T * FF * 4, "ffn"},
        {(void **)&b->logits, (size_t)b->max_out * hp->n_vocab * 4, "logits"},
        {(void **)&b->cs, T * hp->rope_dim * 4, "rope"}, {&b->h16, T * (size_t)wide * 2, "f16 activations"},
        {(void **)&b->d_tok, T * 4, "batch"},        {(void **)&b->d_pos, T * 4, "batch"},
        {(void **)&b->d_slot, T * 4, "batch"},       {(void **)&b->d_tab, T * 4, "batch"},
        {(void **)&b->d_tables, (size_t)b->max_tables * 4, "block tables"}, {(void **)&b->d_rows, T * 4, "batch"},
    };
    for (size_t i = 0; !st && i < sizeof bufs / sizeof *bufs; i++) st = dev_alloc(b, bufs[i].p, bufs[i].bytes, bufs[i].what);
    if (st) return st;

    /* the KV cache, last: it takes what is left */
    b->block_size = cfg->block_size;
    int64_t nb;
    if ((st = kv_pool_blocks(b, cfg, &nb))) return st;
    b->n_blocks = (int)nb;
    b->layer_elems = nb * cfg->block_size * KVD;
    const size_t kv_bytes = (size_t)hp->n_layer * (size_t)b->layer_elems * 2;
    if ((st = dev_alloc(b, &b->kc, kv_bytes, "KV cache (K)")) || (st = dev_alloc(b, &b->vc, kv_bytes, "KV cache (V)")))
        return st;
    b->h_slot = malloc(T * 4);
    b->h_tab = malloc(T * 4);
    b->h_rows = malloc(T * 4);
    b->h_tables = malloc((size_t)b->max_tables * 4);
    b->h_cs = malloc(T * (size_t)hp->rope_dim * 4);
    b->h_seq_off = malloc((size_t)cfg->max_num_seqs * 4);
    if (!b->h_slot || !b->h_tab || !b->h_rows || !b->h_tables || !b->h_cs || !b->h_seq_off)
        return rt_error_set(RT_ERR_NOMEM, "cuda: out of host memory");
    RT_LOG_INFO("cuda: %s (device %d of %d): %.2f GB on the device (weights f16, %d KV blocks)", name, dev, count,
                (double)b->device_bytes / 1e9, b->n_blocks);
    return RT_OK;
}

static rt_status_t cuda_create(const engine_config_t *cfg, void **state, int *n_blocks, int *n_vocab,
                               const tok_vocab_t **vocab, int *n_ctx)
{
    cuda_backend_t *b = calloc(1, sizeof *b);
    if (!b) return rt_error_set(RT_ERR_NOMEM, "engine cuda: out of memory");
    rt_status_t st = rt_cuda_load(&b->cu);
    if (!st) st = model_load(cfg->model_path, &b->model);
    if (!st) {
        b->hp = *model_hparams(b->model);
        if (b->hp.n_expert > 0)
            st = rt_error_set(RT_ERR_UNSUPPORTED, "engine cuda: mixture-of-experts models are not supported yet (%s)",
                              cfg->model_path);
        else if (cfg->ep && cfg->ep->size > 1)
            st = rt_error_set(RT_ERR_UNSUPPORTED, "engine cuda: expert parallelism runs on the cpu backend");
        else if (b->hp.head_dim > 256)
            st = rt_error_set(RT_ERR_UNSUPPORTED, "engine cuda: head size %d over 256", b->hp.head_dim);
    }
    if (!st && cfg->kv_type != RT_TYPE_F16)
        st = rt_error_set(RT_ERR_UNSUPPORTED, "engine cuda: the KV cache is f16 (engine:kv_type)");
    if (!st) st = create_device(b, cfg);
    if (st) {
        cuda_destroy(b);
        return st;
    }
    *n_blocks = b->n_blocks;
    *n_vocab = b->hp.n_vocab;
    *vocab = model_vocab(b->model);
    *n_ctx = b->hp.n_ctx_train;
    *state = b;
    return RT_OK;
}

static rt_status_t cuda_forward(void *state, const model_batch_t *batch, float *logits)
{
    cuda_backend_t *b = state;
    const rt_cuda_api_t *cu = b->cu;
    const model_hparams_t *hp = &b->hp;
    const int T = batch->n_tokens, E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD;
    const int KVD = hp->n_head_kv * HD, FF = hp->n_ff, bs = b->block_size, R = hp->rope_dim;
    if (T <= 0) return RT_OK;
    if (T > b->max_tokens) return rt_error_set(RT_ERR_INVALID, "engine cuda: a batch of %d tokens", T);
    /* the batch on the host: block tables flattened, each token's KV slot,
     * RoPE's cos/sin, the rows that want logits */
    int64_t n_tab = 0;
    if (batch->n_seqs > b->max_out) return rt_error_set(RT_ERR_INVALID, "engine cuda: %d sequences", batch->n_seqs);
    for (int s = 0; s < batch->n_seqs; s++) {
        const kv_block_table_t *t = &batch->seq_tables[s];
        if (n_tab + t->n_blocks > b->max_tables)
            return rt_error_set(RT_ERR_INVALID, "engine cuda: block tables over %lld entries", (long long)b->max_tables);
        memcpy(b->h_tables + n_tab, t->blocks, (size_t)t->n_blocks * sizeof *t->blocks);
        b->h_seq_off[s] = (int32_t)n_tab;
        n_tab += t->n_blocks;
    }
    int n_out = 0;
    for (int i = 0; i < T; i++) {
        const int s = batch->seq[i], p = batch->pos[i];
        if (s < 0 || s >= batch->n_seqs || p < 0) return rt_error_set(RT_ERR_INVALID, "engine cuda: a bad batch row");
        const kv_block_table_t *t = &batch->seq_tables[s];
        if (p / bs >= t->n_blocks) return rt_error_set(RT_ERR_INVALID, "engine cuda: position %d past its block table", p);
        b->h_slot[i] = t->blocks[p / bs] * bs + p % bs;
        b->h_tab[i] = b->h_seq_off[s];
        cpu_rope_table(p, R, hp->rope_base, hp->rope_freq_scale, model_rope_freq_factors(b->model), b->h_cs + (size_t)i * R);
        if (batch->logits[i]) {
            if (n_out == b->max_out) return rt_error_set(RT_ERR_INVALID, "engine cuda: over %d rows of logits", n_out);
            b->h_rows[n_out++] = i;
        }
    }
    CU(cu->memcpy_h2d(b->d_tok, batch->tokens, (size_t)T * 4), "batch");
    CU(cu->memcpy_h2d(b->d_pos, batch->pos, (size_t)T * 4), "batch");
    CU(cu->memcpy_h2d(b->d_slot, b->h_slot, (size_t)T * 4), "batch");
    CU(cu->memcpy_h2d(b->d_tab, b->h_tab, (size_t)T * 4), "batch");
    CU(cu->memcpy_h2d(b->d_tables, b->h_tables, (size_t)n_tab * 4), "batch");
    CU(cu->memcpy_h2d(b->cs, b->h_cs, (size_t)T * R * 4), "batch");
    if (n_out) CU(cu->memcpy_h2d(b->d_rows, b->h_rows, (size_t)n_out * 4), "batch");

    const float scale = 1.0f / sqrtf((float)HD), eps = hp->rms_eps;
    CU(cu->embed_f16(b->embd, b->d_tok, b->x, T, E), "embeddings");
    for (int l = 0; l < hp->n_layer; l++) {
        const cuda_layer_t *L = &b->layers[l];
        const int64_t lo = (int64_t)l * b->layer_elems;
        CU(cu->rmsnorm(b->x, L->attn_norm, b->xn, T, E, eps), "attn_norm");
        CU(cu->f32_to_f16(b->xn, b->h16, (int64_t)T * E), "f16");
        CU(cu->gemm_f16(b->blas, L->wq, b->h16, b->q, QD, T, E), "q");
        CU(cu->gemm_f16(b->blas, L->wk, b->h16, b->k, KVD, T, E), "k");
        CU(cu->gemm_f16(b->blas, L->wv, b->h16, b->v, KVD, T, E), "v");
        if (L->bq) {
            CU(cu->add_bias(b->q, L->bq, T, QD), "q bias");
            CU(cu->add_bias(b->k, L->bk, T, KVD), "k bias");
            CU(cu->add_bias(b->v, L->bv, T, KVD), "v bias");
        }
        if (L->qn) { /* qwen3: RMSNorm of every head before RoPE */
            CU(cu->rmsnorm(b->q, L->qn, b->q, T * hp->n_head, HD, eps), "q norm");
            CU(cu->rmsnorm(b->k, L->kn, b->k, T * hp->n_head_kv, HD, eps), "k norm");
        }
        CU(cu->rope(b->q, T, hp->n_head, HD, R, hp->rope_neox, b->cs), "rope q");
        CU(cu->rope(b->k, T, hp->n_head_kv, HD, R, hp->rope_neox, b->cs), "rope k");
        CU(cu->kv_store(b->k, b->v, b->kc, b->vc, b->d_slot, T, KVD, lo), "kv store");
        CU(cu->attention(b->q, b->kc, b->vc, b->att, b->d_pos, b->d_tab, b->d_tables, T, hp->n_head, hp->n_head_kv, HD,
                         bs, lo, scale),
           "attention");
        CU(cu->f32_to_f16(b->att, b->h16, (int64_t)T * QD), "f16");
        CU(cu->gemm_f16(b->blas, L->wo, b->h16, b->xn, E, T, QD), "attn_output");
        CU(cu->add(b->x, b->xn, (int64_t)T * E), "residual");
        CU(cu->rmsnorm(b->x, L->ffn_norm, b->xn, T, E, eps), "ffn_norm");
        CU(cu->f32_to_f16(b->xn, b->h16, (int64_t)T * E), "f16");
        CU(cu->gemm_f16(b->blas, L->wg, b->h16, b->g, FF, T, E), "ffn_gate");
        CU(cu->gemm_f16(b->blas, L->wu, b->h16, b->u, FF, T, E), "ffn_up");
        CU(cu->swiglu(b->g, b->u, (int64_t)T * FF), "swiglu");
        CU(cu->f32_to_f16(b->g, b->h16, (int64_t)T * FF), "f16");
        CU(cu->gemm_f16(b->blas, L->wd, b->h16, b->xn, E, T, FF), "ffn_down");
        CU(cu->add(b->x, b->xn, (int64_t)T * E), "residual");
    }
    if (n_out == 0) return RT_OK;
    CU(cu->gather_rows(b->x, b->d_rows, b->xn, n_out, E), "head rows");
    CU(cu->rmsnorm(b->xn, b->out_norm, b->xn, n_out, E, eps), "output_norm");
    CU(cu->f32_to_f16(b->xn, b->h16, (int64_t)n_out * E), "f16");
    CU(cu->gemm_f16(b->blas, b->head, b->h16, b->logits, hp->n_vocab, n_out, E), "output");
    CU(cu->memcpy_d2h(logits, b->logits, (size_t)n_out * hp->n_vocab * 4), "logits");
    return RT_OK;
}

static size_t cuda_block_bytes(void *state)
{
    const cuda_backend_t *b = state;
    return 2 * (size_t)b->hp.n_layer * (size_t)b->block_size * (size_t)(b->hp.n_head_kv * b->hp.head_dim) * 2;
}

/* a block's bytes: for each layer its K rows, then its V rows */
static void block_copy(cuda_backend_t *b, int32_t id, void *host, bool to_host)
{
    const size_t elems = (size_t)b->block_size * (size_t)(b->hp.n_head_kv * b->hp.head_dim), rows = elems * 2;
    for (int l = 0; l < b->hp.n_layer; l++) {
        const size_t off = ((size_t)l * (size_t)b->layer_elems + (size_t)id * elems) * 2; /* f16 */
        char *h = (char *)host + (size_t)l * 2 * rows;
        void *kd = (char *)b->kc + off, *vd = (char *)b->vc + off;
        const int e = to_host ? b->cu->memcpy_d2h(h, kd, rows) || b->cu->memcpy_d2h(h + rows, vd, rows)
                              : b->cu->memcpy_h2d(kd, h, rows) || b->cu->memcpy_h2d(vd, h + rows, rows);
        /* the ops table has no way to fail here: a lost device is fatal */
        if (e) {
            RT_LOG_ERROR("cuda: KV block %d copy failed", id);
            abort();
        }
    }
}

static void cuda_block_read(void *state, int32_t id, void *dst) { block_copy(state, id, dst, true); }
static void cuda_block_write(void *state, int32_t id, const void *src) { block_copy(state, id, (void *)src, false); }

const engine_backend_ops_t engine_backend_cuda = {
    .name = "cuda",
    .create = cuda_create,
    .destroy = cuda_destroy,
    .forward = cuda_forward,
    .block_bytes = cuda_block_bytes,
    .block_read = cuda_block_read,
    .block_write = cuda_block_write,
};
