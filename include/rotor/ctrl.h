/*
 * ctrl.h - the job's control plane: messages between rank 0 (router) and the
 * worker ranks over MPI_COMM_WORLD, one tag per kind. Every message is a
 * byte buffer: a fixed header struct, then arrays. Ranks of one job run the
 * same binary, so structs travel as they are (no byte swapping).
 *
 *   HELLO     worker -> 0   ctrl_hello_t: the engine is up (vocab, context, pool)
 *   REQUEST   0 -> worker   ctrl_request_t + prompt ids + stop ids + logit_bias ids + their biases (f32)
 *   CANCEL    0 -> worker   uint64_t request id
 *   SHUTDOWN  0 -> worker   (empty) finish, cancel what is left, say BYE
 *   EVENTS    worker -> 0   ctrl_events_t + n_events engine_event_t + n_kv_events
 *                           bp_event_t (the engine's KV events, in id order,
 *                           for the KV-aware router); with no events it is
 *                           the heartbeat; every step's stats ride on it
 *   BYE       worker -> 0   (empty) the worker has stopped and will finalize
 *
 * Disaggregated serving (docs/architecture.md, "Disaggregation"):
 *   PREFILL   0 -> prefill  a REQUEST whose kv_peer names the decode rank: compute
 *                           the prompt's full blocks (prefill_only), then hand off
 *   KV        prefill -> decode  ctrl_kv_t + the REQUEST bytes + n_blocks blocks of
 *                           KV (transfer.h): import them, then run the request
 *   XFER      decode -> 0   ctrl_xfer_t: a hand-off arrived (timing, for the log)
 *
 * The SLO planner (planner.h) on the planner rank:
 *   OBS       0 -> planner  planner_obs_t: the last interval, every planner:interval_s
 *   PLAN      planner -> 0  ctrl_plan_t: move ranks between the pools, or hold
 *   ROLE      0 -> worker   int32_t job_role_t: the worker's new role (for its log)
 *   SHUTDOWN  0 -> planner  (empty) stop
 *
 * Ownership: ctrl_request_pack returns a malloc'd buffer the caller frees
 * (after the send completes); unpack points into the caller's buffer;
 * ctrl_try_recv grows the caller's receive buffer (caller-owned, realloc).
 */
#ifndef ROTOR_CTRL_H
#define ROTOR_CTRL_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/block_pool.h"
#include "rotor/engine.h"
#include "rotor/planner.h"
#include "rotor/status.h"

enum {
    CTRL_TAG_HELLO = 101,
    CTRL_TAG_REQUEST,
    CTRL_TAG_CANCEL,
    CTRL_TAG_SHUTDOWN,
    CTRL_TAG_EVENTS,
    CTRL_TAG_BYE,
    CTRL_TAG_PREFILL,
    CTRL_TAG_KV,
    CTRL_TAG_XFER,
    CTRL_TAG_OBS,
    CTRL_TAG_PLAN,
    CTRL_TAG_ROLE,
};

/* PLAN: the planner's decision */
typedef struct {
    int32_t action;      /* planner_action_t */
    int32_t pad;
    planner_view_t view; /* ranks to move, and the predictive mode's forecast */
    char why[192];
} ctrl_plan_t;

typedef struct {
    int32_t n_vocab;
    int32_t n_ctx;
    int32_t n_blocks;
    int32_t max_num_seqs;
    int32_t role; /* job_role_t */
} ctrl_hello_t;

typedef struct {
    uint64_t id;
    int32_t n_prompt;
    int32_t n_stop_tokens;
    int32_t n_logit_bias;
    int32_t max_tokens;
    int32_t min_tokens;
    int32_t top_logprobs;
    int32_t ignore_eos;
    int32_t logprobs;
    int32_t prompt_logprobs;
    int32_t constraint; /* engine_constraint_t */
    int32_t kv_peer; /* PREFILL: the decode rank to hand the KV to; -1 otherwise */
    sampler_params_t sampling;
} ctrl_request_t;

/* KV: a prefill worker's hand-off of one request */
typedef struct {
    uint64_t id;
    int32_t n_blocks;       /* KV blocks that follow (the prompt's leading full blocks) */
    int32_t req_bytes;      /* the REQUEST message that follows this header */
    int64_t block_bytes;    /* bytes per block */
    double t_prefill_done;  /* CLOCK_REALTIME */
    double t_sent;
} ctrl_kv_t;

/* XFER: what a decode worker reports of a hand-off (hlog_transfer_t's fields) */
typedef struct {
    uint64_t id;
    int32_t prefill_rank;
    int32_t n_blocks;
    int32_t n_imported;
    int32_t pad;
    int64_t bytes;
    double t_prefill_done, t_sent, t_received, t_imported;
} ctrl_xfer_t;

typedef struct {
    int32_t n_events;
    int32_t n_kv_events;
    double t_sent;               /* CLOCK_REALTIME at send */
    engine_step_stats_t stats;   /* the step that made these events; otherwise (a
                                    heartbeat, a refusal) engine_stats now */
    int32_t stepped;             /* 1 if stats describe a step */
    int32_t pad2;
} ctrl_events_t;

/* KV events a worker sends in one EVENTS message at most (more go in the
 * messages that follow) */
#define CTRL_MAX_KV_EVENTS 1024

/* Pack a request for REQUEST (malloc'd into *buf, *len bytes); kv_peer as
 * in ctrl_request_t (-1: none). */
rt_status_t ctrl_request_pack(const engine_request_t *r, int32_t kv_peer, void **buf, size_t *len);
/* Unpack a REQUEST buffer into r (pointers into buf); *kv_peer (NULL: not
 * wanted) receives its kv_peer. RT_ERR_FORMAT if the sizes do not add up. */
rt_status_t ctrl_request_unpack(const void *buf, size_t len, engine_request_t *r, int32_t *kv_peer);

/* Receive one pending message from source (MPI_ANY_SOURCE = -1 too) on
 * MPI_COMM_WORLD without blocking: 0 if none is pending, else 1 with the
 * bytes in *buf (grown with realloc as needed; out of memory aborts), their
 * count, the sender and the tag. */
int ctrl_try_recv(int source, uint8_t **buf, size_t *cap, int *count, int *from, int *tag);

#endif
