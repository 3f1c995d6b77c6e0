/*
 * rb_metrics.h - rotor-bench's per-request records and the run's metrics.
 *
 * The load engine (rb_run.c) appends one rb_req_t per finished request with
 * its content-chunk arrival times; rb_summary_compute turns the records into
 * the numbers AIPerf reports, with AIPerf's definitions:
 *
 *   TTFT            first content chunk - send
 *   request latency last chunk ([DONE] when it came) - send
 *   ITL             (latency - TTFT) / (output tokens - 1), streamed requests
 *                   with >= 2 output tokens
 *   per-token ITL   every gap between consecutive content chunks
 *   duration        last response end - first send (measured requests, ok
 *                   or not)
 *   throughputs     sum of output (input) tokens / duration, completed / duration
 *   goodput         requests meeting every SLO / duration (a request without
 *                   a value for an SLO's metric does not meet it)
 *
 * Distributions cover completed (status ok), non-warmup requests; warmup
 * requests are in no metric. Percentiles interpolate linearly between the
 * closest ranks (numpy's default). Pure arithmetic, no I/O: the unit test
 * includes this file.
 *
 * Ownership: rb_records_t owns its two arrays (rb_records_free).
 */
#ifndef ROTOR_RB_METRICS_H
#define ROTOR_RB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

/* One status per request. */
typedef enum {
    RB_ERR_NONE = 0,
    RB_ERR_CONNECT,    /* no connection / no response at all */
    RB_ERR_TIMEOUT,    /* --timeout passed */
    RB_ERR_HTTP_4XX,   /* HTTP status 400-499 (code in http_status) */
    RB_ERR_HTTP_5XX,   /* HTTP status >= 500 */
    RB_ERR_STREAM,     /* error event, malformed SSE or JSON */
    RB_ERR_INCOMPLETE, /* stream ended without [DONE] */
    RB_ERR_KIND_COUNT
} rb_err_kind_t;

/* "connect", "timeout", "http_4xx", "http_5xx", "stream_error", "incomplete";
 * "" for RB_ERR_NONE. */
const char *rb_err_kind_name(rb_err_kind_t k);

typedef struct {
    uint64_t index;         /* the workload item's index */
    int32_t session, turn;  /* -1, -1 outside sessions */
    bool warmup;
    bool streamed;          /* SSE response (ITL is defined only for these) */
    double t_send;          /* s since run start */
    double t_first;         /* first content chunk; NAN if none */
    double t_end;           /* last chunk / response end / failure */
    int32_t input_tokens, output_tokens;
    int32_t http_status;    /* 0 if no response */
    rb_err_kind_t err;
    size_t tok_off;         /* first of this request's times in rb_records_t.tok */
    uint32_t n_tok;         /* content chunks */
} rb_req_t;

typedef struct {
    rb_req_t *req; /* (n_req) */
    size_t n_req, cap_req;
    double *tok; /* (n_tok) content-chunk arrival times, s; each request's contiguous */
    size_t n_tok, cap_tok;
} rb_records_t;

/* Append r (its tok_off/n_tok are set here) and its n_tok chunk times. */
rt_status_t rb_records_add(rb_records_t *rs, const rb_req_t *r, const double *tok, size_t n_tok);
void rb_records_free(rb_records_t *rs);

/* Per-request metrics in ms; NAN where undefined. */
double rb_req_ttft_ms(const rb_req_t *r);
double rb_req_latency_ms(const rb_req_t *r);
double rb_req_itl_ms(const rb_req_t *r);

typedef struct {
    size_t n; /* values; the rest are NAN when 0 */
    double p50, p90, p95, p99, mean, min, max;
} rb_stats_t;

/* p-th percentile (0..100) of n sorted values, linear interpolation. */
double rb_percentile_sorted(const double *v, size_t n, double p);
/* Statistics of v[0..n) (sorted in place). */
void rb_stats_of(double *v, size_t n, rb_stats_t *out);

/* Service-level objectives in ms; 0 = not set. */
typedef struct {
    double ttft_ms, itl_ms, latency_ms;
} rb_slo_t;

/* True if r (ok, not warmup) meets every SLO that is set. */
bool rb_req_good(const rb_req_t *r, const rb_slo_t *slo);

#define RB_MAX_HTTP_CODES 8

typedef struct {
    size_t completed, errors;           /* measured requests */
    size_t err_by_kind[RB_ERR_KIND_COUNT];
    struct {
        int code;
        size_t n;
    } http_codes[RB_MAX_HTTP_CODES];    /* failed requests by HTTP status */
    int n_http_codes;
    size_t warmup;                      /* warmup requests (excluded) */
    double t_first_send, t_last_end;    /* s since run start */
    double duration_s;
    rb_stats_t ttft_ms, itl_ms, itl_token_ms, latency_ms, output_tokens, input_tokens;
    double total_output_tokens, total_input_tokens;
    double output_token_throughput; /* tokens/s */
    double input_token_throughput;  /* tokens/s */
    double request_throughput;      /* completed requests/s */
    rb_slo_t slo;
    size_t good;
    double goodput_rps;      /* good / duration */
    double goodput_fraction; /* good / (completed + errors) */
    /* filled by the engine, not by rb_summary_compute */
    double client_cpu_s;            /* user + system CPU of the run */
    double client_cpu_us_per_token; /* client_cpu_s / tokens received (all requests) */
    uint64_t tokens_received;
    size_t max_in_flight;
    char err_example[RB_ERR_KIND_COUNT][128]; /* first message of each kind */
} rb_summary_t;

/* Every metric of the records; slo may be NULL. Allocates scratch only. */
rt_status_t rb_summary_compute(const rb_records_t *rs, const rb_slo_t *slo, rb_summary_t *out);

#endif
