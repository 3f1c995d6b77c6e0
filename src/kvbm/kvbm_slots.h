/*
 * kvbm_slots.h - private to src/kvbm: the slot map both tiers share. n
 * slots, an LRU list over those in use (head dropped first) and an
 * open-addressing index (linear probing, load <= 1/2, no tombstones) from
 * sequence hash to slot, placed by xxh3 of the hash with a seed drawn at
 * init (the hashes come from clients' prompts). A tier keeps the bytes of
 * slot s where it likes (host: an arena; disk: row s of a dataset).
 *
 * Ownership: kvs_init allocates into the caller's kvs_map_t, kvs_free
 * releases it.
 */
#ifndef ROTOR_KVBM_SLOTS_H
#define ROTOR_KVBM_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "rotor/kvbm.h"

typedef struct {
    kvbm_key_t key;
    int64_t prev, next; /* LRU links, -1 at the ends */
} kvs_slot_t;

typedef struct {
    int64_t n, held;
    kvs_slot_t *slots;  /* (n) */
    int64_t *free_stack, n_free;
    int64_t lru_head, lru_tail;
    int64_t *index;     /* (index_cap) slot, -1 empty */
    size_t index_cap;
    uint64_t seed;
    int64_t stored, dropped, hits; /* puts that took a slot, drops, gets that found */
} kvs_map_t;

/* n in [2, 2^30]: RT_ERR_RANGE, RT_ERR_NOMEM. */
rt_status_t kvs_init(kvs_map_t *m, int64_t n);
void kvs_free(kvs_map_t *m);
/* The slot holding seq_hash, now the most recent, or -1. */
int64_t kvs_get(kvs_map_t *m, uint64_t seq_hash);
/* -1 if key is held (now the most recent). Otherwise the slot now holding
 * key: a free one, or the least recent one, whose key goes to *dropped
 * (*did_drop set); its bytes are the dropped block's until overwritten. */
int64_t kvs_put(kvs_map_t *m, const kvbm_key_t *key, kvbm_key_t *dropped, bool *did_drop);
/* Forget seq_hash (its slot becomes free); not held: nothing. */
void kvs_remove(kvs_map_t *m, uint64_t seq_hash);
void kvs_stats(const kvs_map_t *m, kvbm_stats_t *out);
rt_status_t kvs_check(const kvs_map_t *m);

#endif
