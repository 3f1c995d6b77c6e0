/*
 * fe_tokenize.c - vLLM's POST /tokenize and POST /detokenize, answered at
 * once on rank 0 with the front end's own vocabulary (no engine involved).
 *
 * /tokenize makes the very tokens the completion endpoints would prompt the
 * engine with (fe_encode_text, fe_encode_chat in fe_generate.c), so its
 * count is the prompt_tokens a completion of the same prompt or messages
 * reports. /detokenize runs the ids through the streaming detokenizer the
 * completions use (tok_stream_*: whole UTF-8 characters, invalid bytes as
 * U+FFFD), with special tokens spelled out as vLLM's decode does.
 *
 * Ownership: every handler owns its parsed request, its ids and its JSON
 * tree until it has replied; nothing outlives the call.
 */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_server_impl.h"
#include "frontend/openai_render.h"

/* The complete request body, or NULL with *e set when it is refused (too
 * large, the server draining). */
static const char *request_body(fe_server_t *fe, struct evhttp_request *req, size_t *len,
                                oai_error_t *e) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    if (!fe_admit_body(fe, *len, e)) return NULL;
    const char *body = *len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)*len) : "";
    if (!body) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    return body;
}

/* ------------------------------------------------------------ /tokenize */

/* The messages form with add_special_tokens: the tokenizer's BOS/EOS once
 * more around the chat prompt (which has them already where the model adds
 * them), as vLLM's tokenizer adds them to a template that spells BOS. */
static rt_status_t add_special_again(const tok_vocab_t *v, int32_t **ids, size_t *n) {
    bool bos = tok_add_bos(v) && tok_bos(v) >= 0;
    bool eos = tok_add_eos(v) && tok_eos(v) >= 0;
    if (!bos && !eos) return RT_OK;
    int32_t *r = realloc(*ids, (*n + 2) * sizeof *r);
    if (!r) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    if (bos) {
        memmove(r + 1, r, *n * sizeof *r);
        r[0] = tok_bos(v);
        (*n)++;
    }
    if (eos) r[(*n)++] = tok_eos(v);
    *ids = r;
    return RT_OK;
}

/* A token's vocabulary string for token_strs, invalid UTF-8 shown as U+FFFD. */
static cJSON *token_str(const tok_vocab_t *v, int32_t id) {
    const char *s = tok_text(v, id);
    if (!s) s = "";
    size_t n = strlen(s);
    if (oai_utf8_valid(s, n)) return cJSON_CreateString(s);
    char *shown = malloc(3 * n + 1);
    if (!shown) return NULL;
    oai_utf8_sanitize(s, n, shown, 3 * n + 1);
    cJSON *j = cJSON_CreateString(shown);
    free(shown);
    return j;
}

/* {"count", "max_model_len", "tokens"[, "token_strs"]}; NULL when out of memory. */
static cJSON *tokenize_json(const fe_server_t *fe, const int32_t *ids, size_t n, bool strs) {
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = NULL, *token_strs = NULL;
    bool ok = o && cJSON_AddNumberToObject(o, "count", (double)n) &&
              cJSON_AddNumberToObject(o, "max_model_len", fe->model.n_ctx) &&
              (tokens = cJSON_AddArrayToObject(o, "tokens")) &&
              (!strs || (token_strs = cJSON_AddArrayToObject(o, "token_strs")));
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *id = cJSON_CreateNumber(ids[i]);
        ok = id && cJSON_AddItemToArray(tokens, id);
        if (!ok) {
            cJSON_Delete(id);
            break;
        }
        if (!strs) continue;
        cJSON *s = token_str(fe->model.vocab, ids[i]);
        ok = s && cJSON_AddItemToArray(token_strs, s);
        if (!ok) cJSON_Delete(s);
    }
    if (ok) return o;
    cJSON_Delete(o);
    return NULL;
}

void fe_tokenize(fe_server_t *fe, struct evhttp_request *req) {
    oai_error_t e;
    size_t len;
    const char *body = request_body(fe, req, &len, &e);
    if (!body) {
        fe_reply_error(fe, req, &e);
        return;
    }
    oai_tokenize_t t;
    if (oai_parse_tokenize(body, len, &t, &e)) {
        fe_reply_error(fe, req, &e);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (t.model && !fe_check_model(fe, t.model, &e)) goto fail;
    const char *param = t.prompt ? "prompt" : "messages";
    rt_status_t st;
    if (t.prompt) {
        st = fe_encode_text(fe, t.prompt, t.add_special_tokens, &ids, &n);
    } else {
        st = fe_encode_chat(fe, t.msgs, t.n_msgs, (const char *const *)t.tools, t.n_tools, t.add_generation_prompt,
                            NULL, &ids, &n);
        if (st == RT_OK && t.add_special_tokens) st = add_special_again(fe->model.vocab, &ids, &n);
    }
    if (st) {
        oai_error_set(&e, st == RT_ERR_NOMEM ? 500 : 400,
                      st == RT_ERR_NOMEM ? "server_error" : "invalid_request_error", NULL, param,
                      "cannot tokenize the %s: %s", param, rt_error_msg());
        goto fail;
    }
    fe_reply_json(fe, req, 200, tokenize_json(fe, ids, n, t.return_token_strs));
    free(ids);
    oai_tokenize_free(&t);
    return;
fail:
    fe_reply_error(fe, req, &e);
    free(ids);
    oai_tokenize_free(&t);
}

/* ---------------------------------------------------------- /detokenize */

/* text[0..len) with every NUL byte (a <0x00> token; a C string for cJSON
 * cannot hold one) as U+FFFD, NUL-terminated; text is taken. NULL when out
 * of memory. */
static char *replace_nuls(char *text, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        k += text[i] == '\0';
    if (k == 0) return text;
    char *r = malloc(len + 2 * k + 1);
    if (r) {
        size_t w = 0;
        for (size_t i = 0; i < len; i++) {
            if (text[i] != '\0') {
                r[w++] = text[i];
                continue;
            }
            memcpy(r + w, "\xef\xbf\xbd", 3);
            w += 3;
        }
        r[w] = '\0';
    }
    free(text);
    return r;
}

char *fe_detokenize_ids(const tok_vocab_t *v, const int32_t *ids, size_t n, bool special) {
    tok_stream_t ts = {0};
    size_t len = 0, cap = 256;
    char *text = malloc(cap);
    if (!text) return NULL;
    for (size_t i = 0; i <= n; i++) {
        /* room for the piece and the bytes held back, each byte possibly
         * becoming a 3-byte U+FFFD, and the NUL */
        size_t piece = i < n ? tok_token_to_piece(v, ids[i], NULL, 0, special) : 0;
        size_t need = 3 * (piece + sizeof ts.pending) + 1;
        if (cap - len < need) {
            size_t c = cap;
            while (c - len < need)
                c *= 2;
            char *t = realloc(text, c);
            if (!t) {
                free(text);
                return NULL;
            }
            text = t;
            cap = c;
        }
        if (i < n)
            len += tok_stream_push(v, &ts, ids[i], text + len, cap - len, special);
        else
            len += tok_stream_flush(&ts, text + len, cap - len);
    }
    text[len] = '\0';
    return replace_nuls(text, len);
}

void fe_detokenize(fe_server_t *fe, struct evhttp_request *req) {
    oai_error_t e;
    size_t len;
    const char *body = request_body(fe, req, &len, &e);
    if (!body) {
        fe_reply_error(fe, req, &e);
        return;
    }
    oai_detokenize_t d;
    if (oai_parse_detokenize(body, len, &d, &e)) {
        fe_reply_error(fe, req, &e);
        return;
    }
    const tok_vocab_t *v = fe->model.vocab;
    int32_t nv = tok_n_vocab(v);
    if (d.model && !fe_check_model(fe, d.model, &e)) goto fail;
    for (size_t i = 0; i < d.n_tokens; i++)
        if (d.tokens[i] >= nv) {
            oai_error_set(&e, 400, "invalid_request_error", NULL, "tokens",
                          "token id %d at tokens[%zu] is outside the vocabulary (0..%d)",
                          d.tokens[i], i, nv - 1);
            goto fail;
        }
    char *text = fe_detokenize_ids(v, d.tokens, d.n_tokens, true);
    cJSON *o = text ? cJSON_CreateObject() : NULL;
    if (o && !cJSON_AddStringToObject(o, "prompt", text)) {
        cJSON_Delete(o);
        o = NULL;
    }
    free(text);
    fe_reply_json(fe, req, 200, o);
    oai_detokenize_free(&d);
    return;
fail:
    fe_reply_error(fe, req, &e);
    oai_detokenize_free(&d);
}
