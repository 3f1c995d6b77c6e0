/*
 * rb_sse.h - one response of an OpenAI endpoint, as rotor-bench reads it.
 *
 * Streaming: the body is a server-sent event stream. Bytes are fed as they
 * arrive (rb_sse_feed, with their arrival time); lines are split on "\n"
 * (a trailing "\r" dropped), "data:" lines carry a JSON chunk or "[DONE]".
 * A chunk whose choices[0].delta.content (chat) or choices[0].text
 * (completions) is a non-empty string is a token arrival: its time is kept
 * and its text appended. A chunk with a "usage" object gives the token
 * counts; a chunk with an "error" member, an "event: error" event, or data
 * that is not JSON marks the stream failed. JSON is parsed with cJSON.
 *
 * Non-streaming: the whole body is kept (rb_sse_feed_raw) and parsed at the
 * end (rb_sse_parse_full): choices[0].message.content / choices[0].text and
 * usage.
 *
 * Ownership: rb_sse_t owns its buffers (rb_sse_reset keeps their memory,
 * rb_sse_free releases it).
 */
#ifndef ROTOR_RB_SSE_H
#define ROTOR_RB_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rb_workload.h"

typedef struct {
    rb_api_t api;
    /* the current unfinished line */
    char *line;
    size_t line_len, line_cap;
    bool event_error; /* the current event was named "error" */
    /* content */
    char *text; /* concatenated content, NUL-terminated */
    size_t text_len, text_cap;
    double *tok; /* (n_tok) arrival time of each content chunk */
    size_t n_tok, tok_cap;
    /* raw body (non-streaming responses and HTTP errors), NUL-terminated */
    char *raw;
    size_t raw_len, raw_cap;
    /* outcome */
    bool done;        /* [DONE] seen */
    bool failed;      /* error event or malformed data */
    double t_last;    /* time of the last data line; 0 if none */
    int32_t usage_completion, usage_prompt; /* -1 if no usage came */
    char err[160];    /* why it failed */
    bool nomem;       /* an allocation failed (treated as failed) */
} rb_sse_t;

void rb_sse_reset(rb_sse_t *s, rb_api_t api);
void rb_sse_free(rb_sse_t *s);

/* Feed n bytes of an event stream that arrived at time now. */
void rb_sse_feed(rb_sse_t *s, const char *p, size_t n, double now);
/* The stream ended: a last line without "\n" counts as if it had one. */
void rb_sse_finish(rb_sse_t *s, double now);
/* Keep n body bytes (at most max_raw in all; the rest are dropped). */
void rb_sse_feed_raw(rb_sse_t *s, const char *p, size_t n, size_t max_raw);
/* Parse the kept body as one non-streaming response (sets text, usage,
 * failed/err). */
void rb_sse_parse_full(rb_sse_t *s);
/* A short message from an error body: its error.message if it is OpenAI
 * JSON, else its first bytes. Writes at most cap bytes into buf. */
void rb_sse_error_message(const rb_sse_t *s, char *buf, size_t cap);

#endif
