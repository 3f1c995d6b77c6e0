/*
 * frontend.h - rank 0's OpenAI-compatible HTTP endpoint (libevent's evhttp,
 * cJSON). It parses and validates requests, renders chat messages with the
 * model's template, tokenizes, hands token-level requests to a dispatcher
 * (include/rotor/dispatch.h), detokenizes the events that come back (UTF-8
 * safe, stop strings held back), and answers with JSON or SSE. It also serves
 * /v1/models, /health and /metrics (Prometheus text) and records every
 * request's timeline in the HDF5 log.
 *
 * Threading: everything runs on the caller's event_base thread.
 * Ownership: fe_server_t owns its evhttp, connections and per-request state;
 * the model info, dispatcher, hlog and cfg are borrowed and must outlive it.
 */
#ifndef ROTOR_FRONTEND_H
#define ROTOR_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>

#include "rotor/chat.h"
#include "rotor/config.h"
#include "rotor/dispatch.h"
#include "rotor/hlog.h"
#include "rotor/status.h"
#include "rotor/tokenizer.h"

struct event_base;
typedef struct fe_server fe_server_t;

typedef struct {
    const tok_vocab_t *vocab;
    chat_tmpl_t chat_template;
    const char *model_name; /* id at /v1/models */
    int n_ctx;              /* prompt + completion tokens per request */
} fe_model_t;

/* Bind server:host:server:port (port 0 = ephemeral) and start serving on
 * base. hlog may be NULL. */
rt_status_t fe_server_create(struct event_base *base, const cfg_t *cfg, const fe_model_t *model,
                             dispatch_t dispatch, hlog_t *hlog, fe_server_t **out);
/* "host:port" actually bound (owned by the server). */
const char *fe_server_endpoint(const fe_server_t *fe);
/* The dispatcher's sink: deliver an engine event for one of our requests. */
void fe_server_on_event(void *fe, const engine_event_t *ev, int worker);
/* Begin an orderly shutdown: new requests get 503; in-flight requests may
 * run for grace_s, then are cancelled. done(arg) is called once no request
 * is in flight any more. */
void fe_server_drain(fe_server_t *fe, double grace_s, void (*done)(void *arg), void *arg);
/* Requests in flight (admitted, not yet answered). */
size_t fe_server_n_active(const fe_server_t *fe);
void fe_server_destroy(fe_server_t *fe);

/* In-process dispatcher (src/frontend/dispatch_local.c): one engine stepped
 * from the event loop while it has work. Owns the engine. */
rt_status_t dispatch_local_create(struct event_base *base, const engine_config_t *cfg, dispatch_t *out);
void dispatch_local_destroy(dispatch_t d);

#endif
