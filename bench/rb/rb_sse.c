/*
 * rb_sse.c - reading one OpenAI response: the SSE stream line by line, or a
 * whole JSON body (see rb_sse.h). JSON with cJSON.
 */
#include "rb_sse.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

void rb_sse_reset(rb_sse_t *s, rb_api_t api)
{
    s->api = api;
    s->line_len = s->text_len = s->n_tok = s->raw_len = 0;
    if (s->text) s->text[0] = 0;
    if (s->raw) s->raw[0] = 0;
    s->event_error = s->done = s->failed = s->nomem = false;
    s->t_last = 0;
    s->usage_completion = s->usage_prompt = -1;
    s->err[0] = 0;
}

void rb_sse_free(rb_sse_t *s)
{
    free(s->line);
    free(s->text);
    free(s->tok);
    free(s->raw);
    memset(s, 0, sizeof *s);
}

static void sse_fail(rb_sse_t *s, const char *what, const char *detail)
{
    if (!s->failed) snprintf(s->err, sizeof s->err, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    s->failed = true;
}

static void add_text(rb_sse_t *s, const char *t, size_t n)
{
    if (!reserve((void **)&s->text, &s->text_cap, s->text_len + n + 1, 1)) {
        s->nomem = true;
        sse_fail(s, "out of memory", NULL);
        return;
    }
    memcpy(s->text + s->text_len, t, n);
    s->text_len += n;
    s->text[s->text_len] = 0;
}

/* usage.completion_tokens / prompt_tokens of a response object, if present */
static void read_usage(rb_sse_t *s, const cJSON *root)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (!cJSON_IsObject(u)) return;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    if (cJSON_IsNumber(c)) s->usage_completion = (int32_t)c->valuedouble;
    if (cJSON_IsNumber(p)) s->usage_prompt = (int32_t)p->valuedouble;
}

/* The error member's message (string or {"message": ...}). */
static const char *error_text(const cJSON *e)
{
    if (cJSON_IsString(e)) return e->valuestring;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    return cJSON_IsString(m) ? m->valuestring : "error event";
}

/* choices[0]'s content: delta.content (chat stream), message.content (chat),
 * or text (completions). NULL if absent or not a string. */
static const char *choice_content(const cJSON *root, rb_api_t api, bool stream)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *c0 = cJSON_IsArray(ch) ? cJSON_GetArrayItem(ch, 0) : NULL;
    if (!cJSON_IsObject(c0)) return NULL;
    const cJSON *v;
    if (api == RB_API_CHAT) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(c0, stream ? "delta" : "message");
        v = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "content") : NULL;
    } else {
        v = cJSON_GetObjectItemCaseSensitive(c0, "text");
    }
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void on_data(rb_sse_t *s, const char *d, size_t n, double now)
{
    s->t_last = now;
    if (s->done) return; /* nothing after [DONE] counts */
    if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
        s->done = true;
        return;
    }
    cJSON *root = cJSON_ParseWithLength(d, n);
    if (!root || !cJSON_IsObject(root)) {
        char head[48];
        snprintf(head, sizeof head, "%.*s", (int)(n < 40 ? n : 40), d);
        sse_fail(s, "malformed SSE data", head);
        cJSON_Delete(root);
        return;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (s->event_error || (e && !cJSON_IsNull(e))) {
        sse_fail(s, "error event", e ? error_text(e) : NULL);
        cJSON_Delete(root);
        return;
    }
    const char *c = choice_content(root, s->api, true);
    if (c && c[0]) {
        if (!reserve((void **)&s->tok, &s->tok_cap, s->n_tok + 1, sizeof *s->tok)) {
            s->nomem = true;
            sse_fail(s, "out of memory", NULL);
        } else {
            s->tok[s->n_tok++] = now;
            add_text(s, c, strlen(c));
        }
    }
    read_usage(s, root);
    cJSON_Delete(root);
}

static void on_line(rb_sse_t *s, const char *l, size_t n, double now)
{
    if (n && l[n - 1] == '\r') n--;
    if (n == 0) { /* end of an event */
        s->event_error = false;
        return;
    }
    if (l[0] == ':') return; /* comment */
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = (size_t)(l + n - v);
    if (vl && *v == ' ') v++, vl--;
    if (fl == 4 && memcmp(l, "data", 4) == 0) on_data(s, v, vl, now);
    else if (fl == 5 && memcmp(l, "event", 5) == 0) s->event_error = vl == 5 && memcmp(v, "error", 5) == 0;
    /* id:, retry: and unknown fields are ignored, as the SSE spec says */
}

void rb_sse_feed(rb_sse_t *s, const char *p, size_t n, double now)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (s->line_len == 0 && nl) { /* a whole line in the buffer: no copy */
            on_line(s, p, take, now);
        } else {
            if (!reserve((void **)&s->line, &s->line_cap, s->line_len + take + 1, 1)) {
                s->nomem = true;
                sse_fail(s, "out of memory", NULL);
                return;
            }
            memcpy(s->line + s->line_len, p, take);
            s->line_len += take;
            if (nl) {
                on_line(s, s->line, s->line_len, now);
                s->line_len = 0;
            }
        }
        if (!nl) return;
        p = nl + 1;
        n -= take + 1;
    }
}

void rb_sse_finish(rb_sse_t *s, double now)
{
    if (s->line_len) {
        on_line(s, s->line, s->line_len, now);
        s->line_len = 0;
    }
}

void rb_sse_feed_raw(rb_sse_t *s, const char *p, size_t n, size_t max_raw)
{
    if (s->raw_len >= max_raw) return;
    if (n > max_raw - s->raw_len) n = max_raw - s->raw_len;
    if (!reserve((void **)&s->raw, &s->raw_cap, s->raw_len + n + 1, 1)) {
        s->nomem = true;
        sse_fail(s, "out of memory", NULL);
        return;
    }
    memcpy(s->raw + s->raw_len, p, n);
    s->raw_len += n;
    s->raw[s->raw_len] = 0;
}

void rb_sse_parse_full(rb_sse_t *s)
{
    cJSON *root = cJSON_ParseWithLength(s->raw ? s->raw : "", s->raw_len);
    if (!cJSON_IsObject(root)) {
        sse_fail(s, "malformed JSON response", NULL);
        cJSON_Delete(root);
        return;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (e && !cJSON_IsNull(e)) {
        sse_fail(s, "error response", error_text(e));
    } else {
        const char *c = choice_content(root, s->api, false);
        if (!c) sse_fail(s, "response without choices[0] content", NULL);
        else add_text(s, c, strlen(c));
        read_usage(s, root);
    }
    cJSON_Delete(root);
}

void rb_sse_error_message(const rb_sse_t *s, char *buf, size_t cap)
{
    if (!cap) return;
    buf[0] = 0;
    if (!s->raw_len) return;
    cJSON *root = cJSON_ParseWithLength(s->raw, s->raw_len);
    const cJSON *e = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    if (e) snprintf(buf, cap, "%s", error_text(e));
    else snprintf(buf, cap, "%.*s", (int)(s->raw_len < 120 ? s->raw_len : 120), s->raw);
    cJSON_Delete(root);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}
