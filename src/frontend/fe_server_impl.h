/*
 * fe_server_impl.h - the front end's private state, shared by
 * http_server.c (listener, routing, small endpoints, replies, drain),
 * fe_generate.c (completions: admission, dispatch, events, streaming) and
 * fe_tokenize.c (vLLM's /tokenize and /detokenize).
 *
 * Request table: every admitted request sits in slots[] until its last
 * engine event arrived and its reply is complete; a choice's engine id
 * encodes (seq, slot, choice) so an event finds its request without a
 * search, and an event for a request that is gone (slot free or reused by a
 * later seq) is recognised and dropped.
 *
 * Backlog: when the dispatcher answers RT_ERR_FULL (every engine's queue is
 * full) a choice is parked in a FIFO and submitted when an engine request
 * ends; while anything is parked, new choices queue behind it. So up to
 * server:max_queued_requests requests are held however small the engines'
 * own queues are. A refusal may also come later as an ERROR (RT_ERR_FULL)
 * event (the MPI dispatcher's workers): the choice is parked again. To
 * avoid a storm of refusals, the number in flight at the last refusal is
 * kept as a capacity hint: parked choices go out only below it. A choice
 * submitted at the hint that is taken (its first token comes) raises it by
 * one, and a timer probes one beyond it now and then, so the hint follows
 * the engines' room up again (additive increase, reset on refusal).
 */
#ifndef ROTOR_FRONTEND_FE_SERVER_IMPL_H
#define ROTOR_FRONTEND_FE_SERVER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/fe_request.h"
#include "frontend/metrics.h"
#include "frontend/openai_parse.h"
#include "rotor/frontend.h"

#include <event2/util.h>

struct evhttp;
struct evhttp_request;
struct evconnlistener;
struct event;
struct evbuffer;

struct fe_server {
    struct event_base *base;         /* borrowed */
    const cfg_t *cfg;                /* borrowed */
    fe_model_t model;                /* vocab borrowed; model_name points to model_name below */
    char *model_name;                /* owned copy */
    dispatch_t dispatch;             /* borrowed */
    hlog_t *hlog;                    /* borrowed, may be NULL */
    fe_metrics_t *metrics;           /* owned */
    struct evhttp *http;             /* owned */
    struct evconnlistener *listener; /* owned by http once bound */
    char endpoint[128];

    /* limits and defaults from the config */
    char *api_key; /* owned; NULL when none */
    size_t max_body;
    size_t max_queued;
    int max_tokens_limit; /* 0 = n_ctx */
    int default_max_tokens;
    oai_defaults_t defaults;

    /* requests */
    fe_req_t **slots;                 /* (cap_slots) owned table, entries owned */
    uint32_t cap_slots, n_used_slots; /* slots [0, n_used_slots) were handed out once */
    uint32_t *free_slots;             /* (cap_slots) stack of free indices */
    uint32_t n_free;
    size_t n_live;     /* requests in the table */
    uint64_t *backlog; /* (bl_cap) ring of engine ids of parked choices; owned */
    size_t bl_head, bl_len, bl_cap;
    bool pumping;          /* inside pump_backlog */
    size_t n_inflight;     /* choices submitted whose FINISH/ERROR has not come */
    size_t cap_hint;       /* engines took at most this many at the last refusal */
    struct event *ev_pump; /* owned: retries the backlog while it is not empty */
    uint64_t next_seq;
    uint64_t salt;       /* random part of response ids */
    uint64_t seed_state; /* seeds for requests without one */
    int64_t created;     /* server start, Unix seconds */

    /* drain */
    bool draining;
    bool drain_done;        /* done() was called */
    struct event *ev_grace; /* owned: grace period over -> cancel */
    struct event *ev_hard;  /* owned: give up waiting for engines */
    struct event *ev_done;  /* owned: calls done() from the loop */
    void (*done)(void *arg);
    void *done_arg;

    struct evbuffer *chunk;        /* owned: every streamed chunk passes through it */
    char scratch[FE_TEXT_SCRATCH]; /* text delta of the event being handled */
};

/* Replies (also count the status in the metrics). body is copied. */
void fe_reply(fe_server_t *fe, struct evhttp_request *req, int status, const char *content_type,
              const char *body, size_t len);
void fe_reply_error(fe_server_t *fe, struct evhttp_request *req, const oai_error_t *e);
const char *fe_status_phrase(int status);

/* status with the JSON of o (taken; NULL: a 500, out of memory). */
void fe_reply_json(fe_server_t *fe, struct evhttp_request *req, int status, struct cJSON *o);
/* POST /v1/chat/completions and /v1/completions (body complete). */
void fe_generate(fe_server_t *fe, struct evhttp_request *req, oai_kind_t kind, double t_arrival);

/* POST /tokenize and /detokenize (vLLM; body complete). Answered at once on
 * rank 0, no engine involved. */
void fe_tokenize(fe_server_t *fe, struct evhttp_request *req);
void fe_detokenize(fe_server_t *fe, struct evhttp_request *req);

/* The prompt tokens of chat messages exactly as /v1/chat/completions makes
 * them: rendered with the model's chat template (and the generation prompt
 * when asked), tokenized with BOS and the template's special tokens parsed.
 * tools[0..n_tools): the tools' JSON definitions (chat_render_tools);
 * forced (or NULL): text the assistant's answer starts with, appended.
 * *ids is malloc'd (the caller's) on success. */
rt_status_t fe_encode_chat(const fe_server_t *fe, const chat_msg_t *msgs, size_t n_msgs,
                           const char *const *tools, size_t n_tools, bool add_generation_prompt,
                           const char *forced, int32_t **ids, size_t *n);
/* A text prompt's tokens as /v1/completions makes them (add_special = true):
 * special-token text stays plain text; add_special adds BOS (and EOS) where
 * the model's metadata asks for them. */
rt_status_t fe_encode_text(const fe_server_t *fe, const char *text, bool add_special, int32_t **ids,
                           size_t *n);
/* The text of ids[0..n) (malloc'd, NUL-terminated; the caller's), through
 * the streaming detokenizer (invalid UTF-8 as U+FFFD, a NUL byte as
 * U+FFFD), special tokens spelled out when special; NULL when out of
 * memory. */
char *fe_detokenize_ids(const tok_vocab_t *v, const int32_t *ids, size_t n, bool special);
/* Checks a request body passes before it is parsed: its size (413) and
 * the drain (503). false with *e set when it is refused. */
bool fe_admit_body(const fe_server_t *fe, size_t len, oai_error_t *e);
/* The request's "model" names the served model; else *e is a 404
 * model_not_found. */
bool fe_check_model(const fe_server_t *fe, const char *model, oai_error_t *e);

/* Cancel every live request's engine requests (drain, destroy); requests
 * not yet answered are answered with a 503. */
void fe_cancel_all(fe_server_t *fe, const char *why);
/* Free every request still in the table, touching no connection (destroy). */
void fe_free_all(fe_server_t *fe);
/* Retry parked choices (the backlog timer's callback). */
void fe_pump_backlog(evutil_socket_t fd, short what, void *arg);
/* During a drain: schedule done() when nothing is live any more. */
void fe_drain_check(fe_server_t *fe);

#endif
