/*
 * dispatch.h - how rank 0's front end hands token-level requests to engines
 * and gets their events back. Two implementations sit behind this table:
 *   - local (src/frontend/dispatch_local.c): one in-process engine stepped on
 *     the front end's event loop; `rotor serve` without mpirun (1 rank);
 *   - mpi (src/job/dispatch_mpi.c): the job's worker ranks, chosen by the
 *     router policy (round-robin, least-loaded or KV-aware: kv_router.h).
 * Disaggregation plugs in here without touching the front end.
 *
 * Threading: every call and every sink callback happens on rank 0's event
 * loop thread. Events for a request arrive in order; exactly one FINISH or
 * ERROR ends it (also after dispatch_cancel, with ENGINE_FINISH_CANCELLED).
 *
 * For an ERROR event, rt_error_msg() holds the reason (for example "worker
 * rank 2 stopped answering") while the sink runs.
 *
 * Ownership: submit copies the request (prompt, stop tokens). Events passed
 * to the sink are valid only during the callback.
 */
#ifndef ROTOR_DISPATCH_H
#define ROTOR_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "rotor/engine.h"
#include "rotor/status.h"

/* Where events go: set once, before the first submit. worker is the rank (or
 * 0 for the local engine) that produced the event. */
typedef struct {
    void (*on_event)(void *ctx, const engine_event_t *ev, int worker);
    void *ctx;
} dispatch_sink_t;

typedef struct {
    int n_workers;          /* engines configured */
    int n_up;               /* engines answering */
    int n_running;          /* sequences running, all engines */
    int n_waiting;          /* queued in engines */
    double kv_usage;        /* used KV blocks / total, all engines, 0..1 */
    int64_t prefix_query_tokens_total;
    int64_t prefix_hit_tokens_total;
    int64_t preemptions_total;
    int64_t spec_draft_tokens_total;    /* speculative decoding: draft tokens verified */
    int64_t spec_accepted_tokens_total; /* of those, accepted */
    int64_t steps_total;
    /* the KV block manager's host tier, all engines (kvbm.h) */
    int64_t kvbm_offloaded_total, kvbm_onboarded_total; /* blocks */
    int64_t kvbm_blocks, kvbm_capacity;                 /* held now / room */
    int64_t kvbm_disk_blocks, kvbm_disk_capacity;       /* the disk tier's */
    /* the KV-aware router (zero for other policies and the local engine) */
    int64_t route_request_blocks_total; /* full prompt blocks of routed requests */
    int64_t route_overlap_blocks_total; /* of those, held by the chosen worker (per the index) */
    int64_t kv_index_blocks;            /* distinct blocks the router's index knows of */
    /* disaggregated serving (zero without prefill workers) */
    int n_prefill_workers;              /* of n_workers, prefill-only ones now */
    int64_t planner_moves_total;        /* ranks the SLO planner moved between the pools */
    int64_t remote_prefills_total;      /* requests sent to a prefill worker */
    int64_t kv_transfers_total;         /* hand-offs decode workers received */
    int64_t kv_transfer_blocks_total, kv_transfer_bytes_total;
    double kv_transfer_seconds_total;   /* sum of send-to-receipt times */
} dispatch_status_t;

/* Where submit sent a request. */
typedef struct {
    int worker;             /* the rank (0 for the local engine) */
    int32_t overlap_blocks; /* kv_aware: prompt blocks the router found the worker holding; -1 otherwise */
    int prefill_worker;     /* disaggregated: the rank computing its prompt; -1 if none */
} dispatch_route_t;

typedef struct {
    const char *name; /* "local", "mpi" */
    void (*set_sink)(void *self, dispatch_sink_t sink);
    /* RT_ERR_UNAVAILABLE when no engine is up, RT_ERR_INVALID for a request
     * no engine can take (message says why). *route receives the choice. */
    rt_status_t (*submit)(void *self, const engine_request_t *r, dispatch_route_t *route);
    /* Cancel a submitted request (unknown ids are ignored). */
    void (*cancel)(void *self, uint64_t id);
    void (*status)(void *self, dispatch_status_t *st);
} dispatch_ops_t;

typedef struct {
    const dispatch_ops_t *ops;
    void *self;
} dispatch_t;

#endif
