/*
 * fe_request.c - per-request state and the token -> text path of a choice.
 *
 * The text path mirrors `rotor generate`: a token that ends generation
 * (end-of-generation unless ignore_eos, or a stop_token_ids entry) is not
 * rendered; other tokens go through the streaming detokenizer (whole UTF-8
 * characters only) and the stop matcher (text that may begin a stop string
 * is held back; a stop string and everything after it never appear). At the
 * end the detokenizer and the matcher are flushed.
 */
#include "frontend/fe_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rt_status_t fe_req_create(struct fe_server *fe, uint64_t seq, uint32_t slot, oai_request_t *oai,
                          int32_t *prompt, size_t n_prompt, int max_tokens, fe_req_t **out) {
    fe_req_t *r = calloc(1, sizeof *r);
    if (!r) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    r->choices = calloc((size_t)oai->n, sizeof *r->choices);
    if (!r->choices) {
        free(r);
        return rt_error_set(RT_ERR_NOMEM, "out of memory");
    }
    r->fe = fe;
    r->seq = seq;
    r->slot = slot;
    r->n_choices = oai->n;
    r->max_tokens = max_tokens;
    for (int i = 0; i < r->n_choices; i++) {
        fe_choice_t *c = &r->choices[i];
        c->eid = FE_EID(seq, slot, i);
        c->worker = -1;
        c->route_overlap_blocks = -1;
        c->n_prompt = (int)n_prompt;
        if (oai->n_stops &&
            stop_matcher_create((const char *const *)oai->stops, oai->n_stops, &c->stop) != RT_OK) {
            r->n_choices = i + 1;
            r->oai = (oai_request_t){0};
            fe_req_destroy(r);
            return rt_error_set(RT_ERR_NOMEM, "out of memory");
        }
    }
    r->oai = *oai;
    memset(oai, 0, sizeof *oai);
    r->prompt = prompt;
    r->n_prompt = n_prompt;
    r->http_status = 200;
    *out = r;
    return RT_OK;
}

void fe_req_destroy(fe_req_t *r) {
    if (!r) return;
    for (int i = 0; i < r->n_choices; i++) {
        fe_choice_t *c = &r->choices[i];
        stop_matcher_destroy(c->stop);
        stop_matcher_destroy(c->tool_open);
        free(c->text);
        free(c->tok_t);
        oai_lp_clear(&c->lp);
    }
    free(r->choices);
    free(r->prompt);
    oai_request_free(&r->oai);
    free(r);
}

fe_text_opts_t fe_req_text_opts(const fe_req_t *r, const tok_vocab_t *vocab) {
    return (fe_text_opts_t){
        .vocab = vocab,
        .kind = r->oai.kind,
        .keep_text = !r->oai.stream || (r->oai.kind == OAI_CHAT && r->oai.tool_choice != OAI_TOOLS_NONE),
        .logprobs = r->oai.logprobs,
        .top_logprobs = r->oai.top_logprobs,
        .render_special = !r->oai.skip_special_tokens,
        .ignore_eos = r->oai.ignore_eos,
        .min_tokens = r->oai.min_tokens,
        .stop_ids = r->oai.stop_token_ids,
        .n_stop_ids = r->oai.n_stop_token_ids,
    };
}

static bool append_text(fe_choice_t *c, const char *s, size_t n) {
    if (n == 0) return true;
    if (c->text_len + n + 1 > c->text_cap) {
        size_t cap = c->text_cap ? c->text_cap : 256;
        while (cap < c->text_len + n + 1)
            cap *= 2;
        char *t = realloc(c->text, cap);
        if (!t) return false;
        c->text = t;
        c->text_cap = cap;
    }
    memcpy(c->text + c->text_len, s, n);
    c->text_len += n;
    c->text[c->text_len] = '\0';
    return true;
}

static bool ends_generation(const fe_text_opts_t *o, int32_t tok) {
    if (!o->ignore_eos && tok_is_eog(o->vocab, tok)) return true;
    for (size_t i = 0; i < o->n_stop_ids; i++)
        if (o->stop_ids[i] == tok) return true;
    return false;
}

/* Pass detokenized text through the stop matcher into out (not before
 * min_tokens tokens, as vLLM checks stops). */
static bool through_stops(fe_choice_t *c, const fe_text_opts_t *o, const char *piece, size_t n, char *out,
                          size_t *len) {
    if (!c->stop || c->n_tokens < o->min_tokens) {
        memcpy(out, piece, n);
        out[n] = '\0';
        *len = n;
        return false;
    }
    return stop_matcher_push(c->stop, piece, n, out, FE_TEXT_SCRATCH, len);
}

bool fe_choice_token(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, double now,
                     char *out, size_t *len) {
    *len = 0;
    out[0] = '\0';
    if (c->text_done) return false;
    if (c->n_tokens == 0) c->t_first = now;
    c->t_last = now;
    if ((size_t)c->n_tokens == c->tok_cap) {
        size_t cap = c->tok_cap ? 2 * c->tok_cap : 64;
        double *t = realloc(c->tok_t, cap * sizeof *t);
        if (t) {
            c->tok_t = t;
            c->tok_cap = cap;
        }
    }
    if ((size_t)c->n_tokens < c->tok_cap) c->tok_t[c->n_tokens] = now;
    c->n_tokens++;
    if (o->logprobs) oai_lp_add(&c->lp, o->kind, o->vocab, ev, o->top_logprobs, (int)c->raw_len);
    if (ends_generation(o, ev->token)) return false; /* its FINISH follows */

    /* the detokenizer writes at most a piece plus < 4 pending bytes; keep
     * room in out for what the stop matcher releases with it */
    char piece[4096 + 8];
    size_t np =
        tok_stream_push(o->vocab, &c->ts, ev->token, piece, sizeof piece, o->render_special);
    c->raw_len += np;
    bool stopped = through_stops(c, o, piece, np, out, len);
    if (o->keep_text) append_text(c, out, *len);
    if (stopped) {
        c->text_done = true;
        c->finish_reason = "stop";
    }
    return stopped;
}

bool fe_choice_lead(fe_choice_t *c, const char *text, size_t len) {
    c->raw_len = len;
    return append_text(c, text, len);
}

/* bytes a token adds to the echoed prompt */
static size_t piece_len(const tok_vocab_t *v, int32_t id) { return tok_token_to_piece(v, id, NULL, 0, false); }

void fe_choice_prompt_logprob(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, int32_t prompt0) {
    if (!o->logprobs) return;
    if (ev->position == 1) {
        oai_lp_add_null(&c->lp, o->vocab, prompt0, 0);
        c->echo_off = piece_len(o->vocab, prompt0);
    }
    oai_lp_add(&c->lp, o->kind, o->vocab, ev, o->top_logprobs, (int)c->echo_off);
    c->echo_off += piece_len(o->vocab, ev->token);
}

void fe_choice_finish(fe_choice_t *c, const fe_text_opts_t *o, const engine_event_t *ev, char *out,
                      size_t *len) {
    *len = 0;
    out[0] = '\0';
    c->engine_done = true;
    c->n_prompt = ev->n_prompt ? ev->n_prompt : c->n_prompt;
    c->n_cached = ev->n_cached;
    c->t_scheduled = ev->t_scheduled;
    c->t_prefill_done = ev->t_prefill_done;
    if (c->text_done) return;
    char piece[16];
    size_t np = tok_stream_flush(&c->ts, piece, sizeof piece);
    bool stopped = through_stops(c, o, piece, np, out, len);
    if (!stopped && c->stop)
        *len += stop_matcher_flush(c->stop, out + *len, FE_TEXT_SCRATCH - *len);
    if (o->keep_text) append_text(c, out, *len);
    c->text_done = true;
    switch (ev->finish) {
    case ENGINE_FINISH_LENGTH:
        c->finish_reason = stopped ? "stop" : "length";
        break;
    case ENGINE_FINISH_CANCELLED:
        c->finish_reason = "abort";
        break;
    case ENGINE_FINISH_ERROR:
        c->finish_reason = "error";
        break;
    default:
        c->finish_reason = "stop";
        break;
    }
}

void fe_choice_end(fe_choice_t *c, const char *finish_reason) {
    if (c->text_done) return;
    c->text_done = true;
    c->finish_reason = finish_reason;
}

void fe_req_usage(const fe_req_t *r, int *prompt, int *completion, int *cached) {
    int comp = 0, cach = -1;
    for (int i = 0; i < r->n_choices; i++) {
        comp += r->choices[i].n_tokens;
        if (cach < 0 || r->choices[i].n_cached < cach) cach = r->choices[i].n_cached;
    }
    *prompt = (int)r->n_prompt;
    *completion = comp;
    *cached = cach < 0 ? 0 : cach;
}

double fe_choice_queue_wait(const fe_choice_t *c) {
    return c->t_scheduled > 0 && c->t_routed > 0 ? c->t_scheduled - c->t_routed : 0;
}

void fe_copy_str(char *dst, size_t cap, const char *src) {
    if (cap == 0) return;
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void fe_req_hlog_record(const fe_req_t *r, int i, hlog_request_t *out) {
    const fe_choice_t *c = &r->choices[i];
    memset(out, 0, sizeof *out);
    out->id = c->eid;
    out->worker = c->submitted ? c->worker : -1;
    out->t_arrival = r->t_arrival;
    out->t_routed = c->submitted ? c->t_routed : 0;
    out->t_scheduled = c->t_scheduled;
    out->t_prefill_done = c->t_prefill_done;
    out->t_first_token = c->n_tokens ? c->t_first : 0;
    out->t_finish = r->t_finish;
    out->queue_wait_s = fe_choice_queue_wait(c);
    out->tokens_in = (int32_t)r->n_prompt;
    out->tokens_out = c->n_tokens;
    out->tokens_cached = c->n_cached;
    out->route_overlap_blocks = c->submitted ? c->route_overlap_blocks : -1;
    out->http_status = r->http_status;
    snprintf(out->finish_reason, sizeof out->finish_reason, "%s",
             c->finish_reason ? c->finish_reason : "error");
    const char *err = c->error[0] ? c->error : (r->failed ? r->err.message : "");
    fe_copy_str(out->error, sizeof out->error, err);
}
