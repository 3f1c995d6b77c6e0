/*
 * metrics.h - the front end's Prometheus metrics (GET /metrics), in the text
 * exposition format 0.0.4, under the names vLLM uses so that vLLM Grafana
 * dashboards work unchanged (every series carries a model_name label), plus
 * a few of rotor's own (rotor_*). docs/metrics.md lists every metric.
 *
 * The front end feeds observations as requests progress (TTFT, each
 * inter-token gap, each finished request, each HTTP response); gauges and
 * engine-side counters (running, waiting, KV usage, prefix cache, preemptions)
 * come from the dispatcher's status at render time.
 *
 * Threading: not thread-safe, and no locking: every call happens on rank 0's
 * event-loop thread (the same thread that owns the dispatcher).
 * Ownership: fe_metrics_t owns its histograms and label strings; model_name
 * is copied at create. fe_metrics_render returns a malloc'd string that the
 * caller frees.
 */
#ifndef ROTOR_FRONTEND_METRICS_H
#define ROTOR_FRONTEND_METRICS_H

#include "rotor/dispatch.h"
#include "rotor/status.h"

typedef struct fe_metrics fe_metrics_t;

/* model_name: the model_name label of every series (copied). */
rt_status_t fe_metrics_create(const char *model_name, fe_metrics_t **out);
void fe_metrics_destroy(fe_metrics_t *m);

/* Time to first token of one request, seconds. */
void fe_metrics_observe_ttft(fe_metrics_t *m, double seconds);
/* One inter-token gap, seconds: call per token after the first. Feeds both
 * vllm:inter_token_latency_seconds and vllm:time_per_output_token_seconds. */
void fe_metrics_observe_itl(fe_metrics_t *m, double seconds);
/* One finished request (any outcome). finish_reason is vLLM's label value:
 * "stop", "length", "abort" (cancelled, client gone) or "error" (NULL counts
 * as "error"); other strings get their own series (at most 32 distinct,
 * then "other"). Adds prompt/generation tokens to the token counters. */
void fe_metrics_observe_request(fe_metrics_t *m, double e2e_s, double queue_s,
                                const char *finish_reason, int prompt_tokens,
                                int generation_tokens, int cached_tokens);
/* Every HTTP response, errors too (status 100..599; others are ignored). */
void fe_metrics_observe_http(fe_metrics_t *m, int status);

/* Prometheus text exposition format 0.0.4 (malloc'd, caller frees; NULL if
 * out of memory). Gauges and engine counters from st (NULL renders them as
 * 0); n_active_http is rotor_http_active_requests. */
char *fe_metrics_render(const fe_metrics_t *m, const dispatch_status_t *st, int n_active_http);

#endif
