/*
 * rb_run.h - rotor-bench's load engine: one thread, libcurl's multi
 * interface, no thread per request.
 *
 * The engine asks the workload for items (rb_workload_next) and sends each
 * as a POST to URL/v1/chat/completions or URL/v1/completions over HTTP/1.1
 * keep-alive connections (curl's connection pool), reading every response
 * as it arrives (rb_sse.h). When a request may start:
 *
 *   concurrency N  at most N in flight; a new one starts when one ends
 *   rate R         starts at a schedule with gaps exponential (Poisson) or
 *                  constant 1/R, whatever is in flight (up to max_conns)
 *   schedule       no limit but max_conns: items start at their own
 *                  t_arrival (trace replay)
 *
 * In every mode an item with t_arrival != RB_ASAP is not sent before that
 * time (the workload holds it back). Warmup items come first; the measured
 * phase starts when the last warmup request has ended, and the clock of the
 * workload and of every recorded time restarts there (warmup records have
 * negative times). With duration_s > 0 no request starts after duration_s
 * of the measured phase; the ones in flight finish (or time out).
 *
 * Times are CLOCK_MONOTONIC seconds since the measured phase's start;
 * start_wall is that instant on CLOCK_REALTIME.
 *
 * Ownership: rb_run_result_t owns its records (rb_run_result_free).
 */
#ifndef ROTOR_RB_RUN_H
#define ROTOR_RB_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "rb_metrics.h"
#include "rb_workload.h"

typedef enum { RB_MODE_CONCURRENCY = 0, RB_MODE_RATE, RB_MODE_SCHEDULE } rb_mode_t;

typedef struct {
    const char *url;     /* http://host:port (a trailing /v1 is allowed) */
    const char *api_key; /* NULL: no Authorization header */
    rb_api_t api;
    bool stream;
    rb_mode_t mode;
    int concurrency;     /* RB_MODE_CONCURRENCY */
    double rate;         /* RB_MODE_RATE: requests/s */
    bool poisson;        /* RB_MODE_RATE: exponential gaps (else constant) */
    uint64_t seed;       /* arrival gaps */
    int64_t n_warmup;    /* warmup items the workload emits first */
    int64_t total;       /* measured requests expected (-1 unknown), for progress */
    double duration_s;   /* 0 = until the workload is exhausted */
    double timeout_s;    /* per request */
    int max_conns;       /* limit in rate/schedule modes; connection pool size */
    bool progress;       /* live line on stderr */
} rb_run_opts_t;

typedef struct {
    rb_records_t rec;
    double start_wall;        /* epoch s at time 0 */
    double cpu_s;             /* user + system CPU during the run */
    uint64_t tokens_received; /* content chunks of all requests, warmup included */
    size_t max_in_flight;
    bool interrupted;         /* a ^C stopped it early */
    char err_example[RB_ERR_KIND_COUNT][128];
} rb_run_result_t;

/* Run the workload to its end. Returns an error only if the run could not
 * be made (curl setup, out of memory); failed requests are records. */
rt_status_t rb_run(const rb_run_opts_t *o, rb_workload_t *w, rb_run_result_t *out);
void rb_run_result_free(rb_run_result_t *r);

/* The request URL for the API: base + "/v1/chat/completions" or
 * "/v1/completions" (without doubling a trailing "/v1"). Writes at most cap
 * bytes; returns false if it did not fit. */
bool rb_run_endpoint_url(const char *base, rb_api_t api, char *buf, size_t cap);

#endif
