/*
 * openai_render.c - OpenAI response, chunk, logprobs, models and error JSON
 * built with cJSON. Field order follows OpenAI's own responses so that diffs
 * against them read easily.
 */
#include "frontend/openai_render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *oai_sse_event(const cJSON *obj, size_t *len) {
    char *js = cJSON_PrintUnformatted(obj);
    if (!js) return NULL;
    size_t l = strlen(js);
    char *s = malloc(l + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, js, l);
        memcpy(s + 6 + l, "\n\n", 3);
        *len = l + 8;
    }
    cJSON_free(js);
    return s;
}

cJSON *oai_error_object(const oai_error_t *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON *in = cJSON_AddObjectToObject(o, "error");
    if (!in) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(in, "message", e->message);
    cJSON_AddStringToObject(in, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(in, "param", e->param);
    else
        cJSON_AddNullToObject(in, "param");
    if (e->code)
        cJSON_AddStringToObject(in, "code", e->code);
    else
        cJSON_AddNullToObject(in, "code");
    return o;
}

char *oai_render_error(const oai_error_t *e) {
    cJSON *o = oai_error_object(e);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static const char *object_name(oai_kind_t kind, bool chunk) {
    if (kind == OAI_CHAT) return chunk ? "chat.completion.chunk" : "chat.completion";
    return "text_completion";
}

static cJSON *head_object(const oai_head_t *h, bool chunk) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", h->id);
    cJSON_AddStringToObject(o, "object", object_name(h->kind, chunk));
    cJSON_AddNumberToObject(o, "created", (double)h->created);
    cJSON_AddStringToObject(o, "model", h->model);
    return o;
}

static void add_str_or_null(cJSON *o, const char *key, const char *v) {
    if (v)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_taken_or_null(cJSON *o, const char *key, cJSON *v) {
    if (v)
        cJSON_AddItemToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

/* cJSON's Add* calls return NULL when an allocation fails; a response
 * whose top-level object exists but lacks a field after an allocation
 * failure is accepted as degradation (the top level NULL is the OOM signal). */

cJSON *oai_chunk(const oai_head_t *h, int index, const char *role, const char *text,
                 const char *finish_reason, cJSON *logprobs) {
    cJSON *o = head_object(h, true);
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    cJSON *c = cJSON_CreateObject();
    if (!choices || !c) {
        cJSON_Delete(o);
        cJSON_Delete(c);
        cJSON_Delete(logprobs);
        return NULL;
    }
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", index);
    if (h->kind == OAI_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (d && role) cJSON_AddStringToObject(d, "role", role);
        if (d && text) cJSON_AddStringToObject(d, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    add_taken_or_null(c, "logprobs", logprobs);
    add_str_or_null(c, "finish_reason", finish_reason);
    return o;
}

cJSON *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens) {
    cJSON *u = cJSON_CreateObject();
    if (!u) return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", cached_tokens);
    return u;
}

cJSON *oai_usage_chunk(const oai_head_t *h, cJSON *usage) {
    cJSON *o = head_object(h, true);
    if (!o || !usage) {
        cJSON_Delete(o);
        cJSON_Delete(usage);
        return NULL;
    }
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage);
    return o;
}

cJSON *oai_choice(oai_kind_t kind, int index, const char *text, const char *finish_reason,
                  cJSON *logprobs) {
    cJSON *c = cJSON_CreateObject();
    if (!c) {
        cJSON_Delete(logprobs);
        return NULL;
    }
    cJSON_AddNumberToObject(c, "index", index);
    if (kind == OAI_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        if (m) {
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", text ? text : "");
        }
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    add_taken_or_null(c, "logprobs", logprobs);
    add_str_or_null(c, "finish_reason", finish_reason);
    return c;
}

cJSON *oai_tool_calls(const chat_parsed_call_t *calls, size_t n, const char *id_base, bool with_index) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON *f = c ? cJSON_AddObjectToObject(c, "function") : NULL;
        if (!f) {
            cJSON_Delete(c);
            cJSON_Delete(a);
            return NULL;
        }
        char id[96];
        snprintf(id, sizeof id, "call_%s%zu", id_base, i);
        if (with_index) cJSON_AddNumberToObject(c, "index", (double)i);
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "type", "function");
        cJSON_AddStringToObject(f, "name", calls[i].name);
        cJSON_AddStringToObject(f, "arguments", calls[i].arguments);
        cJSON_AddItemToArray(a, c);
    }
    return a;
}

cJSON *oai_choice_message(int index, const char *content, cJSON *tool_calls, const char *finish_reason,
                          cJSON *logprobs) {
    cJSON *c = cJSON_CreateObject();
    cJSON *m = c ? cJSON_AddObjectToObject(c, "message") : NULL;
    if (!m) {
        cJSON_Delete(c);
        cJSON_Delete(tool_calls);
        cJSON_Delete(logprobs);
        return NULL;
    }
    cJSON_AddNumberToObject(c, "index", index);
    cJSON_AddStringToObject(m, "role", "assistant");
    add_str_or_null(m, "content", content);
    if (tool_calls) cJSON_AddItemToObject(m, "tool_calls", tool_calls);
    add_taken_or_null(c, "logprobs", logprobs);
    add_str_or_null(c, "finish_reason", finish_reason);
    return c;
}

cJSON *oai_chunk_tool_calls(const oai_head_t *h, int index, const char *content, cJSON *tool_calls,
                            const char *finish_reason) {
    cJSON *o = oai_chunk(h, index, NULL, content, finish_reason, NULL);
    cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"),
                                                                       0), "delta")
                 : NULL;
    if (!d) {
        cJSON_Delete(o);
        cJSON_Delete(tool_calls);
        return NULL;
    }
    if (tool_calls) cJSON_AddItemToObject(d, "tool_calls", tool_calls);
    return o;
}

cJSON *oai_response(const oai_head_t *h, cJSON *choices, cJSON *usage) {
    cJSON *o = head_object(h, false);
    if (!o || !choices || !usage) {
        cJSON_Delete(o);
        cJSON_Delete(choices);
        cJSON_Delete(usage);
        return NULL;
    }
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddItemToObject(o, "usage", usage);
    return o;
}

cJSON *oai_models(const char *model, int64_t created, int max_model_len) {
    cJSON *o = cJSON_CreateObject();
    cJSON *data = o ? cJSON_AddArrayToObject(o, "data") : NULL;
    cJSON *m = cJSON_CreateObject();
    if (!data || !m) {
        cJSON_Delete(o);
        cJSON_Delete(m);
        return NULL;
    }
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "rotor");
    cJSON_AddStringToObject(m, "root", model);
    cJSON_AddNullToObject(m, "parent");
    cJSON_AddNumberToObject(m, "max_model_len", max_model_len);
    return o;
}

/* ------------------------------------------------------------- logprobs */

size_t oai_utf8_sanitize(const char *s, size_t n, char *out, size_t cap) {
    static const char repl[3] = {(char)0xef, (char)0xbf, (char)0xbd};
    size_t w = 0, i = 0;
    if (cap == 0) return 0;
    while (i < n) {
        size_t l = 1;
        while (l <= 4 && i + l <= n && !oai_utf8_valid(s + i, l))
            l++;
        const char *src = s + i;
        size_t sl = l;
        if (l > 4 || i + l > n) { /* no valid character starts here */
            src = repl;
            sl = 3;
            l = 1;
        }
        if (w + sl >= cap) break;
        memcpy(out + w, src, sl);
        w += sl;
        i += l;
    }
    out[w] = '\0';
    return w;
}

/* OpenAI reports -inf as -9999.0. */
static double finite_lp(float x) {
    return isfinite(x) ? (double)x : -9999.0;
}

/* Token text (control tokens spelled out) into buf; returns raw length. */
static size_t token_bytes(const tok_vocab_t *v, int32_t id, char *buf, size_t cap) {
    size_t n = tok_token_to_piece(v, id, buf, cap, true);
    return n < cap ? n : cap;
}

/* {"token", "logprob", "bytes"} of one token. */
static cJSON *chat_token_entry(const tok_vocab_t *v, int32_t id, float logprob) {
    char raw[256], text[3 * 256 + 1];
    size_t n = token_bytes(v, id, raw, sizeof raw);
    oai_utf8_sanitize(raw, n, text, sizeof text);
    cJSON *e = cJSON_CreateObject();
    if (!e) return NULL;
    cJSON_AddStringToObject(e, "token", text);
    cJSON_AddNumberToObject(e, "logprob", finite_lp(logprob));
    cJSON *b = cJSON_AddArrayToObject(e, "bytes");
    for (size_t i = 0; b && i < n; i++)
        cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)raw[i]));
    return e;
}

static bool lp_add_chat(oai_lp_t *lp, const tok_vocab_t *v, const engine_event_t *ev, int n_top) {
    if (!lp->obj) {
        lp->obj = cJSON_CreateObject();
        if (!lp->obj || !cJSON_AddArrayToObject(lp->obj, "content")) return false;
    }
    cJSON *content = cJSON_GetObjectItemCaseSensitive(lp->obj, "content");
    cJSON *e = chat_token_entry(v, ev->token, ev->logprob);
    if (!e) return false;
    cJSON_AddItemToArray(content, e);
    cJSON *tops = cJSON_AddArrayToObject(e, "top_logprobs");
    if (!tops) return false;
    int k = ev->n_top < n_top ? ev->n_top : n_top;
    for (int i = 0; i < k; i++) {
        cJSON *t = chat_token_entry(v, ev->top_ids[i], ev->top_logprobs[i]);
        if (!t) return false;
        cJSON_AddItemToArray(tops, t);
    }
    return true;
}

/* the completions' logprobs object, made on first use; false on OOM */
static bool legacy_obj(oai_lp_t *lp) {
    static const char *keys[4] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    if (lp->obj) return true;
    lp->obj = cJSON_CreateObject();
    if (!lp->obj) return false;
    for (int i = 0; i < 4; i++)
        if (!cJSON_AddArrayToObject(lp->obj, keys[i])) return false;
    return true;
}

static bool lp_add_legacy(oai_lp_t *lp, const tok_vocab_t *v, const engine_event_t *ev, int n_top,
                          int offset) {
    if (!legacy_obj(lp)) return false;
    char raw[256], text[3 * 256 + 1];
    size_t n = token_bytes(v, ev->token, raw, sizeof raw);
    oai_utf8_sanitize(raw, n, text, sizeof text);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "tokens"),
                         cJSON_CreateString(text));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "token_logprobs"),
                         cJSON_CreateNumber(finite_lp(ev->logprob)));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "text_offset"),
                         cJSON_CreateNumber(offset));
    /* the alternatives, and the sampled token when it is not among them */
    cJSON *d = cJSON_CreateObject();
    if (!d) return false;
    int k = ev->n_top < n_top ? ev->n_top : n_top;
    bool has_sampled = false;
    for (int i = 0; i < k; i++) {
        size_t m = token_bytes(v, ev->top_ids[i], raw, sizeof raw);
        char t[3 * 256 + 1];
        oai_utf8_sanitize(raw, m, t, sizeof t);
        if (!cJSON_HasObjectItem(d, t))
            cJSON_AddNumberToObject(d, t, finite_lp(ev->top_logprobs[i]));
        has_sampled |= ev->top_ids[i] == ev->token;
    }
    if (!has_sampled && !cJSON_HasObjectItem(d, text))
        cJSON_AddNumberToObject(d, text, finite_lp(ev->logprob));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "top_logprobs"), d);
    return true;
}

bool oai_lp_add_null(oai_lp_t *lp, const tok_vocab_t *v, int32_t token, int text_offset) {
    lp->kind = OAI_COMPLETION;
    if (!legacy_obj(lp)) return false;
    char raw[256], text[3 * 256 + 1];
    size_t n = token_bytes(v, token, raw, sizeof raw);
    oai_utf8_sanitize(raw, n, text, sizeof text);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "tokens"), cJSON_CreateString(text));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "token_logprobs"), cJSON_CreateNull());
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "top_logprobs"), cJSON_CreateNull());
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp->obj, "text_offset"), cJSON_CreateNumber(text_offset));
    lp->n++;
    return true;
}

bool oai_lp_add(oai_lp_t *lp, oai_kind_t kind, const tok_vocab_t *v, const engine_event_t *ev,
                int n_top, int text_offset) {
    lp->kind = kind;
    bool ok = kind == OAI_CHAT ? lp_add_chat(lp, v, ev, n_top)
                               : lp_add_legacy(lp, v, ev, n_top, text_offset);
    if (ok) lp->n++;
    return ok;
}

cJSON *oai_lp_take(oai_lp_t *lp) {
    cJSON *o = lp->obj;
    lp->obj = NULL;
    lp->n = 0;
    return o;
}

void oai_lp_clear(oai_lp_t *lp) {
    cJSON_Delete(lp->obj);
    lp->obj = NULL;
    lp->n = 0;
}
