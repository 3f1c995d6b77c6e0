/*
 * kv_router.h - rank 0's KV-aware routing (router:policy = kv_aware), the
 * scheme of Dynamo's KV router:
 *
 *   - an index (kvi_*) of which worker holds which KV block, keyed by the
 *     block's sequence hash (block_pool.h: xxh3 of the block's token ids,
 *     chained to its parent), learnt from the workers' KV events: STORED adds
 *     the worker to the block, REMOVED takes it off, CLEARED (or a worker
 *     going down) takes the worker off every block. Because a sequence hash
 *     names a whole prefix, a request's overlap with a worker is the number
 *     of its leading block hashes the worker holds;
 *   - a choice (kvr_pick) among the workers with room: the least
 *       overlap_weight x new + (active blocks + new),  new = request blocks - overlap,
 *     Dynamo's logit: the prefill the worker would still do, plus its load
 *     in KV blocks once it has taken the request (the blocks it holds are
 *     shared, not added); ties go to fewer requests in flight, then
 *     round-robin. A temperature above 0 samples instead, with probabilities
 *     softmax(-cost / temperature) over costs normalized to 0..1 (Dynamo's
 *     router_temperature).
 *
 * Ownership: kvi_create returns an index the caller owns (kvi_destroy).
 * Inputs are copied or only read during a call. Single-threaded (rank 0's
 * event loop).
 */
#ifndef ROTOR_KV_ROUTER_H
#define ROTOR_KV_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/block_pool.h"
#include "rotor/status.h"

typedef struct kvi kvi_t;

/* An empty index for workers 0..n_workers-1 (n_workers in [1, 65536]). */
rt_status_t kvi_create(int n_workers, kvi_t **out);
void kvi_destroy(kvi_t *x);

/* Worker w holds the block named seq_hash (again: no change). RT_ERR_NOMEM
 * leaves the index as it was; RT_ERR_RANGE for a bad worker. */
rt_status_t kvi_store(kvi_t *x, int w, uint64_t seq_hash);
/* Worker w no longer holds it (not held: no change). */
void kvi_remove(kvi_t *x, int w, uint64_t seq_hash);
/* Worker w holds nothing (its cache was cleared, or it went down). */
void kvi_clear_worker(kvi_t *x, int w);

/* One of worker w's KV events: STORED / REMOVED / CLEARED as above,
 * whatever its tier (the caller keeps an index per tier). */
rt_status_t kvi_apply(kvi_t *x, int w, const bp_event_t *ev);

/* overlap[w] for every worker (n_workers entries): how many of the leading
 * seq_hashes[0..n) worker w holds, all of them from the first. Uses the
 * index's scratch space: not const. */
void kvi_overlap(kvi_t *x, const uint64_t *seq_hashes, size_t n, int32_t *overlap);
/* The same over the union of n_x (at most 8) indexes of the same workers (a block
 * counts where any of them has it: the tiers, the blocks in flight); uses
 * xs[0]'s scratch space. */
void kvi_overlap_any(kvi_t *const *xs, int n_x, const uint64_t *seq_hashes, size_t n, int32_t *overlap);

/* Blocks indexed for worker w; distinct blocks indexed (any worker). */
int64_t kvi_worker_blocks(const kvi_t *x, int w);
int64_t kvi_blocks(const kvi_t *x);

/* Walk the table and check its invariants (counts, probe chains): RT_OK or
 * RT_ERR_INTERNAL with a message. O(capacity); for tests. */
rt_status_t kvi_check(const kvi_t *x);

/* ---- the choice ---- */

typedef struct {
    bool eligible;         /* up, with room for one more request */
    int32_t overlap;       /* leading request blocks the worker holds */
    int64_t active_blocks; /* KV blocks of the requests in flight there */
    int32_t n_inflight;    /* requests in flight there */
} kvr_candidate_t;

typedef struct {
    double overlap_weight; /* >= 0: a block of prefill against a block held */
    double temperature;    /* 0: the least cost; > 0: sample (see above) */
} kvr_params_t;

/* The cost the choice minimizes for candidate c. */
double kvr_cost(const kvr_params_t *p, const kvr_candidate_t *c, int32_t request_blocks);

/* Index of the chosen eligible candidate among c[0..n), or -1 if none is
 * eligible. Ties and the round-robin order start at index start; *rng (any
 * nonzero state) is advanced only when temperature > 0. */
int kvr_pick(const kvr_params_t *p, const kvr_candidate_t *c, int n, int32_t request_blocks, int start,
             uint64_t *rng);

/* Uniform in [0, 1) from *rng (advanced): the routers' coin (splitmix64). */
double kvr_coin(uint64_t *rng);

#endif
