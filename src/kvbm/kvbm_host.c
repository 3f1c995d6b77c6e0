/*
 * kvbm_host.c - the KV block manager's host tier (kvbm.h): an arena of
 * n_blocks slots, an LRU list over the slots in use (head dropped first),
 * and an open-addressing index (linear probing, load <= 1/2, no
 * tombstones) from sequence hash to slot, placed by xxh3 of the hash with a
 * seed drawn at creation (the hashes come from clients' prompts).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "rotor/bigalloc.h"
#include "rotor/kvbm.h"

typedef struct {
    kvbm_key_t key;
    int64_t prev, next; /* LRU links, -1 at the ends */
    bool used;
} slot_t;

struct kvbm {
    int64_t n, held;
    size_t block_bytes;
    char *arena; /* (n * block_bytes) */
    slot_t *slots;
    int64_t *free_stack, n_free;
    int64_t lru_head, lru_tail;
    int64_t *index; /* (index_cap) slot, -1 empty */
    size_t index_cap;
    uint64_t seed;
    int64_t stored, dropped, hits;
};

static size_t home(const kvbm_t *t, uint64_t h) { return XXH3_64bits_withSeed(&h, sizeof h, t->seed) & (t->index_cap - 1); }

static size_t find(const kvbm_t *t, uint64_t h)
{
    for (size_t i = home(t, h);; i = (i + 1) & (t->index_cap - 1)) {
        if (t->index[i] < 0 || t->slots[t->index[i]].key.seq_hash == h) return i;
    }
}

static void index_del(kvbm_t *t, size_t i)
{
    const size_t mask = t->index_cap - 1;
    t->index[i] = -1;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (t->index[j] < 0) return;
        const size_t k = home(t, t->slots[t->index[j]].key.seq_hash);
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        t->index[i] = t->index[j];
        t->index[j] = -1;
        i = j;
    }
}

static void lru_unlink(kvbm_t *t, int64_t s)
{
    slot_t *x = &t->slots[s];
    if (x->prev >= 0) t->slots[x->prev].next = x->next;
    else t->lru_head = x->next;
    if (x->next >= 0) t->slots[x->next].prev = x->prev;
    else t->lru_tail = x->prev;
    x->prev = x->next = -1;
}

static void lru_append(kvbm_t *t, int64_t s)
{
    slot_t *x = &t->slots[s];
    x->prev = t->lru_tail;
    x->next = -1;
    if (t->lru_tail >= 0) t->slots[t->lru_tail].next = s;
    else t->lru_head = s;
    t->lru_tail = s;
}

rt_status_t kvbm_create(int64_t n_blocks, size_t block_bytes, kvbm_t **out)
{
    if (n_blocks < 2 || n_blocks > ((int64_t)1 << 30) || block_bytes == 0)
        return rt_error_set(RT_ERR_RANGE, "kvbm: a host tier of %lld blocks of %zu bytes (at least 2 blocks)",
                            (long long)n_blocks, block_bytes);
    kvbm_t *t = calloc(1, sizeof *t);
    if (!t) return rt_error_set(RT_ERR_NOMEM, "kvbm: out of memory");
    t->n = n_blocks;
    t->block_bytes = block_bytes;
    t->index_cap = 4;
    while (t->index_cap < 2 * (size_t)n_blocks) t->index_cap *= 2;
    if (getentropy(&t->seed, sizeof t->seed) != 0) t->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)t;
    t->arena = rt_big_alloc((size_t)n_blocks * block_bytes);
    t->slots = calloc((size_t)n_blocks, sizeof *t->slots);
    t->free_stack = malloc((size_t)n_blocks * sizeof *t->free_stack);
    t->index = malloc(t->index_cap * sizeof *t->index);
    if (!t->arena || !t->slots || !t->free_stack || !t->index) {
        kvbm_destroy(t);
        return rt_error_set(RT_ERR_NOMEM, "kvbm: cannot allocate a host tier of %lld x %zu bytes",
                            (long long)n_blocks, block_bytes);
    }
    for (size_t i = 0; i < t->index_cap; i++) t->index[i] = -1;
    for (int64_t s = 0; s < n_blocks; s++) t->free_stack[s] = n_blocks - 1 - s;
    t->n_free = n_blocks;
    t->lru_head = t->lru_tail = -1;
    *out = t;
    return RT_OK;
}

void kvbm_destroy(kvbm_t *t)
{
    if (!t) return;
    if (t->arena) rt_big_free(t->arena, (size_t)t->n * t->block_bytes);
    free(t->slots);
    free(t->free_stack);
    free(t->index);
    free(t);
}

void *kvbm_put(kvbm_t *t, const kvbm_key_t *key, kvbm_key_t *dropped, bool *did_drop)
{
    *did_drop = false;
    size_t i = find(t, key->seq_hash);
    if (t->index[i] >= 0) { /* held: the most recent now */
        lru_unlink(t, t->index[i]);
        lru_append(t, t->index[i]);
        return NULL;
    }
    int64_t s;
    if (t->n_free > 0) {
        s = t->free_stack[--t->n_free];
    } else { /* drop the least recent */
        s = t->lru_head;
        *dropped = t->slots[s].key;
        *did_drop = true;
        lru_unlink(t, s);
        index_del(t, find(t, t->slots[s].key.seq_hash));
        t->held--;
        t->dropped++;
        i = find(t, key->seq_hash); /* the deletion may have moved entries */
    }
    t->slots[s].key = *key;
    t->slots[s].used = true;
    t->index[i] = s;
    lru_append(t, s);
    t->held++;
    t->stored++;
    return t->arena + (size_t)s * t->block_bytes;
}

const void *kvbm_get(kvbm_t *t, uint64_t seq_hash)
{
    const int64_t s = t->index[find(t, seq_hash)];
    if (s < 0) return NULL;
    lru_unlink(t, s);
    lru_append(t, s);
    t->hits++;
    return t->arena + (size_t)s * t->block_bytes;
}

void kvbm_stats(const kvbm_t *t, kvbm_stats_t *out)
{
    *out = (kvbm_stats_t){.capacity = t->n, .held = t->held, .stored = t->stored, .dropped = t->dropped,
                          .hits = t->hits};
}

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) return rt_error_set(RT_ERR_INTERNAL, "kvbm: " __VA_ARGS__);                             \
    } while (0)

rt_status_t kvbm_check(const kvbm_t *t)
{
    int64_t walked = 0, prev = -1;
    for (int64_t s = t->lru_head; s >= 0; prev = s, s = t->slots[s].next) {
        CHECK(walked++ < t->n, "LRU list longer than the arena (a cycle)");
        CHECK(t->slots[s].used, "slot %lld on the LRU list is not in use", (long long)s);
        CHECK(t->slots[s].prev == prev, "slot %lld: prev %lld, walked from %lld", (long long)s,
              (long long)t->slots[s].prev, (long long)prev);
        const size_t i = find(t, t->slots[s].key.seq_hash);
        CHECK(t->index[i] == s, "slot %lld is not where the index finds its hash", (long long)s);
    }
    CHECK(walked == t->held && t->lru_tail == prev, "LRU list: %lld entries, %lld held", (long long)walked,
          (long long)t->held);
    CHECK(t->held + t->n_free == t->n, "%lld held + %lld free != %lld", (long long)t->held, (long long)t->n_free,
          (long long)t->n);
    int64_t indexed = 0;
    for (size_t i = 0; i < t->index_cap; i++) indexed += t->index[i] >= 0;
    CHECK(indexed == t->held, "%lld indexed, %lld held", (long long)indexed, (long long)t->held);
    return RT_OK;
}
