/*
 * block_pool.h - the KV block manager's G1 pool: block bookkeeping for the
 * engine's paged KV cache, with prefix caching and KV events.
 *
 * The pool hands out block ids 0..n_blocks-1; the KV tensors themselves live
 * in kv_cache_t (rotor/model.h), addressed by these ids. A block is in one of
 * three states:
 *
 *   free    refcount 0, no hash           (on the free list)
 *   used    refcount > 0, hashed or not   (held by one or more sequences)
 *   cached  refcount 0, hashed            (on the evictable LRU list)
 *
 * Hashes follow Dynamo (lib/kv-router protocols.rs) and vLLM exactly, so KV
 * events mean the same thing across systems:
 *   block hash    = XXH3_64bits_withSeed(tokens as little-endian u32, B*4 bytes, 1337)
 *                   (Dynamo's LocalBlockHash / "tokens_hash")
 *   sequence hash = block hash for the first block, else
 *                   XXH3_64bits_withSeed([parent seq hash u64 LE, block hash u64 LE], 16 bytes,
 * 1337) (Dynamo's SequenceHash / ExternalSequenceBlockHash) The pool indexes full blocks by
 * sequence hash: equal sequence hash means equal tokens in this block and every block before it.
 *
 * Eviction: bp_alloc takes free blocks first, then evicts cached blocks from
 * the head of one LRU list. bp_release appends blocks whose refcount drops
 * to 0 to the list's tail walking its array from the LAST id to the first,
 * so when a sequence's block table is released in one call (the engine's
 * finish/cancel path) its leaves are older than its prefix and are evicted
 * first (vLLM's scheme). Touching a block through bp_match_prefix also
 * touches its whole prefix, so a parent is never less recently used than its
 * children unless a caller releases a prefix before its tail in separate
 * calls. Every cached block is evictable: the pool never refuses an
 * allocation while free + cached >= n.
 *
 * Events: every block entering the prefix cache (STORED), leaving it by
 * eviction (REMOVED) and every bp_clear (CLEARED) is queued with a per-pool
 * monotonic id in a bounded ring; one block per event (a consumer may
 * coalesce runs). If the ring is full when an event is published, every
 * queued event is dropped (and counted in bp_stats_t.events_dropped) and a
 * CLEARED event with overflow = true takes their place, followed by the new
 * event: the consumer must forget everything it learnt from this pool, as on
 * any CLEARED, and the event ids show the gap. Its view then under-counts
 * (blocks cached before the overflow are unknown to it), which only costs
 * prefix-routing hits, never correctness.
 *
 * Ownership: bp_create allocates everything once (block table, free list,
 * hash table, LRU links, event ring); no other function allocates, makes a
 * syscall or takes a lock. The pool is not thread-safe: one owner thread
 * (the worker's engine loop) calls it. Caller arrays are only read/written
 * during the call.
 */
#ifndef ROTOR_BLOCK_POOL_H
#define ROTOR_BLOCK_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

#define BP_HASH_SEED 1337ULL /* XXH3 seed of Dynamo and vLLM */
#define BP_TIER_G1 1         /* device memory, or the engine's arena on CPU */
#define BP_TIER_G2 2         /* host DRAM: the KV block manager's tier (kvbm.h) */
#define BP_TIER_G3 3         /* node-local disk: the KV block manager's HDF5 tier (kvbm.h) */

/* ---- hashing (pure functions) ---- */

/* Block hash of one full block: tokens[0..block_size). */
uint64_t bp_hash_block(const int32_t *tokens, int block_size);

/* Sequence hash of a block whose parent has sequence hash parent_seq_hash. */
uint64_t bp_hash_chain(uint64_t parent_seq_hash, uint64_t block_hash);

/* Hashes of the full blocks of tokens[0..n) (a trailing partial block is
 * ignored). Writes n / block_size entries to each of block_hashes and
 * seq_hashes (either may be NULL) and returns that count; 0 if block_size
 * < 1. */
size_t bp_hash_blocks(const int32_t *tokens, size_t n, int block_size, uint64_t *block_hashes,
                      uint64_t *seq_hashes);

/* ---- the pool ---- */

typedef struct bp_pool bp_pool_t;

/* n_blocks in [1, 2^28], block_size >= 1; event_capacity: events the ring
 * holds between drains, >= 2, or 0 for the default (2 * n_blocks + 64).
 * RT_ERR_INVALID / RT_ERR_NOMEM; *out only set on success. */
rt_status_t bp_create(int32_t n_blocks, int32_t block_size, int32_t event_capacity,
                      bp_pool_t **out);
void bp_destroy(bp_pool_t *pool);

int32_t bp_n_blocks(const bp_pool_t *pool);
int32_t bp_block_size(const bp_pool_t *pool);

/* Longest cached prefix: the number k of leading seq_hashes[0..n) that are
 * cached (used or cached state). Takes one reference on each of those k
 * blocks (a cached block leaves the LRU list and becomes used) and writes
 * their ids to out_block_ids[0..k). */
size_t bp_match_prefix(bp_pool_t *pool, const uint64_t *seq_hashes, size_t n,
                       int32_t *out_block_ids);

/* The same count as bp_match_prefix, touching nothing (for a scheduler that
 * decides before committing). */
size_t bp_peek_prefix(const bp_pool_t *pool, const uint64_t *seq_hashes, size_t n);

/* Take n blocks, each with refcount 1 and no hash: free blocks first, then
 * cached blocks evicted in LRU order (each eviction publishes REMOVED).
 * RT_ERR_FULL (nothing changed, no event) when free + cached < n. */
rt_status_t bp_alloc(bp_pool_t *pool, size_t n, int32_t *out_ids);

/* Mark a filled, held block as cached under seq_hash. parent_seq_hash is
 * NULL for the first block of a sequence; n_tokens must equal the block
 * size. *out_id receives the block id the caller must use from now on:
 *  - seq_hash not cached yet: block_id, and STORED is published;
 *  - block_id already committed with this seq_hash: block_id, no event;
 *  - another block E already caches seq_hash (two sequences filled the same
 *    prefix concurrently): vLLM's rule, keep the existing block. The call
 *    takes a reference on E, drops the caller's reference on block_id (which
 *    returns to the free list if that was the last one) and returns E; the
 *    caller swaps E into its block table (same tokens, so same KV). No event.
 * RT_ERR_INVALID if block_id is out of range, not held (refcount 0), already
 * committed under another hash, or n_tokens != block size. */
rt_status_t bp_commit_full(bp_pool_t *pool, int32_t block_id, uint64_t block_hash,
                           uint64_t seq_hash, const uint64_t *parent_seq_hash, int32_t n_tokens,
                           int32_t *out_id);

/* Drop one reference per entry of ids[0..n) (an id may repeat). Blocks that
 * reach 0 become cached (hashed) or free (not hashed); see Eviction above
 * for the order. RT_ERR_INVALID (nothing changed) if an id is out of range
 * or would drop below zero. */
rt_status_t bp_release(bp_pool_t *pool, const int32_t *ids, size_t n);

/* Forget every hash: cached blocks become free, used blocks keep their
 * references but are no longer cached (they go to the free list when
 * released). Publishes one CLEARED event. */
void bp_clear(bp_pool_t *pool);

/* ---- inspection ---- */

typedef struct {
    int32_t total;           /* n_blocks */
    int32_t used;            /* refcount > 0 */
    int32_t cached;          /* refcount 0, hashed: reusable by prefix hits, evictable */
    int32_t free;            /* refcount 0, no hash */
    int32_t hashed;          /* in the prefix index: cached + used blocks with a hash */
    uint64_t stored;         /* STORED events published, ever */
    uint64_t evicted;        /* REMOVED events published, ever */
    uint64_t hit_blocks;     /* blocks returned by bp_match_prefix, ever */
    uint64_t events_dropped; /* events lost to ring overflow, ever */
} bp_stats_t;

void bp_stats(const bp_pool_t *pool, bp_stats_t *out);

typedef struct {
    int32_t ref;          /* references held */
    bool hashed;          /* committed and still in the prefix index */
    bool has_parent;      /* parent_hash is meaningful */
    int32_t n_tokens;     /* tokens committed (block size) or 0 */
    uint64_t block_hash;  /* valid when hashed */
    uint64_t seq_hash;    /* valid when hashed */
    uint64_t parent_hash; /* valid when hashed && has_parent */
} bp_block_info_t;

/* RT_ERR_RANGE for a bad id. */
rt_status_t bp_block_info(const bp_pool_t *pool, int32_t block_id, bp_block_info_t *out);

/* Walk every structure and check its invariants (states, counts, lists,
 * hash index). RT_OK, or RT_ERR_INTERNAL with a message. O(n_blocks); for
 * tests and debug builds. */
rt_status_t bp_check(const bp_pool_t *pool);

/* ---- KV events ---- */

typedef enum {
    BP_EV_STORED = 1,  /* a block entered the prefix cache */
    BP_EV_REMOVED = 2, /* a block left it (evicted) */
    BP_EV_CLEARED = 3, /* everything from this pool is gone (bp_clear or overflow) */
} bp_event_kind_t;

typedef struct {
    uint64_t id; /* per-pool, strictly increasing from 1 */
    bp_event_kind_t kind;
    int32_t tier;         /* BP_TIER_G1, or G2/G3 for the events the engine publishes for kvbm.h */
    int32_t block_id;     /* STORED/REMOVED: the pool's block id; -1 for CLEARED */
    uint64_t seq_hash;    /* STORED/REMOVED: Dynamo's block_hash (ExternalSequenceBlockHash) */
    uint64_t block_hash;  /* STORED/REMOVED: Dynamo's tokens_hash (LocalBlockHash) */
    uint64_t parent_hash; /* STORED: parent's seq hash when has_parent */
    bool has_parent;
    bool overflow;    /* CLEARED: published because the ring overflowed */
    int32_t n_tokens; /* STORED/REMOVED: tokens in the block */
} bp_event_t;

/* Move up to max queued events, oldest first, to out[]; returns how many. */
size_t bp_events_drain(bp_pool_t *pool, bp_event_t *out, size_t max);

/* Events queued now. */
size_t bp_events_pending(const bp_pool_t *pool);

/* Queue an event of another tier (ev's kind, tier, hashes and token count;
 * the pool gives it the next id), so that every tier's events of one engine
 * are one stream. */
void bp_publish(bp_pool_t *pool, const bp_event_t *ev);

/* Called by bp_alloc for each cached block it evicts, before the block's
 * hash is dropped and it is handed out: its KV is still intact, so the
 * caller may copy it to a lower tier (kvbm.h). fn must not call back into
 * the pool. NULL removes the hook. */
typedef void (*bp_evict_fn)(void *ud, int32_t block_id, const bp_block_info_t *info);
void bp_set_evict_hook(bp_pool_t *pool, bp_evict_fn fn, void *ud);

#endif
