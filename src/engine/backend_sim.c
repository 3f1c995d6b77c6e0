/*
 * backend_sim.c - the engine's sim backend: no weights are used and nothing
 * is computed; each forward pass sleeps for the time the step would take on
 * the configured GPU (sim_model.h) and writes logits that make the next
 * token a fixed function of the last token and its position. Everything
 * above the backend is real - scheduling, the paged KV block pool, prefix
 * caching, KV events, sampling, the job, the router - so those can be run
 * with many simulated GPUs on a small machine.
 *
 * The GGUF still gives the vocabulary, the tokenizer, the context length and
 * (sim:shape = file) the model shape; sim:shape = llama3-8b or qwen2.5-7b
 * times a larger model with the file's tokenizer. The KV pool is the GPU's
 * memory (sim:gpu_memory_utilization of it, less the weights) unless
 * engine:kv_cache_blocks sets it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rotor/engine.h"
#include "rotor/sim_model.h"

/* a step's logits row: this far above the rest, so that any sampling picks
 * the intended token (e^-30 x 10^6 tokens is still ~1e-7) */
#define SIM_LOGIT 30.0f
#define SIM_MAX_BLOCKS (1 << 18) /* 4M tokens of 16: a bounded pool for tiny models on big GPUs */

typedef struct {
    model_t *model;
    sim_shape_t shape;
    sim_cost_t cost;
    int n_vocab;
    int32_t eos;
    int32_t *ctx; /* (max_num_batched_tokens) per batch sequence: context after the step */
    double last_step_s;
    double block_kv_bytes; /* one block's KV bytes in the modelled model */
    double link_gbps;      /* a hand-off's link */
} sim_backend_t;

static void sim_destroy(void *state)
{
    sim_backend_t *b = state;
    if (!b) return;
    model_free(b->model);
    free(b->ctx);
    free(b);
}

static rt_status_t sim_create(const engine_config_t *cfg, void **state, int *n_blocks, int *n_vocab,
                              const tok_vocab_t **vocab, int *n_ctx)
{
    rt_status_t st;
    const sim_gpu_t *gpu = sim_gpu_find(cfg->sim.gpu);
    if (!gpu) return rt_error_set(RT_ERR_INVALID, "sim:gpu: unknown GPU '%s' (%s)", cfg->sim.gpu, sim_gpu_names());
    if (cfg->ep && cfg->ep->size > 1)
        return rt_error_set(RT_ERR_UNSUPPORTED, "engine sim: roles:ep > 1 is not modelled (cpu backend only)");
    sim_backend_t *b = calloc(1, sizeof *b);
    if (!b) return rt_error_set(RT_ERR_NOMEM, "engine sim: out of memory");
    b->ctx = malloc(sizeof *b->ctx * (size_t)(cfg->max_num_batched_tokens > 0 ? cfg->max_num_batched_tokens : 1));
    if (!b->ctx) {
        st = rt_error_set(RT_ERR_NOMEM, "engine sim: out of memory");
        goto err;
    }
    if ((st = model_load(cfg->model_path, &b->model))) goto err;
    const model_hparams_t *hp = model_hparams(b->model);
    if (strcmp(cfg->sim.shape, "file") == 0) b->shape = sim_shape_of(hp);
    else if ((st = sim_shape_preset(cfg->sim.shape, &b->shape))) goto err;
    b->cost = (sim_cost_t){.gpu = *gpu,
                           .mfu = cfg->sim.mfu,
                           .mbu = cfg->sim.mbu,
                           .overhead_s = cfg->sim.overhead_s,
                           .weight_bytes = cfg->sim.weight_bytes,
                           .kv_bytes = cfg->sim.kv_bytes};
    b->block_kv_bytes = sim_kv_bytes_per_token(&b->shape, &b->cost) * cfg->block_size;
    b->link_gbps = cfg->sim.link_gbps > 0 ? cfg->sim.link_gbps : 50;
    if (cfg->sim.tflops > 0) b->cost.gpu.tflops = cfg->sim.tflops;
    if (cfg->sim.hbm_gbps > 0) b->cost.gpu.hbm_gbps = cfg->sim.hbm_gbps;
    int64_t nb = cfg->kv_blocks;
    if (nb <= 0) {
        const double room = b->cost.gpu.hbm_gib * 1073741824.0 * cfg->sim.gpu_memory_utilization -
                            sim_params_total(&b->shape) * b->cost.weight_bytes;
        nb = (int64_t)(room / (sim_kv_bytes_per_token(&b->shape, &b->cost) * cfg->block_size));
        if (nb > SIM_MAX_BLOCKS) nb = SIM_MAX_BLOCKS;
    }
    if (nb < 1 || nb > SIM_MAX_BLOCKS) {
        st = rt_error_set(RT_ERR_RANGE,
                          "engine sim: a KV pool of %lld blocks: the model's %.1f GB of weights leave no room on the "
                          "%s (or engine:kv_cache_blocks is above %d)",
                          (long long)nb, sim_params_total(&b->shape) * b->cost.weight_bytes / 1e9, gpu->name,
                          SIM_MAX_BLOCKS);
        goto err;
    }
    b->n_vocab = hp->n_vocab;
    b->eos = tok_eos(model_vocab(b->model));
    *n_blocks = (int)nb;
    *n_vocab = hp->n_vocab;
    *vocab = model_vocab(b->model);
    *n_ctx = hp->n_ctx_train;
    *state = b;
    return RT_OK;
err:
    sim_destroy(b);
    return st;
}

/* the token after `token` at position pos: middle of the vocabulary (clear
 * of the special tokens at either end), never end-of-sequence */
static int32_t sim_next(const sim_backend_t *b, int32_t token, int32_t pos)
{
    const uint32_t lo = (uint32_t)b->n_vocab / 4, span = (uint32_t)b->n_vocab / 2 > 0 ? (uint32_t)b->n_vocab / 2 : 1;
    const uint32_t h = (uint32_t)token * 2654435761u ^ (uint32_t)pos * 40503u;
    int32_t t = (int32_t)(lo + (h >> 7) % span);
    if (t == b->eos) t = t + 1 < b->n_vocab ? t + 1 : 0;
    return t;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static rt_status_t sim_forward(void *state, const model_batch_t *batch, float *logits)
{
    sim_backend_t *b = state;
    const double t0 = mono_now();
    double attended = 0, kv_tokens = 0;
    int64_t n_logits = 0;
    for (int s = 0; s < batch->n_seqs; s++) b->ctx[s] = 0;
    for (int i = 0; i < batch->n_tokens; i++) {
        attended += batch->pos[i] + 1;
        if (batch->pos[i] + 1 > b->ctx[batch->seq[i]]) b->ctx[batch->seq[i]] = batch->pos[i] + 1;
        if (!batch->logits[i]) continue;
        float *row = logits + (size_t)n_logits * (size_t)b->n_vocab;
        memset(row, 0, sizeof *row * (size_t)b->n_vocab);
        row[sim_next(b, batch->tokens[i], batch->pos[i])] = SIM_LOGIT;
        n_logits++;
    }
    for (int s = 0; s < batch->n_seqs; s++) kv_tokens += b->ctx[s];
    b->last_step_s = sim_step_seconds(&b->shape, &b->cost, batch->n_tokens, n_logits, attended, kv_tokens);
    /* sleep to the modelled end of the step (the work above counts in it) */
    const double end = t0 + b->last_step_s;
    struct timespec ts = {.tv_sec = (time_t)end, .tv_nsec = (long)((end - (double)(time_t)end) * 1e9)};
    if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return RT_OK;
}

/* a hand-off of n blocks: their modelled KV bytes over the link */
static double sim_kv_transfer_s(void *state, size_t n_blocks)
{
    const sim_backend_t *b = state;
    return (double)n_blocks * b->block_kv_bytes / (b->link_gbps * 1e9);
}

const engine_backend_ops_t engine_backend_sim = {
    .name = "sim",
    .create = sim_create,
    .destroy = sim_destroy,
    .forward = sim_forward,
    .kv_virtual = true, /* disaggregation's hand-offs carry its blocks as bookkeeping */
    .kv_transfer_s = sim_kv_transfer_s,
};
