/*
 * block_pool.c - the G1 KV block pool: refcounted blocks, a prefix index
 * keyed by sequence hash, an LRU list of evictable cached blocks, and a
 * bounded ring of KV events. See rotor/block_pool.h for the contract.
 *
 * Layout: one bp_block_t per block id. The free list is a stack of ids; the
 * LRU list is doubly linked through the blocks (head = least recently used,
 * evicted first; tail = most recent); the prefix index is a chained hash
 * table (bucket heads + a next link per block). Everything is sized at
 * create, so no call after it allocates.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "rotor/block_pool.h"

enum { ST_FREE = 0, ST_USED = 1, ST_CACHED = 2 };

typedef struct {
    uint64_t block_hash;  /* valid when hashed */
    uint64_t seq_hash;    /* valid when hashed: the prefix index key */
    uint64_t parent_hash; /* valid when hashed && has_parent */
    int32_t ref;          /* references held by sequences */
    int32_t n_tokens;     /* tokens committed, 0 when not hashed */
    int32_t prev, next;   /* LRU links, -1 at the ends (ST_CACHED only) */
    int32_t ht_next;      /* next block in the same bucket (hashed only) */
    int32_t pending;      /* bp_release scratch, 0 between calls */
    uint8_t state;        /* ST_FREE / ST_USED / ST_CACHED */
    bool hashed;
    bool has_parent;
} bp_block_t;

struct bp_pool {
    int32_t n_blocks;
    int32_t block_size;
    bp_block_t *blocks; /* (n_blocks) */

    int32_t *free_stack; /* (n_blocks) ids of free blocks, top at n_free - 1 */
    int32_t n_free;

    int32_t lru_head, lru_tail; /* cached blocks, head evicted first */
    int32_t n_cached;

    int32_t *buckets; /* (n_buckets) first block id of each chain, -1 if empty */
    uint32_t bucket_mask;
    uint64_t bucket_seed;
    int32_t n_hashed;

    int32_t n_used;

    bp_event_t *ring; /* (ring_cap) */
    size_t ring_cap, ring_head, ring_count;
    uint64_t next_event_id;

    uint64_t stored, evicted, hit_blocks, events_dropped;

    bp_evict_fn evict_fn; /* bp_set_evict_hook */
    void *evict_ud;
};

/* ---- events ---- */

static void ev_push(bp_pool_t *p, const bp_event_t *ev) {
    if (p->ring_count == p->ring_cap) {
        /* Overflow: drop everything queued, tell the consumer to forget. */
        p->events_dropped += p->ring_count;
        p->ring_head = 0;
        p->ring_count = 0;
        bp_event_t mark = {.id = p->next_event_id++,
                           .kind = BP_EV_CLEARED,
                           .tier = BP_TIER_G1,
                           .block_id = -1,
                           .overflow = true};
        p->ring[0] = mark;
        p->ring_count = 1;
    }
    bp_event_t *slot = &p->ring[(p->ring_head + p->ring_count) % p->ring_cap];
    *slot = *ev;
    slot->id = p->next_event_id++;
    slot->tier = ev->tier ? ev->tier : BP_TIER_G1;
    p->ring_count++;
}

static void ev_block(bp_pool_t *p, bp_event_kind_t kind, int32_t id) {
    const bp_block_t *b = &p->blocks[id];
    bp_event_t ev = {.kind = kind,
                     .block_id = id,
                     .seq_hash = b->seq_hash,
                     .block_hash = b->block_hash,
                     .parent_hash = b->has_parent ? b->parent_hash : 0,
                     .has_parent = b->has_parent,
                     .n_tokens = b->n_tokens};
    ev_push(p, &ev);
}

size_t bp_events_drain(bp_pool_t *pool, bp_event_t *out, size_t max) {
    size_t n = pool->ring_count < max ? pool->ring_count : max;
    for (size_t i = 0; i < n; i++)
        out[i] = pool->ring[(pool->ring_head + i) % pool->ring_cap];
    pool->ring_head = (pool->ring_head + n) % pool->ring_cap;
    pool->ring_count -= n;
    return n;
}

void bp_publish(bp_pool_t *pool, const bp_event_t *ev) { ev_push(pool, ev); }

void bp_set_evict_hook(bp_pool_t *pool, bp_evict_fn fn, void *ud) {
    pool->evict_fn = fn;
    pool->evict_ud = ud;
}

size_t bp_events_pending(const bp_pool_t *pool) {
    return pool->ring_count;
}

/* ---- prefix index ---- */

/* by xxh3 of the sequence hash with a seed drawn at creation: prompts, and
 * so block hashes, are the clients' to choose, and a chosen bucket would
 * make every lookup a walk down one long chain */
static uint32_t bucket_of(const bp_pool_t *p, uint64_t h) {
    return (uint32_t)XXH3_64bits_withSeed(&h, sizeof h, p->bucket_seed) & p->bucket_mask;
}

static int32_t ht_find(const bp_pool_t *p, uint64_t seq_hash) {
    for (int32_t id = p->buckets[bucket_of(p, seq_hash)]; id >= 0; id = p->blocks[id].ht_next)
        if (p->blocks[id].seq_hash == seq_hash) return id;
    return -1;
}

static void ht_insert(bp_pool_t *p, int32_t id) {
    uint32_t b = bucket_of(p, p->blocks[id].seq_hash);
    p->blocks[id].ht_next = p->buckets[b];
    p->buckets[b] = id;
    p->n_hashed++;
}

static void ht_remove(bp_pool_t *p, int32_t id) {
    int32_t *link = &p->buckets[bucket_of(p, p->blocks[id].seq_hash)];
    while (*link != id)
        link = &p->blocks[*link].ht_next;
    *link = p->blocks[id].ht_next;
    p->blocks[id].ht_next = -1;
    p->n_hashed--;
}

/* ---- LRU list of cached blocks ---- */

static void lru_append(bp_pool_t *p, int32_t id) {
    bp_block_t *b = &p->blocks[id];
    b->prev = p->lru_tail;
    b->next = -1;
    if (p->lru_tail >= 0)
        p->blocks[p->lru_tail].next = id;
    else
        p->lru_head = id;
    p->lru_tail = id;
    p->n_cached++;
}

static void lru_unlink(bp_pool_t *p, int32_t id) {
    bp_block_t *b = &p->blocks[id];
    if (b->prev >= 0)
        p->blocks[b->prev].next = b->next;
    else
        p->lru_head = b->next;
    if (b->next >= 0)
        p->blocks[b->next].prev = b->prev;
    else
        p->lru_tail = b->prev;
    b->prev = b->next = -1;
    p->n_cached--;
}

/* ---- block state changes ---- */

static void drop_hash(bp_pool_t *p, int32_t id) {
    bp_block_t *b = &p->blocks[id];
    ht_remove(p, id);
    b->hashed = false;
    b->has_parent = false;
    b->block_hash = b->seq_hash = b->parent_hash = 0;
    b->n_tokens = 0;
}

/* A block of refcount 0 takes its first reference. */
static void take_first_ref(bp_pool_t *p, int32_t id) {
    bp_block_t *b = &p->blocks[id];
    if (b->state == ST_CACHED) lru_unlink(p, id);
    b->state = ST_USED;
    b->ref = 1;
    p->n_used++;
}

/* A block dropped its last reference: cache it or free it. */
static void to_idle(bp_pool_t *p, int32_t id) {
    bp_block_t *b = &p->blocks[id];
    p->n_used--;
    if (b->hashed) {
        b->state = ST_CACHED;
        lru_append(p, id);
    } else {
        b->state = ST_FREE;
        p->free_stack[p->n_free++] = id;
    }
}

/* ---- lifecycle ---- */

rt_status_t bp_create(int32_t n_blocks, int32_t block_size, int32_t event_capacity,
                      bp_pool_t **out) {
    if (n_blocks < 1 || block_size < 1 || event_capacity < 0 || event_capacity == 1 ||
        n_blocks > (1 << 28))
        return rt_error_set(RT_ERR_INVALID, "bp_create: n_blocks %d, block_size %d, events %d",
                            n_blocks, block_size, event_capacity);
    bp_pool_t *p = calloc(1, sizeof *p);
    if (!p) goto nomem;
    uint32_t nb = 1;
    while (nb < (uint32_t)n_blocks * 2u)
        nb <<= 1;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->bucket_mask = nb - 1;
    if (getentropy(&p->bucket_seed, sizeof p->bucket_seed) != 0)
        p->bucket_seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)p;
    p->ring_cap = event_capacity > 0 ? (size_t)event_capacity : 2 * (size_t)n_blocks + 64;
    p->blocks = calloc((size_t)n_blocks, sizeof *p->blocks);
    p->free_stack = malloc((size_t)n_blocks * sizeof *p->free_stack);
    p->buckets = malloc((size_t)nb * sizeof *p->buckets);
    p->ring = calloc(p->ring_cap, sizeof *p->ring);
    if (!p->blocks || !p->free_stack || !p->buckets || !p->ring) goto nomem;
    for (uint32_t i = 0; i < nb; i++)
        p->buckets[i] = -1;
    /* Stack top is id 0, so a fresh pool hands out 0, 1, 2, ... */
    for (int32_t i = 0; i < n_blocks; i++) {
        bp_block_t *b = &p->blocks[i];
        b->prev = b->next = b->ht_next = -1;
        b->state = ST_FREE;
        p->free_stack[i] = n_blocks - 1 - i;
    }
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = -1;
    p->next_event_id = 1;
    *out = p;
    return RT_OK;
nomem:
    bp_destroy(p);
    return rt_error_set(RT_ERR_NOMEM, "bp_create: out of memory for %d blocks", n_blocks);
}

void bp_destroy(bp_pool_t *pool) {
    if (!pool) return;
    free(pool->blocks);
    free(pool->free_stack);
    free(pool->buckets);
    free(pool->ring);
    free(pool);
}

int32_t bp_n_blocks(const bp_pool_t *pool) {
    return pool->n_blocks;
}
int32_t bp_block_size(const bp_pool_t *pool) {
    return pool->block_size;
}

/* ---- prefix caching ---- */

size_t bp_peek_prefix(const bp_pool_t *pool, const uint64_t *seq_hashes, size_t n) {
    size_t k = 0;
    while (k < n && ht_find(pool, seq_hashes[k]) >= 0)
        k++;
    return k;
}

size_t bp_match_prefix(bp_pool_t *pool, const uint64_t *seq_hashes, size_t n,
                       int32_t *out_block_ids) {
    size_t k = 0;
    for (; k < n; k++) {
        int32_t id = ht_find(pool, seq_hashes[k]);
        if (id < 0) break;
        if (pool->blocks[id].ref == 0)
            take_first_ref(pool, id);
        else
            pool->blocks[id].ref++;
        out_block_ids[k] = id;
    }
    pool->hit_blocks += k;
    return k;
}

rt_status_t bp_alloc(bp_pool_t *pool, size_t n, int32_t *out_ids) {
    if (n > (size_t)pool->n_free + (size_t)pool->n_cached)
        return rt_error_set(RT_ERR_FULL, "bp_alloc: %zu blocks wanted, %d free + %d cached", n,
                            pool->n_free, pool->n_cached);
    for (size_t i = 0; i < n; i++) {
        int32_t id;
        if (pool->n_free > 0) {
            id = pool->free_stack[--pool->n_free];
        } else {
            id = pool->lru_head; /* least recently used cached block */
            if (pool->evict_fn) { /* its KV is still there: the caller may keep a copy */
                bp_block_info_t info;
                bp_block_info(pool, id, &info);
                pool->evict_fn(pool->evict_ud, id, &info);
            }
            ev_block(pool, BP_EV_REMOVED, id);
            pool->evicted++;
            drop_hash(pool, id);
        }
        take_first_ref(pool, id);
        out_ids[i] = id;
    }
    return RT_OK;
}

rt_status_t bp_commit_full(bp_pool_t *pool, int32_t block_id, uint64_t block_hash,
                           uint64_t seq_hash, const uint64_t *parent_seq_hash, int32_t n_tokens,
                           int32_t *out_id) {
    if (block_id < 0 || block_id >= pool->n_blocks)
        return rt_error_set(RT_ERR_INVALID, "bp_commit_full: block id %d of %d", block_id,
                            pool->n_blocks);
    bp_block_t *b = &pool->blocks[block_id];
    if (b->ref < 1)
        return rt_error_set(RT_ERR_INVALID, "bp_commit_full: block %d is not held", block_id);
    if (n_tokens != pool->block_size)
        return rt_error_set(RT_ERR_INVALID, "bp_commit_full: block %d has %d tokens, not %d",
                            block_id, n_tokens, pool->block_size);
    if (b->hashed) {
        if (b->seq_hash != seq_hash)
            return rt_error_set(RT_ERR_INVALID,
                                "bp_commit_full: block %d already cached under another hash",
                                block_id);
        *out_id = block_id;
        return RT_OK;
    }
    int32_t have = ht_find(pool, seq_hash);
    if (have >= 0) {
        /* Keep the existing block, release the duplicate. */
        if (pool->blocks[have].ref == 0)
            take_first_ref(pool, have);
        else
            pool->blocks[have].ref++;
        if (--b->ref == 0) to_idle(pool, block_id);
        *out_id = have;
        return RT_OK;
    }
    b->hashed = true;
    b->block_hash = block_hash;
    b->seq_hash = seq_hash;
    b->has_parent = parent_seq_hash != NULL;
    b->parent_hash = parent_seq_hash ? *parent_seq_hash : 0;
    b->n_tokens = n_tokens;
    ht_insert(pool, block_id);
    pool->stored++;
    ev_block(pool, BP_EV_STORED, block_id);
    *out_id = block_id;
    return RT_OK;
}

rt_status_t bp_release(bp_pool_t *pool, const int32_t *ids, size_t n) {
    /* Validate first (an id may repeat), so a bad call changes nothing. */
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= pool->n_blocks || ++pool->blocks[id].pending > pool->blocks[id].ref) {
            bad = i;
            break;
        }
    }
    size_t undo = bad < n ? bad + 1 : n;
    for (size_t i = 0; i < undo; i++)
        if (ids[i] >= 0 && ids[i] < pool->n_blocks) pool->blocks[ids[i]].pending--;
    if (bad < n) {
        int32_t id = ids[bad];
        if (id < 0 || id >= pool->n_blocks)
            return rt_error_set(RT_ERR_INVALID, "bp_release: block id %d of %d", id,
                                pool->n_blocks);
        return rt_error_set(RT_ERR_INVALID, "bp_release: block %d released more than held (%d)", id,
                            pool->blocks[id].ref);
    }
    /* Last to first: a sequence's tail reaches the LRU list before its
     * prefix, so its leaves are evicted first. */
    for (size_t i = n; i-- > 0;) {
        int32_t id = ids[i];
        if (--pool->blocks[id].ref == 0) to_idle(pool, id);
    }
    return RT_OK;
}

void bp_clear(bp_pool_t *pool) {
    for (int32_t id = 0; id < pool->n_blocks; id++) {
        bp_block_t *b = &pool->blocks[id];
        if (!b->hashed) continue;
        drop_hash(pool, id);
        if (b->state == ST_CACHED) {
            lru_unlink(pool, id);
            b->state = ST_FREE;
            pool->free_stack[pool->n_free++] = id;
        }
    }
    bp_event_t ev = {.kind = BP_EV_CLEARED, .block_id = -1};
    ev_push(pool, &ev);
}

/* ---- inspection ---- */

void bp_stats(const bp_pool_t *pool, bp_stats_t *out) {
    *out = (bp_stats_t){.total = pool->n_blocks,
                        .used = pool->n_used,
                        .cached = pool->n_cached,
                        .free = pool->n_free,
                        .hashed = pool->n_hashed,
                        .stored = pool->stored,
                        .evicted = pool->evicted,
                        .hit_blocks = pool->hit_blocks,
                        .events_dropped = pool->events_dropped};
}

rt_status_t bp_block_info(const bp_pool_t *pool, int32_t block_id, bp_block_info_t *out) {
    if (block_id < 0 || block_id >= pool->n_blocks)
        return rt_error_set(RT_ERR_RANGE, "bp_block_info: block id %d of %d", block_id,
                            pool->n_blocks);
    const bp_block_t *b = &pool->blocks[block_id];
    *out = (bp_block_info_t){.ref = b->ref,
                             .hashed = b->hashed,
                             .has_parent = b->has_parent,
                             .n_tokens = b->n_tokens,
                             .block_hash = b->block_hash,
                             .seq_hash = b->seq_hash,
                             .parent_hash = b->parent_hash};
    return RT_OK;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) return rt_error_set(RT_ERR_INTERNAL, __VA_ARGS__);                            \
    } while (0)

rt_status_t bp_check(const bp_pool_t *p) {
    int32_t n_used = 0, n_cached = 0, n_free = 0, n_hashed = 0;
    for (int32_t id = 0; id < p->n_blocks; id++) {
        const bp_block_t *b = &p->blocks[id];
        CHECK(b->ref >= 0 && b->pending == 0, "block %d: ref %d pending %d", id, b->ref,
              b->pending);
        CHECK(b->state == (b->ref > 0  ? ST_USED
                           : b->hashed ? ST_CACHED
                                       : ST_FREE),
              "block %d: state %d with ref %d hashed %d", id, b->state, b->ref, b->hashed);
        n_used += b->state == ST_USED;
        n_cached += b->state == ST_CACHED;
        n_free += b->state == ST_FREE;
        if (b->hashed) {
            n_hashed++;
            CHECK(ht_find(p, b->seq_hash) == id, "block %d: not found under its hash", id);
            CHECK(b->n_tokens == p->block_size, "block %d: %d tokens", id, b->n_tokens);
        }
    }
    CHECK(n_used == p->n_used && n_cached == p->n_cached && n_free == p->n_free &&
              n_hashed == p->n_hashed,
          "counts: used %d/%d cached %d/%d free %d/%d hashed %d/%d", n_used, p->n_used, n_cached,
          p->n_cached, n_free, p->n_free, n_hashed, p->n_hashed);
    CHECK(n_used + n_cached + n_free == p->n_blocks, "states do not add up to %d", p->n_blocks);
    for (int32_t i = 0; i < p->n_free; i++) {
        int32_t id = p->free_stack[i];
        CHECK(id >= 0 && id < p->n_blocks && p->blocks[id].state == ST_FREE,
              "free list entry %d: id %d not free", i, id);
    }
    int32_t walked = 0, prev = -1;
    for (int32_t id = p->lru_head; id >= 0; id = p->blocks[id].next) {
        CHECK(walked < p->n_cached, "LRU list longer than %d", p->n_cached);
        CHECK(p->blocks[id].state == ST_CACHED && p->blocks[id].prev == prev,
              "LRU entry %d: bad state or link", id);
        prev = id;
        walked++;
    }
    CHECK(walked == p->n_cached && p->lru_tail == prev, "LRU list: %d entries, %d cached", walked,
          p->n_cached);
    int32_t chained = 0;
    for (uint32_t bk = 0; bk <= p->bucket_mask; bk++)
        for (int32_t id = p->buckets[bk]; id >= 0; id = p->blocks[id].ht_next) {
            CHECK(chained < p->n_hashed && p->blocks[id].hashed &&
                      bucket_of(p, p->blocks[id].seq_hash) == bk,
                  "hash chain %u: bad entry %d", bk, id);
            chained++;
        }
    CHECK(chained == p->n_hashed, "hash index: %d entries, %d hashed", chained, p->n_hashed);
    CHECK(p->ring_count <= p->ring_cap, "event ring: %zu of %zu", p->ring_count, p->ring_cap);
    return RT_OK;
}
