/*
 * hlog.h - the job's HDF5 log: one file per job, written by rank 0, readable
 * with h5py and h5dump. Layout (docs/hdf5-log.md):
 *   /meta        attributes: rotor version, model, config text, roles, start time
 *   /requests    compound records, one per finished request (hlog_request_t)
 *   /tokens      (request id, token index, time) per generated token, for ITL
 *   /steps       one record per engine step of every worker (hlog_step_t)
 *   /workers     worker events: up, down, role (hlog_worker_t)
 *   /kv_events   the workers' KV events as rank 0 received them (hlog_kv_event_t)
 *   /transfers   disaggregation's KV hand-offs, prefill rank to decode rank (hlog_transfer_t)
 *   /planner     the SLO planner's decision every interval, with what it saw (hlog_planner_t)
 * Times are CLOCK_REALTIME seconds (double), the same clock on every rank of
 * a node (NTP across nodes).
 *
 * Writing never stalls the caller: records are copied into an in-memory
 * queue and a writer thread appends them to extendible chunked datasets and
 * flushes (H5Fflush) every flush interval, so a killed job loses at most that
 * interval. If the queue is full, records are dropped and counted (reported
 * at close and in /meta:dropped_records).
 *
 * Ownership: hlog_t owns its thread, queue and file; records are copied.
 * The hlog_* append calls are safe from any single thread at a time.
 */
#ifndef ROTOR_HLOG_H
#define ROTOR_HLOG_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef struct hlog hlog_t;

#define HLOG_REASON_LEN 16
#define HLOG_ERROR_LEN 128
#define HLOG_KIND_LEN 16
#define HLOG_ROLE_LEN 16

typedef struct {
    uint64_t id;
    int32_t worker;          /* routed worker rank; -1 if never routed */
    double t_arrival;        /* request fully received by the front end */
    double t_routed;         /* handed to the worker */
    double t_scheduled;      /* first scheduled by the engine (0: never) */
    double t_prefill_done;   /* prompt processed (0: never) */
    double t_first_token;    /* first token reached the front end (0: none) */
    double t_finish;         /* last byte queued to the client */
    double queue_wait_s;     /* t_scheduled - t_routed (0 when never scheduled) */
    int32_t tokens_in;       /* prompt tokens */
    int32_t tokens_out;      /* completion tokens */
    int32_t tokens_cached;   /* prompt tokens from the prefix cache */
    int32_t route_overlap_blocks; /* kv_aware: prompt blocks the router counted the worker holding; -1 otherwise */
    int32_t http_status;
    char finish_reason[HLOG_REASON_LEN]; /* stop, length, cancelled, error */
    char error[HLOG_ERROR_LEN];          /* "" when none */
} hlog_request_t;

typedef struct {
    int32_t worker;
    double t;                /* step end */
    double step_s;
    int32_t n_seqs, n_prefill_tokens, n_decode_tokens, n_running, n_waiting;
    int32_t blocks_used, blocks_cached, blocks_free;
    int32_t spec_draft_tokens, spec_accepted_tokens; /* speculative decoding: verified / accepted drafts */
} hlog_step_t;

typedef struct {
    int32_t rank;
    double t;
    char kind[HLOG_KIND_LEN]; /* up, down, shutdown, ... */
    char role[HLOG_ROLE_LEN]; /* router, worker, prefill, decode, planner */
    char detail[HLOG_ERROR_LEN];
} hlog_worker_t;

typedef struct {
    uint64_t id;          /* the worker's event id (1, 2, ... per worker) */
    uint64_t seq_hash;    /* stored, removed: the block's sequence hash */
    uint64_t block_hash;  /* stored, removed: the hash of its tokens */
    uint64_t parent_hash; /* stored: the parent's sequence hash when has_parent */
    double t;             /* when rank 0 received it */
    int32_t worker;       /* rank */
    int32_t tier;         /* 1 = G1 (device memory or the CPU engine's arena) */
    int32_t n_tokens;     /* tokens in the block */
    int32_t has_parent;
    char kind[HLOG_KIND_LEN]; /* stored, removed, cleared */
} hlog_kv_event_t;

/* One request's KV moved from the prefill worker that computed its prompt to
 * the decode worker that goes on with it (disaggregated serving). */
typedef struct {
    uint64_t id;            /* the request's id (as in /requests) */
    int32_t prefill_worker; /* rank that computed the prompt's blocks */
    int32_t decode_worker;  /* rank that received them */
    int32_t n_blocks;       /* KV blocks sent */
    int32_t n_imported;     /* of those, in the decode worker's prefix cache after import */
    int64_t bytes;          /* KV bytes sent */
    double t_prefill_done;  /* the prefill worker finished the prompt */
    double t_sent;          /* it posted the send */
    double t_received;      /* the decode worker had every byte */
    double t_imported;      /* ... and the blocks were in its pool */
} hlog_transfer_t;

/* One SLO planner interval: what rank 0 measured and what the planner decided. */
typedef struct {
    double t;               /* when rank 0 received the decision */
    double ttft_mean_s;     /* mean time to first token over the interval (0 if none) */
    double itl_mean_s;      /* mean inter-token gap over the interval (0 if none) */
    int32_t n_ttft;         /* first tokens in the interval */
    int32_t n_itl;          /* token gaps in the interval */
    int32_t n_prefill;      /* prefill ranks up when measured */
    int32_t n_decode;       /* decode ranks up when measured */
    int32_t prefill_queue;  /* prompts waiting for or on prefill ranks */
    int32_t rank_moved;     /* the (first) rank that changed pools; -1 if none */
    int32_t n_moved;        /* ranks that changed pools */
    int32_t target_prefill; /* predictive mode: the split it aimed at (prefill ranks); -1 if none */
    double prefill_tps;     /* predictive: forecast prompt tokens/s for the prefill pool (0 otherwise) */
    double decode_tps;      /* predictive: forecast output tokens/s for the decode pool */
    double prefill_cap_tps; /* predictive: what one prefill rank serves, tokens/s (0: not known yet) */
    double decode_cap_tps;  /* predictive: what one decode rank serves within the ITL target */
    char action[HLOG_KIND_LEN];  /* hold, to_prefill, to_decode */
    char why[HLOG_ERROR_LEN];    /* the planner's reason */
} hlog_planner_t;

typedef struct {
    double flush_interval_s; /* default 1 */
    size_t queue_records;    /* capacity of the in-memory queue (all kinds); default 1<<20 */
} hlog_config_t;

/* Create path (truncating) and start the writer thread. meta_* are written as
 * attributes of /meta (NULL skips). */
rt_status_t hlog_open(const char *path, const hlog_config_t *cfg, const char *meta_model,
                      const char *meta_config_text, const char *meta_roles, hlog_t **out);
void hlog_request(hlog_t *h, const hlog_request_t *r);
/* n token times of one request, token indices first_index.. */
void hlog_tokens(hlog_t *h, uint64_t request_id, int32_t first_index, const double *t, size_t n);
void hlog_step(hlog_t *h, const hlog_step_t *s);
void hlog_worker(hlog_t *h, const hlog_worker_t *w);
/* n KV events (all or none queued) */
void hlog_kv_events(hlog_t *h, const hlog_kv_event_t *e, size_t n);
void hlog_transfer(hlog_t *h, const hlog_transfer_t *t);
void hlog_planner(hlog_t *h, const hlog_planner_t *p);
/* Flush everything queued, stop the thread, close the file. NULL is a no-op. */
rt_status_t hlog_close(hlog_t *h);
/* Records dropped so far because the queue was full. */
uint64_t hlog_dropped(const hlog_t *h);

/* CLOCK_REALTIME in seconds. */
double hlog_now(void);

#endif
