/*
 * kvbm.h - the KV block manager's lower tiers, as in Dynamo's KVBM: host
 * DRAM (G2) and node-local disk (G3, an HDF5 file). A full block the engine
 * evicts from its pool (G1) is copied to G2 instead of being lost, a block
 * G2 drops goes to G3, and a later request whose prefix continues into
 * blocks held there gets them copied back into G1 (onboarded) rather than
 * prefilled again. Blocks are keyed by their sequence hash (block_pool.h),
 * so a hit is the same tokens at the same positions: the same KV bytes, the
 * same logits. The tier is LRU: when full, storing a block drops the least
 * recently stored or used one.
 *
 * The engine publishes the tiers' changes as KV events of tier BP_TIER_G2
 * or G3 (STORED when a block arrives, REMOVED when the tier drops it), in
 * the same id sequence as G1's.
 *
 * Ownership: kvbm_create returns a tier the caller owns (kvbm_destroy); it
 * owns its block arena. Pointers it returns stay valid until the next
 * kvbm_put. Single-threaded (the engine's step).
 */
#ifndef ROTOR_KVBM_H
#define ROTOR_KVBM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef struct kvbm kvbm_t;

/* What names a block (and what its events carry). */
typedef struct {
    uint64_t seq_hash, block_hash, parent_hash;
    bool has_parent;
    int32_t n_tokens;
} kvbm_key_t;

/* n_blocks >= 2 blocks of block_bytes each (RT_ERR_RANGE otherwise,
 * RT_ERR_NOMEM if the arena cannot be had). */
rt_status_t kvbm_create(int64_t n_blocks, size_t block_bytes, kvbm_t **out);
void kvbm_destroy(kvbm_t *t);

/* Make room for key and return its buffer (block_bytes) for the caller to
 * fill, or NULL if the tier already holds key (it becomes the most recent;
 * nothing to copy). When the tier was full, *dropped receives the key it
 * dropped to make room and *did_drop is set. */
void *kvbm_put(kvbm_t *t, const kvbm_key_t *key, kvbm_key_t *dropped, bool *did_drop);
/* The bytes of seq_hash (it becomes the most recent), or NULL. */
const void *kvbm_get(kvbm_t *t, uint64_t seq_hash);

typedef struct {
    int64_t capacity, held;
    int64_t stored, dropped, hits; /* ever: puts that copied, drops, gets that found */
} kvbm_stats_t;
void kvbm_stats(const kvbm_t *t, kvbm_stats_t *out);

/* Walk the structures and check their invariants: RT_OK or RT_ERR_INTERNAL
 * with a message. For tests. */
rt_status_t kvbm_check(const kvbm_t *t);

/* ---- the disk tier (G3) ----
 * One HDF5 file per engine on node-local disk: /blocks, n_blocks rows of
 * block_bytes bytes (a chunk a row, written when a block arrives), and
 * /keys, the key of each row (h5py can read what the tier holds). The file
 * is a cache: created (truncated) by kvbm_disk_create, removed by
 * kvbm_disk_destroy. Every HDF5 call holds the process-wide HDF5 lock
 * (a one-rank job also writes its log from another thread). */
typedef struct kvbm_disk kvbm_disk_t;

/* RT_ERR_RANGE (fewer than 2 blocks), RT_ERR_IO (the file), RT_ERR_NOMEM. */
rt_status_t kvbm_disk_create(const char *path, int64_t n_blocks, size_t block_bytes, kvbm_disk_t **out);
void kvbm_disk_destroy(kvbm_disk_t *d);
/* Store a copy of src under key (*stored), or make key the most recent if
 * held; *dropped / *did_drop as kvbm_put. RT_ERR_IO if the write failed
 * (key is then not held; a drop still happened if *did_drop). */
rt_status_t kvbm_disk_put(kvbm_disk_t *d, const kvbm_key_t *key, const void *src, kvbm_key_t *dropped,
                          bool *did_drop, bool *stored);
/* Read seq_hash's block into dst (it becomes the most recent): RT_OK,
 * RT_ERR_NOT_FOUND, or RT_ERR_IO (the block is then forgotten). */
rt_status_t kvbm_disk_get(kvbm_disk_t *d, uint64_t seq_hash, void *dst);
void kvbm_disk_stats(const kvbm_disk_t *d, kvbm_stats_t *out);
rt_status_t kvbm_disk_check(const kvbm_disk_t *d);

#endif
