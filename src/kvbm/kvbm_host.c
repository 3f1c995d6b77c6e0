/*
 * kvbm_host.c - the KV block manager's host tier (kvbm.h): the slot map
 * (kvbm_slots.h) over an arena of n_blocks blocks in host memory.
 */
#include <stdlib.h>

#include "kvbm/kvbm_slots.h"
#include "rotor/bigalloc.h"
#include "rotor/kvbm.h"

struct kvbm {
    kvs_map_t map;
    size_t block_bytes;
    char *arena; /* (map.n * block_bytes) */
};

rt_status_t kvbm_create(int64_t n_blocks, size_t block_bytes, kvbm_t **out)
{
    if (block_bytes == 0) return rt_error_set(RT_ERR_RANGE, "kvbm: blocks of 0 bytes");
    kvbm_t *t = calloc(1, sizeof *t);
    if (!t) return rt_error_set(RT_ERR_NOMEM, "kvbm: out of memory");
    rt_status_t st = kvs_init(&t->map, n_blocks);
    if (st) {
        free(t);
        return st;
    }
    t->block_bytes = block_bytes;
    t->arena = rt_big_alloc((size_t)n_blocks * block_bytes);
    if (!t->arena) {
        kvbm_destroy(t);
        return rt_error_set(RT_ERR_NOMEM, "kvbm: cannot allocate a host tier of %lld x %zu bytes",
                            (long long)n_blocks, block_bytes);
    }
    *out = t;
    return RT_OK;
}

void kvbm_destroy(kvbm_t *t)
{
    if (!t) return;
    if (t->arena) rt_big_free(t->arena, (size_t)t->map.n * t->block_bytes);
    kvs_free(&t->map);
    free(t);
}

void *kvbm_put(kvbm_t *t, const kvbm_key_t *key, kvbm_key_t *dropped, bool *did_drop)
{
    const int64_t s = kvs_put(&t->map, key, dropped, did_drop);
    return s < 0 ? NULL : t->arena + (size_t)s * t->block_bytes;
}

const void *kvbm_get(kvbm_t *t, uint64_t seq_hash)
{
    const int64_t s = kvs_get(&t->map, seq_hash);
    return s < 0 ? NULL : t->arena + (size_t)s * t->block_bytes;
}

void kvbm_stats(const kvbm_t *t, kvbm_stats_t *out) { kvs_stats(&t->map, out); }

rt_status_t kvbm_check(const kvbm_t *t) { return kvs_check(&t->map); }
