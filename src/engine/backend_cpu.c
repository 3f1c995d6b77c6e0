/*
 * backend_cpu.c - the engine's CPU backend: the model runtime of src/model
 * (weights from the GGUF mapping, paged KV cache in host memory, the batched
 * forward pass on the thread pool), with the engine's numerics: its own
 * batch-invariant attention over the engine KV layout (model.h:
 * MODEL_ATTN_ENGINE) and the packed int8 GEMM for Q4_0/Q4_1/Q8_0 matrices
 * (MODEL_MATMUL_PACKED).
 */
#include <stdlib.h>

#include "rotor/engine.h"

typedef struct {
    model_t *model;
    kv_cache_t *kv;
    model_ctx_t *ctx;
    const engine_ep_t *ep; /* expert parallelism, or NULL (the caller's) */
} cpu_backend_t;

static void cpu_destroy(void *state)
{
    cpu_backend_t *b = state;
    if (!b) return;
    model_ctx_destroy(b->ctx);
    kv_cache_destroy(b->kv);
    model_free(b->model);
    free(b);
}

static rt_status_t cpu_create(const engine_config_t *cfg, void **state, int *n_blocks, int *n_vocab,
                              const tok_vocab_t **vocab, int *n_ctx)
{
    rt_status_t st;
    cpu_backend_t *b = calloc(1, sizeof *b);
    if (!b) return rt_error_set(RT_ERR_NOMEM, "engine cpu: out of memory");
    if ((st = model_load(cfg->model_path, &b->model))) goto err;
    /* expert parallelism: this rank packs (and keeps resident) only its experts */
    const bool ep = cfg->ep && cfg->ep->size > 1;
    if ((st = model_pack_weights_experts(b->model, ep ? cfg->ep->rank : 0, ep ? cfg->ep->size : 1))) goto err;
    const model_hparams_t *hp = model_hparams(b->model);
    int64_t nb = cfg->kv_blocks;
    if (nb <= 0) {
        /* K and V, every layer, one block of f16/f32 values */
        const int64_t elt = cfg->kv_type == RT_TYPE_F32 ? 4 : 2;
        const int64_t per_block = 2 * (int64_t)hp->n_layer * cfg->block_size * hp->n_head_kv * hp->head_dim * elt;
        nb = cfg->kv_bytes / per_block;
    }
    if (nb < 1 || nb > (1 << 24)) {
        st = rt_error_set(RT_ERR_RANGE, "engine cpu: KV pool of %lld blocks (from kv_blocks/kv_bytes) is not usable",
                          (long long)nb);
        goto err;
    }
    if ((st = kv_cache_create_layout(b->model, (int)nb, cfg->block_size, cfg->kv_type, KV_LAYOUT_ENGINE, &b->kv)))
        goto err;
    if ((st = model_ctx_create(b->model, cfg->max_num_batched_tokens, cfg->threads, &b->ctx))) goto err;
    /* a sequence's bits must not depend on chunking, batch company or the
     * prefix cache: one attention order for every token */
    model_ctx_set_attn_order(b->ctx, MODEL_ATTN_ENGINE);
    /* batches go through the int8 GEMM on packed panels (cpu_packed.h) */
    model_ctx_set_matmul(b->ctx, MODEL_MATMUL_PACKED);
    if (cfg->ep && cfg->ep->size > 1) {
        if (hp->n_expert == 0) {
            st = rt_error_set(RT_ERR_INVALID, "roles:ep = %d: expert parallelism needs a mixture-of-experts model "
                              "(%s has no experts)", cfg->ep->size, cfg->model_path);
            goto err;
        }
        b->ep = cfg->ep;
        if (cfg->ep->alltoall) {
            if ((st = model_ctx_set_expert_parallel_dp(b->ctx, cfg->ep->rank, cfg->ep->size, cfg->ep->alltoall,
                                                       cfg->ep->ud)))
                goto err;
        } else {
            model_ctx_set_expert_parallel(b->ctx, cfg->ep->rank, cfg->ep->size, cfg->ep->combine, cfg->ep->ud);
        }
    }
    *n_blocks = (int)nb;
    *n_vocab = hp->n_vocab;
    *vocab = model_vocab(b->model);
    *n_ctx = hp->n_ctx_train;
    *state = b;
    return RT_OK;
err:
    cpu_destroy(b);
    return st;
}

static rt_status_t cpu_forward(void *state, const model_batch_t *batch, float *logits)
{
    cpu_backend_t *b = state;
    if (b->ep && b->ep->alltoall && batch->n_tokens == 0) return model_forward_idle(b->ctx); /* the others' rows */
    if (b->ep && b->ep->step) b->ep->step(b->ep->ud, batch); /* the instance's other ranks run it too */
    return model_forward(b->ctx, b->kv, batch, logits);
}

static size_t cpu_block_bytes(void *state) { return kv_cache_block_bytes(((cpu_backend_t *)state)->kv); }

static void cpu_block_read(void *state, int32_t id, void *dst)
{
    kv_cache_block_read(((cpu_backend_t *)state)->kv, id, dst);
}

static void cpu_block_write(void *state, int32_t id, const void *src)
{
    cpu_backend_t *b = state;
    kv_cache_block_write(b->kv, id, src);
    /* expert parallelism: the instance's other ranks hold the same cache */
    if (b->ep && b->ep->block_write) b->ep->block_write(b->ep->ud, id, src, kv_cache_block_bytes(b->kv));
}

static struct threadpool *cpu_pool(void *state) { return model_ctx_pool(((cpu_backend_t *)state)->ctx); }

const engine_backend_ops_t engine_backend_cpu = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .block_bytes = cpu_block_bytes,
    .block_read = cpu_block_read,
    .block_write = cpu_block_write,
    .pool = cpu_pool,
};
