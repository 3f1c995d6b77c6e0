/*
 * kv_cache.c - paged KV storage: per layer, n_blocks blocks of block_size
 * token slots of kv_dim K (and V) values, F16 or F32, in one of two
 * layouts (model.h: kv_layout_t).
 */
#include <stdlib.h>
#include <string.h>

#include "rotor/bigalloc.h"

#include "model/model_impl.h"
#include "rotor/cpu_ops.h"

rt_status_t kv_cache_create(const model_t *m, int n_blocks, int block_size, rt_type_t kv_type,
                            kv_cache_t **out)
{
    return kv_cache_create_layout(m, n_blocks, block_size, kv_type, KV_LAYOUT_LLAMACPP, out);
}

rt_status_t kv_cache_create_layout(const model_t *m, int n_blocks, int block_size, rt_type_t kv_type,
                                   kv_layout_t layout, kv_cache_t **out)
{
    if (n_blocks < 1 || block_size < 1 || block_size > 4096)
        return rt_error_set(RT_ERR_RANGE, "kv cache: %d blocks of %d tokens is not a valid size", n_blocks,
                            block_size);
    if (layout == KV_LAYOUT_ENGINE && block_size % 16 != 0)
        return rt_error_set(RT_ERR_RANGE, "kv cache: the engine's block size must be a multiple of 16, not %d",
                            block_size);
    if (layout == KV_LAYOUT_ENGINE && model_hparams(m)->head_dim > CPU_ATTN_ENGINE_MAX_HD)
        return rt_error_set(RT_ERR_UNSUPPORTED, "kv cache: head_dim %d above the engine attention's %d",
                            model_hparams(m)->head_dim, CPU_ATTN_ENGINE_MAX_HD);
    if (kv_type != RT_TYPE_F16 && kv_type != RT_TYPE_F32)
        return rt_error_set(RT_ERR_UNSUPPORTED, "kv cache: type %s not supported (f16, f32)", rt_type_name(kv_type));
    kv_cache_t *kv = calloc(1, sizeof *kv);
    if (!kv) return rt_error_set(RT_ERR_NOMEM, "kv cache: out of memory");
    const model_hparams_t *hp = model_hparams(m);
    kv->n_layer = hp->n_layer;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->layout = layout;
    kv->kv_dim = hp->n_head_kv * hp->head_dim;
    kv->type = kv_type;
    kv->elt = kv_type == RT_TYPE_F16 ? 2 : 4;
    size_t n = (size_t)kv->n_layer * (size_t)n_blocks * (size_t)block_size * (size_t)kv->kv_dim * kv->elt;
    kv->bytes = n;
    kv->k = rt_big_alloc(n);
    kv->v = rt_big_alloc(n);
    if (!kv->k || !kv->v) {
        kv_cache_destroy(kv);
        return rt_error_set(RT_ERR_NOMEM, "kv cache: cannot allocate 2 x %zu bytes", n);
    }
    *out = kv;
    return RT_OK;
}

void kv_cache_destroy(kv_cache_t *kv)
{
    if (!kv) return;
    rt_big_free(kv->k, kv->bytes);
    rt_big_free(kv->v, kv->bytes);
    free(kv);
}

int kv_cache_block_size(const kv_cache_t *kv) { return kv->block_size; }

/* a block is contiguous within each layer in both layouts: (n_layer, n_blocks, ...) */
static size_t block_chunk(const kv_cache_t *kv) { return (size_t)kv->block_size * (size_t)kv->kv_dim * kv->elt; }

size_t kv_cache_block_bytes(const kv_cache_t *kv) { return 2 * (size_t)kv->n_layer * block_chunk(kv); }

void kv_cache_block_read(const kv_cache_t *kv, int id, void *dst)
{
    const size_t c = block_chunk(kv);
    char *d = dst;
    for (int l = 0; l < kv->n_layer; l++, d += 2 * c) {
        const size_t off = ((size_t)l * (size_t)kv->n_blocks + (size_t)id) * c;
        memcpy(d, (const char *)kv->k + off, c);
        memcpy(d + c, (const char *)kv->v + off, c);
    }
}

void kv_cache_block_write(kv_cache_t *kv, int id, const void *src)
{
    const size_t c = block_chunk(kv);
    const char *s = src;
    for (int l = 0; l < kv->n_layer; l++, s += 2 * c) {
        const size_t off = ((size_t)l * (size_t)kv->n_blocks + (size_t)id) * c;
        memcpy((char *)kv->k + off, s, c);
        memcpy((char *)kv->v + off, s + c, c);
    }
}
int kv_cache_n_blocks(const kv_cache_t *kv) { return kv->n_blocks; }
size_t kv_cache_bytes(const kv_cache_t *kv)
{
    return 2 * (size_t)kv->n_layer * (size_t)kv->n_blocks * (size_t)kv->block_size * (size_t)kv->kv_dim * kv->elt;
}
