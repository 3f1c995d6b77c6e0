/*
 * backend_cuda.c - the engine's CUDA backend (engine:backend = cuda): dense
 * Llama-family models (llama, qwen2, qwen3, mistral) on one GPU through
 * the kernels of librotor_cuda.so (cuda_kernels.h, loaded at run time).
 *
 * Weights: every matrix is dequantized on the host and kept on the device
 * in f16 (n_params x 2 bytes: SmolLM2-135M 270 MB, an 8B model 16 GB),
 * the query, key and value projections stacked into one matrix and the
 * gate and up projections into another, so a layer is four matmuls:
 * cuBLAS GemmEx, f16 inputs with f32 accumulation and f32 outputs. The
 * kernels between them are fused so a layer is nine launches: RMSNorm
 * (with the residual add) writes the f16 matmul input, one kernel norms
 * (Qwen3), RoPEs and caches the keys, attention writes f16, SwiGLU reads
 * the gate/up output and writes f16. The KV cache is f16 on the
 * device, (n_layer, n_blocks, block_size, kv_dim) for K and for V, sized as
 * vLLM sizes it (engine:gpu_memory_utilization of the GPU's memory, less the
 * weights and scratch, unless engine:kv_cache_blocks says), and
 * attention reads it through each sequence's block table (paged). RoPE
 * tables come from the host's cpu_rope_table, so both layouts and Llama-3
 * frequency factors mean what they mean on the CPU. Sampling stays on the
 * host: only the rows that want logits are copied back.
 *
 * A step's inputs (tokens, positions, KV slots, block tables, RoPE's
 * cos/sin, the rows that want logits) are laid out in one page-locked host
 * buffer and go to the device in one copy. Steps of up to
 * engine:cuda_graph_max_tokens tokens run as CUDA graphs: the second time
 * a batch shape (tokens, logits rows) is seen its kernels and matmuls are
 * recorded once, and from then on a step is that copy, one graph launch
 * and the copy of the logits back. A graph holds pointers, not values, so
 * where each input sits in the buffer depends on the shape alone.
 *
 * Not yet: quantized weights kept quantized (dequantizing to f16 costs
 * memory, not accuracy), mixture-of-experts models, tensor parallelism,
 * overlapping host preparation with the GPU. Each rank takes
 * the GPU of its node-local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID)
 * modulo the devices it sees, or engine:cuda_device.
 *
 * Ownership: the backend owns its device buffers, page-locked staging,
 * graphs, cuBLAS handle and model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/cuda_load.h"
#include "rotor/engine.h"
#include "rotor/log.h"
#include "rotor/threadpool.h"

typedef struct {
    void *wqkv, *wo, *wgu, *wd;                 /* f16 matrices: q, k, v one after the other; gate then up */
    float *attn_norm, *ffn_norm, *bqkv, *qn, *kn; /* f32 vectors, NULL if none */
} cuda_layer_t;

/* a batch shape's graph: recorded the second time the shape is seen */
typedef struct {
    int n_tok, n_out;
    bool failed; /* recording failed once: this shape runs eagerly */
    void *graph; /* NULL until recorded */
} cuda_graph_t;
#define CUDA_GRAPHS 256
#define CUDA_POOL_THREADS 8

/* where a step's inputs sit in the staging buffer (host or device): a
 * function of the shape alone (n_tok, n_out), as graphs need */
typedef struct {
    int32_t *tok, *pos, *slot, *tab; /* (n_tok) each */
    float *cs;                       /* (n_tok, rope_dim) */
    int32_t *rows;                   /* (n_out) */
    int32_t *tables;                 /* the block tables, flattened, last */
} cuda_inputs_t;

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
    float *x, *xn, *qkv, *gu, *logits;
    void *h16;
    /* a step's inputs: page-locked on the host, mirrored on the device */
    int32_t *h_in, *d_in;
    size_t in_words;
    int32_t *h_seq_off;
    int gemv_max_tokens; /* matmuls of up to this many tokens: gemv_f16, not cuBLAS */
    /* graphs */
    int graph_max_tokens;
    cuda_graph_t graphs[CUDA_GRAPHS];
    int n_graphs, n_recorded;
    threadpool_t *pool; /* host threads for the engine's sampling */
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

/* matrices of the same width, dequantized and converted to f16 on the
 * host, stacked (the rows of the first, then the second's, ...) into one
 * device matrix */
static rt_status_t upload_stacked(cuda_backend_t *b, const model_matrix_t *ms, int n_ms, void **out, const char *what)
{
    *out = NULL;
    int64_t rows = 0;
    for (int i = 0; i < n_ms; i++) {
        if (!ms[i].data || ms[i].ne0 != ms[0].ne0)
            return rt_error_set(RT_ERR_FORMAT, "cuda: %s: a matrix missing or of another width", what);
        rows += ms[i].ne1;
    }
    const size_t n = (size_t)ms[0].ne0 * (size_t)rows;
    uint16_t *h = malloc(n * sizeof *h);
    float *row = malloc((size_t)ms[0].ne0 * sizeof *row);
    rt_status_t st = h && row ? RT_OK : rt_error_set(RT_ERR_NOMEM, "cuda: out of host memory for %s", what);
    uint16_t *dst = h;
    for (int i = 0; !st && i < n_ms; i++) {
        const model_matrix_t *m = &ms[i];
        for (int64_t r = 0; !st && r < m->ne1; r++, dst += m->ne0) {
            st = cpu_dequantize_row(m->type, (const char *)m->data + (size_t)r * m->row_bytes, row, m->ne0);
            if (!st) cpu_f32_to_f16_row(row, dst, (int)m->ne0);
        }
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

/* one matrix; none (NULL data) is no upload */
static rt_status_t upload_matrix(cuda_backend_t *b, const model_matrix_t *m, void **out, const char *what)
{
    *out = NULL;
    return m->data ? upload_stacked(b, m, 1, out, what) : RT_OK;
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
                void *ptrs[] = {L->wqkv, L->wo, L->wgu, L->wd, L->attn_norm, L->ffn_norm, L->bqkv, L->qn, L->kn};
                for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
                    if (ptrs[i]) b->cu->free(ptrs[i]);
            }
        void *ptrs[] = {b->embd, b->head != b->embd ? b->head : NULL, b->out_norm, b->kc, b->vc, b->x, b->xn,
                        b->qkv, b->gu, b->logits, b->h16, b->d_in};
        for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
            if (ptrs[i]) b->cu->free(ptrs[i]);
        for (int i = 0; i < b->n_graphs; i++) b->cu->graph_destroy(b->graphs[i].graph);
        if (b->h_in) b->cu->host_free(b->h_in);
        if (b->blas) b->cu->blas_destroy(b->blas);
    }
    threadpool_destroy(b->pool);
    free(b->layers);
    free(b->h_seq_off);
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
        const model_matrix_t qkv[] = {mq, mk, mv}, gu[] = {mg, mu};
        if (!st) st = upload_stacked(b, qkv, 3, &L->wqkv, "attn_q/k/v");
        if (!st) st = upload_matrix(b, &mo, &L->wo, "attn_output");
        if (!st) st = upload_stacked(b, gu, 2, &L->wgu, "ffn_gate/up");
        if (!st) st = upload_matrix(b, &md, &L->wd, "ffn_down");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_ATTN_NORM), (size_t)E, &L->attn_norm, "attn_norm");
        if (!st) st = upload_vector(b, model_layer_vector(m, l, MODEL_VEC_FFN_NORM), (size_t)E, &L->ffn_norm, "ffn_norm");
        const float *bq = model_layer_vector(m, l, MODEL_VEC_BQ), *bk = model_layer_vector(m, l, MODEL_VEC_BK),
                    *bv = model_layer_vector(m, l, MODEL_VEC_BV);
        if (!st && (bq || bk || bv)) { /* the biases stacked as the matrices are, zeros where one is missing */
            float *bias = calloc((size_t)(QD + 2 * KVD), sizeof *bias);
            if (!bias) st = rt_error_set(RT_ERR_NOMEM, "cuda: out of host memory");
            if (bias) {
                if (bq) memcpy(bias, bq, (size_t)QD * sizeof *bias);
                if (bk) memcpy(bias + QD, bk, (size_t)KVD * sizeof *bias);
                if (bv) memcpy(bias + QD + KVD, bv, (size_t)KVD * sizeof *bias);
                st = upload_vector(b, bias, (size_t)(QD + 2 * KVD), &L->bqkv, "attn_q/k/v.bias");
                free(bias);
            }
        }
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
    const int wide = FF > QD ? (FF > E ? FF : E) : (QD > E ? QD : E); /* the widest matmul input */
    b->max_tokens = (int)T;
    /* a decode's row and its drafts', and the prompt logprobs' */
    b->max_out = cfg->max_num_seqs * (1 + cfg->spec.tokens) + ENGINE_PROMPT_LOGPROB_ROWS;
    const int64_t per_seq = ((cfg->max_model_len > 0 ? cfg->max_model_len : hp->n_ctx_train) + cfg->block_size - 1) /
                                cfg->block_size + 1;
    b->max_tables = (int64_t)cfg->max_num_seqs * per_seq;
    b->in_words = T * (4 + (size_t)hp->rope_dim) + (size_t)b->max_out + (size_t)b->max_tables;
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } bufs[] = {
        {(void **)&b->x, T * E * 4, "activations"},  {(void **)&b->xn, T * E * 4, "activations"},
        {(void **)&b->qkv, T * (size_t)(QD + 2 * KVD) * 4, "queries, keys, values"},
        {(void **)&b->gu, T * (size_t)FF * 2 * 4, "ffn"},
        {(void **)&b->logits, (size_t)b->max_out * hp->n_vocab * 4, "logits"},
        {&b->h16, T * (size_t)wide * 2, "f16 activations"},
        {(void **)&b->d_in, b->in_words * 4, "a step's inputs"},
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
    const int e_host = cu->host_alloc((void **)&b->h_in, b->in_words * 4);
    if (e_host) {
        b->h_in = NULL;
        return rt_error_set(RT_ERR_NOMEM, "cuda: page-locked host memory for a step's inputs (%zu bytes): %s",
                            b->in_words * 4, cu->error_string(e_host));
    }
    b->h_seq_off = malloc((size_t)b->max_out * 4);
    if (!b->h_seq_off) return rt_error_set(RT_ERR_NOMEM, "cuda: out of host memory");
    b->graph_max_tokens = cfg->cuda_graph_max_tokens;
    /* threads for sampling a step's rows: engine:threads, else the cores up
     * to CUDA_POOL_THREADS (ranks of a node share its cores) */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > CUDA_POOL_THREADS) cores = CUDA_POOL_THREADS;
    const int n_threads = cfg->threads > 0 ? cfg->threads : cores > 0 ? (int)cores : 1;
    if (n_threads > 1 && (st = threadpool_create(n_threads, &b->pool))) return st;
    b->gemv_max_tokens = cfg->cuda_gemv_max_tokens < RT_CUDA_GEMV_MAX_TOKENS ? cfg->cuda_gemv_max_tokens
                                                                            : RT_CUDA_GEMV_MAX_TOKENS;
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

static cuda_inputs_t inputs_at(int32_t *base, int n_tok, int n_out, int rope_dim)
{
    const size_t T = (size_t)n_tok;
    cuda_inputs_t in = {.tok = base, .pos = base + T, .slot = base + 2 * T, .tab = base + 3 * T,
                        .cs = (float *)(base + 4 * T)};
    in.rows = base + 4 * T + T * (size_t)rope_dim;
    in.tables = in.rows + n_out;
    return in;
}

/* y (n_tok, n_out) f32 = x (n_tok, k) f16 w^T: rotor's kernel for a few
 * tokens, cuBLAS otherwise */
static int matmul(const cuda_backend_t *b, const void *w, const void *x, float *y, int n_out, int n_tok, int k)
{
    if (n_tok <= b->gemv_max_tokens && k % 8 == 0) return b->cu->gemv_f16(w, x, y, n_out, n_tok, k);
    return b->cu->gemm_f16(b->blas, w, x, y, n_out, n_tok, k);
}

/* the step's kernels and matmuls on the inputs at d (device), logits rows
 * into b->logits: run now, or recorded into a graph */
static rt_status_t cuda_issue(cuda_backend_t *b, const cuda_inputs_t *d, int T, int n_out)
{
    const rt_cuda_api_t *cu = b->cu;
    const model_hparams_t *hp = &b->hp;
    const int E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD;
    const int KVD = hp->n_head_kv * HD, FF = hp->n_ff, bs = b->block_size, R = hp->rope_dim;
    const float scale = 1.0f / sqrtf((float)HD), eps = hp->rms_eps;
    const int QKV = QD + 2 * KVD;
    CU(cu->embed_f16(b->embd, d->tok, b->x, T, E), "embeddings");
    for (int l = 0; l < hp->n_layer; l++) {
        const cuda_layer_t *L = &b->layers[l];
        const int64_t lo = (int64_t)l * b->layer_elems;
        /* the residual stream x gets the last layer's ffn output (xn) here */
        CU(cu->rmsnorm_f16(b->x, l ? b->xn : NULL, L->attn_norm, b->h16, T, E, eps), "attn_norm");
        CU(matmul(b, L->wqkv, b->h16, b->qkv, QKV, T, E), "q/k/v");
        if (L->bqkv) CU(cu->add_bias(b->qkv, L->bqkv, T, QKV), "q/k/v bias");
        CU(cu->qkv_rope_store(b->qkv, L->qn, L->kn, eps, d->cs, b->kc, b->vc, d->slot, T, hp->n_head, hp->n_head_kv, HD,
                              R, hp->rope_neox, lo),
           "rope and kv store");
        CU(cu->attention(b->qkv, QKV, b->kc, b->vc, b->h16, d->pos, d->tab, d->tables, T, hp->n_head, hp->n_head_kv, HD,
                         bs, lo, scale),
           "attention");
        CU(matmul(b, L->wo, b->h16, b->xn, E, T, QD), "attn_output");
        CU(cu->rmsnorm_f16(b->x, b->xn, L->ffn_norm, b->h16, T, E, eps), "ffn_norm");
        CU(matmul(b, L->wgu, b->h16, b->gu, 2 * FF, T, E), "ffn_gate/up");
        CU(cu->swiglu_f16(b->gu, b->h16, T, FF), "swiglu");
        CU(matmul(b, L->wd, b->h16, b->xn, E, T, FF), "ffn_down");
    }
    CU(cu->add(b->x, b->xn, (int64_t)T * E), "residual");
    if (n_out == 0) return RT_OK;
    CU(cu->gather_rows(b->x, d->rows, b->xn, n_out, E), "head rows");
    CU(cu->rmsnorm_f16(b->xn, NULL, b->out_norm, b->h16, n_out, E, eps), "output_norm");
    CU(matmul(b, b->head, b->h16, b->logits, hp->n_vocab, n_out, E), "output");
    return RT_OK;
}

/* the graph entry of a shape, added if new (NULL: graphs off for it) */
static cuda_graph_t *graph_for(cuda_backend_t *b, int T, int n_out)
{
    if (T > b->graph_max_tokens) return NULL;
    for (int i = 0; i < b->n_graphs; i++)
        if (b->graphs[i].n_tok == T && b->graphs[i].n_out == n_out) return &b->graphs[i];
    if (b->n_graphs == CUDA_GRAPHS) return NULL;
    cuda_graph_t *g = &b->graphs[b->n_graphs++];
    *g = (cuda_graph_t){.n_tok = T, .n_out = n_out};
    return NULL; /* the first time: eagerly */
}

/* run the step as its shape's graph, recording it first if need be; false
 * when it must run eagerly */
static bool run_graph(cuda_backend_t *b, cuda_graph_t *g, const cuda_inputs_t *d)
{
    const rt_cuda_api_t *cu = b->cu;
    if (!g->graph) {
        if (g->failed || cu->graph_begin()) {
            g->failed = true;
            return false;
        }
        const rt_status_t st = cuda_issue(b, d, g->n_tok, g->n_out);
        void *graph = NULL;
        const int e = cu->graph_end(&graph);
        if (st || e || !graph) {
            RT_LOG_WARN("cuda: no graph for steps of %d tokens (%s): they run eagerly", g->n_tok,
                        st ? rt_error_msg() : cu->error_string(e));
            if (graph) cu->graph_destroy(graph);
            g->failed = true;
            return false;
        }
        g->graph = graph;
        if (b->n_recorded++ == 0)
            RT_LOG_INFO("cuda: steps of up to %d tokens run as CUDA graphs (the first: %d tokens, %d logits rows)",
                        b->graph_max_tokens, g->n_tok, g->n_out);
    }
    if (cu->graph_launch(g->graph)) {
        g->failed = true;
        return false;
    }
    return true;
}

static rt_status_t cuda_forward(void *state, const model_batch_t *batch, float *logits)
{
    cuda_backend_t *b = state;
    const rt_cuda_api_t *cu = b->cu;
    const model_hparams_t *hp = &b->hp;
    const int T = batch->n_tokens, bs = b->block_size, R = hp->rope_dim;
    if (T <= 0) return RT_OK;
    if (T > b->max_tokens) return rt_error_set(RT_ERR_INVALID, "engine cuda: a batch of %d tokens", T);
    if (batch->n_seqs > b->max_out) return rt_error_set(RT_ERR_INVALID, "engine cuda: %d sequences", batch->n_seqs);
    int n_out = 0;
    for (int i = 0; i < T; i++) n_out += batch->logits[i] != 0;
    if (n_out > b->max_out) return rt_error_set(RT_ERR_INVALID, "engine cuda: over %d rows of logits", b->max_out);
    /* the inputs, laid out for this shape: block tables flattened, each
     * token's KV slot and table, RoPE's cos/sin, the rows that want logits */
    const cuda_inputs_t h = inputs_at(b->h_in, T, n_out, R), d = inputs_at(b->d_in, T, n_out, R);
    int64_t n_tab = 0;
    for (int s = 0; s < batch->n_seqs; s++) {
        const kv_block_table_t *t = &batch->seq_tables[s];
        if (n_tab + t->n_blocks > b->max_tables)
            return rt_error_set(RT_ERR_INVALID, "engine cuda: block tables over %lld entries", (long long)b->max_tables);
        memcpy(h.tables + n_tab, t->blocks, (size_t)t->n_blocks * sizeof *t->blocks);
        b->h_seq_off[s] = (int32_t)n_tab;
        n_tab += t->n_blocks;
    }
    memcpy(h.tok, batch->tokens, (size_t)T * sizeof *h.tok);
    memcpy(h.pos, batch->pos, (size_t)T * sizeof *h.pos);
    for (int i = 0, o = 0; i < T; i++) {
        const int s = batch->seq[i], p = batch->pos[i];
        if (s < 0 || s >= batch->n_seqs || p < 0) return rt_error_set(RT_ERR_INVALID, "engine cuda: a bad batch row");
        const kv_block_table_t *t = &batch->seq_tables[s];
        if (p / bs >= t->n_blocks) return rt_error_set(RT_ERR_INVALID, "engine cuda: position %d past its block table", p);
        h.slot[i] = t->blocks[p / bs] * bs + p % bs;
        h.tab[i] = b->h_seq_off[s];
        cpu_rope_table(p, R, hp->rope_base, hp->rope_freq_scale, model_rope_freq_factors(b->model), h.cs + (size_t)i * R);
        if (batch->logits[i]) h.rows[o++] = i;
    }
    const size_t words = (size_t)(h.tables - b->h_in) + (size_t)n_tab;
    CU(cu->memcpy_h2d(b->d_in, b->h_in, words * sizeof *b->h_in), "a step's inputs");
    cuda_graph_t *g = graph_for(b, T, n_out);
    if (!g || !run_graph(b, g, &d)) {
        const rt_status_t st = cuda_issue(b, &d, T, n_out);
        if (st) return st;
    }
    if (n_out) CU(cu->memcpy_d2h(logits, b->logits, (size_t)n_out * hp->n_vocab * 4), "logits");
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

static threadpool_t *cuda_pool(void *state) { return ((cuda_backend_t *)state)->pool; }

const engine_backend_ops_t engine_backend_cuda = {
    .name = "cuda",
    .create = cuda_create,
    .destroy = cuda_destroy,
    .forward = cuda_forward,
    .block_bytes = cuda_block_bytes,
    .block_read = cuda_block_read,
    .block_write = cuda_block_write,
    .pool = cuda_pool,
};
