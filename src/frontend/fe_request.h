/*
 * fe_request.h - the front end's state for one admitted request: its ids,
 * prompt, and one fe_choice_t per choice (n), each mapped to one engine
 * request. A choice turns TOKEN events into text the way `rotor generate`
 * does: UTF-8-safe streaming detokenization (tok_stream_*), stop strings held
 * back (stop_matcher_*), end-of-generation tokens not rendered; it also
 * collects logprobs, token arrival times and the engine's timeline.
 *
 * Ownership: fe_req_t owns its parsed request, prompt and choices; the
 * evhttp request it points to is evhttp's (see http_server.c for when it
 * may be touched). Created by fe_req_create, freed once by fe_req_destroy.
 */
#ifndef ROTOR_FRONTEND_FE_REQUEST_H
#define ROTOR_FRONTEND_FE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/openai_parse.h"
#include "frontend/openai_render.h"
#include "rotor/engine.h"
#include "rotor/hlog.h"
#include "rotor/sampler.h"
#include "rotor/tokenizer.h"

struct evhttp_request;
struct event;
struct fe_server;

/* Scratch the text path writes a delta into (one per server). */
#define FE_TEXT_SCRATCH 16384

typedef struct {
    uint64_t eid;     /* engine request id */
    int worker;       /* -1 until routed */
    int32_t route_overlap_blocks; /* the router's prefix estimate (dispatch_route_t), -1 if none */
    bool submitted;   /* dispatch.submit succeeded */
    bool parked;      /* waiting in the server's backlog for engine room */
    bool edge;        /* submitted at the server's capacity hint (fe_server_impl.h) */
    bool engine_done; /* FINISH or ERROR arrived (or never submitted) */
    bool text_done;   /* finish_reason known, no more text */
    bool cancel_sent;
    const char *finish_reason; /* static: stop, length, abort, error */
    tok_stream_t ts;
    stop_matcher_t *stop; /* owned; NULL without stop strings */
    stop_matcher_t *tool_open; /* streaming with tools: finds CHAT_TOOL_CALL_OPEN in the content; owned */
    bool in_tool;              /* streaming with tools: the content ended where a call began */
    bool tool_decided;         /* streaming with tools, Llama 3: the answer's first character was seen */
    size_t tool_streamed;      /* streaming with tools: bytes of text sent as content */
    char *text;           /* (text_len) whole text, non-streaming only; owned */
    size_t text_len, text_cap;
    size_t raw_len;         /* bytes detokenized so far (text_offset), after the echoed prompt */
    size_t echo_off;        /* echo: bytes of the prompt tokens given a logprob entry so far */
    oai_lp_t lp;            /* logprobs not yet sent */
    int n_tokens;           /* completion tokens accepted */
    int n_prompt, n_cached; /* from FINISH */
    double t_routed, t_scheduled, t_prefill_done, t_first, t_last;
    double *tok_t; /* (n_tokens) arrival times; owned */
    size_t tok_cap;
    char error[HLOG_ERROR_LEN];
} fe_choice_t;

typedef struct fe_req {
    struct fe_server *fe;
    uint64_t seq;      /* request number (upper bits of engine ids) */
    uint32_t slot;     /* index in the server's table */
    oai_request_t oai; /* the parsed request; owned */
    char id[48];       /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;
    int32_t *prompt; /* (n_prompt) owned */
    size_t n_prompt;
    int max_tokens;
    fe_choice_t *choices; /* (n_choices) owned */
    int n_choices;
    /* HTTP side */
    struct evhttp_request *http; /* NULL once answered or the client left */
    struct event *watch;         /* EOF watcher on the client's socket; owned */
    bool stream_started;         /* SSE headers sent */
    bool answered;               /* the reply was completed (or abandoned) */
    bool client_gone;
    bool failed; /* an error ends the request; err says which */
    oai_error_t err;
    int http_status;
    int busy; /* > 0 while a dispatch call for it is on the stack */
    double t_arrival, t_first_token, t_finish;
} fe_req_t;

/* A new request taking ownership of *oai (zeroed) and prompt on success
 * (the caller keeps both on failure); choice engine ids are
 * (seq << 24) | (slot << 4) | i. */
rt_status_t fe_req_create(struct fe_server *fe, uint64_t seq, uint32_t slot, oai_request_t *oai,
                          int32_t *prompt, size_t n_prompt, int max_tokens, fe_req_t **out);
void fe_req_destroy(fe_req_t *r);

#define FE_EID(seq, slot, i) (((uint64_t)(seq) << 24) | ((uint64_t)(slot) << 4) | (uint64_t)(i))
#define FE_EID_SLOT(eid) ((uint32_t)(((eid) >> 4) & 0xfffff))
#define FE_EID_SEQ(eid) ((eid) >> 24)
#define FE_EID_CHOICE(eid) ((int)((eid)&0xf))
#define FE_MAX_SLOTS (1u << 20)

/* How a choice renders tokens. */
typedef struct {
    const tok_vocab_t *vocab;
    oai_kind_t kind;
    bool keep_text; /* accumulate the whole text (non-streaming) */
    bool logprobs;
    int top_logprobs;
    bool render_special; /* !skip_special_tokens */
    bool ignore_eos;
    int min_tokens;          /* stop strings apply from this many tokens on */
    const int32_t *stop_ids; /* (n_stop_ids) */
    size_t n_stop_ids;
} fe_text_opts_t;

fe_text_opts_t fe_req_text_opts(const fe_req_t *r, const tok_vocab_t *vocab);

/* A TOKEN for choice c at time now. Writes the newly safe text to out
 * (cap FE_TEXT_SCRATCH, NUL-terminated) and its length to *len. Returns
 * true when a stop string matched: the choice is then text_done ("stop")
 * and its engine request should be cancelled. Tokens after text_done are
 * ignored (*len = 0, not counted). */
bool fe_choice_token(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, double now,
                     char *out, size_t *len);
/* Text the choice's text starts with: completions' echoed prompt (its
 * text_offsets count from the prompt's start; streaming, c->text holds just
 * the prompt, for the first chunk), or a forced tool call's opening. false
 * when out of memory. */
bool fe_choice_lead(fe_choice_t *c, const char *text, size_t len);
/* A PROMPT_LOGPROB for choice c (echo with logprobs): its logprobs entry,
 * after a null one for the prompt's first token (prompt0) before the first. */
void fe_choice_prompt_logprob(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, int32_t prompt0);
/* The engine's FINISH: records counts and times; if the text was still
 * open, flushes what was held back into out and sets finish_reason from the
 * engine's reason (CANCELLED -> "abort"). */
void fe_choice_finish(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, char *out,
                      size_t *len);
/* End the text without an engine FINISH (client gone, error, drain). */
void fe_choice_end(fe_choice_t *c, const char *finish_reason);

/* usage numbers over all choices: prompt tokens once, completion tokens
 * summed, cached tokens the least any choice had. */
void fe_req_usage(const fe_req_t *r, int *prompt, int *completion, int *cached);

/* Seconds the choice waited in its engine's queue (routed -> scheduled);
 * 0 while either time is unknown. */
double fe_choice_queue_wait(const fe_choice_t *c);

/* Copy src into dst[cap], truncated, always NUL-terminated (snprintf "%s"
 * from a larger fixed buffer trips -Wformat-truncation). */
void fe_copy_str(char *dst, size_t cap, const char *src);

/* One /requests record per choice (hlog ids are engine ids). */
void fe_req_hlog_record(const fe_req_t *r, int i, hlog_request_t *out);

#endif
