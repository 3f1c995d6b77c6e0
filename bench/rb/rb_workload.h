/*
 * rb_workload.h - rotor-bench's workloads: what to send and when. The load
 * engine (rb_main.c, rb_run.c) asks for items and reports completions; the
 * workload builds each request's JSON body and its earliest send time.
 *
 * Kinds (one per run):
 *   synthetic  input/output lengths drawn from normal distributions (mean,
 *              stddev, clipped to >= 1), prompts of real tokens for the model
 *   prefix     synthetic, plus one of --shared-prefixes prompts of
 *              --prefix-tokens tokens in front of each request's own part, or
 *              a shared system prompt (--system-prompt-tokens) plus per-user
 *              context (--user-context-tokens, one context per user/session)
 *   sessions   --sessions users holding --turns-turn conversations: each turn
 *              carries the whole history (earlier prompts and the answers the
 *              endpoint gave) and is sent --think-time s after the previous
 *              answer ended
 *   trace      Mooncake JSONL (timestamp ms, input_length, output_length,
 *              hash_ids of 512-token blocks) replayed on its timestamps / speed;
 *              equal hash ids map to identical token spans, so the endpoint's
 *              prefix cache sees what the trace's sharing implies
 *
 * Prompt tokens: with --tokenizer-gguf FILE, text is built from the model's
 * own vocabulary and re-tokenized (librotor's tokenizer) until it is exactly
 * the wanted number of tokens; on /v1/completions token-id prompts are sent
 * as ids. Without it, words of a fixed list are used and counted as one token
 * each (approximate; the summary says so).
 *
 * Ownership: rb_workload_t owns its state; an item's body is malloc'd and
 * owned by the item until rb_item_free. Not thread-safe (one load thread).
 */
#ifndef ROTOR_RB_WORKLOAD_H
#define ROTOR_RB_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef enum { RB_API_CHAT = 0, RB_API_COMPLETIONS } rb_api_t;
typedef enum { RB_WL_SYNTHETIC = 0, RB_WL_PREFIX, RB_WL_SESSIONS, RB_WL_TRACE } rb_wl_kind_t;

typedef struct {
    rb_wl_kind_t kind;
    rb_api_t api;
    const char *model;          /* "model" field of every body */
    uint64_t seed;
    int64_t n_requests;         /* total measured requests (0 = until duration / trace end) */
    int64_t n_warmup;           /* extra requests sent first, excluded from results */
    double input_mean, input_stddev;   /* tokens */
    double output_mean, output_stddev; /* tokens (max_tokens; ignore_eos makes them hold) */
    bool ignore_eos;            /* default true */
    bool stream;                /* default true; stream_options.include_usage always set */
    const char *tokenizer_gguf; /* NULL: approximate word prompts */
    /* prefix */
    int n_prefixes, prefix_tokens;
    int system_prompt_tokens, user_context_tokens, n_users;
    /* sessions */
    int n_sessions, turns;
    double think_time_s;
    /* trace */
    const char *trace_path;
    double speed;               /* 1 = the trace's own times */
    int block_tokens;           /* tokens per hash id (512) */
} rb_workload_opts_t;

void rb_workload_opts_default(rb_workload_opts_t *o);

#define RB_ASAP (-1.0) /* send whenever the concurrency limit allows */

typedef struct {
    uint64_t index;        /* 0.. in creation order; warmup items first */
    int32_t session, turn; /* -1, -1 outside sessions */
    double t_arrival;      /* s since run start when it may be sent, or RB_ASAP */
    int32_t input_tokens;  /* prompt tokens as built (exact with a tokenizer) */
    int32_t max_tokens;
    bool warmup;
    char *body;            /* JSON request body, owned */
    size_t body_len;
} rb_item_t;

typedef struct rb_workload rb_workload_t;

rt_status_t rb_workload_create(const rb_workload_opts_t *o, rb_workload_t **out);
void rb_workload_destroy(rb_workload_t *w);

/* The next item that may be sent at time now (s since start). Returns true
 * and fills *it if one is due; else false, with *next_at the time the next
 * one becomes due (INFINITY if it waits on a completion or none is left). */
bool rb_workload_next(rb_workload_t *w, double now, rb_item_t *it, double *next_at);
/* An item ended (ok or not); response_text is what the endpoint answered
 * (NULL on error). Sessions use it to build the next turn. */
void rb_workload_complete(rb_workload_t *w, const rb_item_t *it, bool ok, const char *response_text, double now);
/* True when every item was handed out and no more will come. */
bool rb_workload_exhausted(const rb_workload_t *w);
/* Total items this run will create, or -1 if open-ended (duration). */
int64_t rb_workload_total(const rb_workload_t *w);
void rb_item_free(rb_item_t *it);

/* True when prompts are counted with the model's tokenizer
 * (--tokenizer-gguf); false with the approximate word list (the summary
 * should say input token counts are estimates). */
bool rb_workload_exact_tokens(const rb_workload_t *w);
/* NULL, or why the workload stopped making items (a prompt could not be
 * built); rb_workload_next then returns false and rb_workload_exhausted
 * true. The string is owned by w. */
const char *rb_workload_error(const rb_workload_t *w);

#endif
