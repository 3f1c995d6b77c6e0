/*
 * fe_generate.c - POST /v1/chat/completions and /v1/completions: admit,
 * parse, build the prompt exactly as `rotor generate` does, submit one
 * engine request per choice, turn engine events into SSE chunks or one JSON
 * reply, and keep every request's state until its last engine event.
 *
 * Life of a request (fe_req_t):
 *   admitted -> in the slot table, choices submitted, client watched;
 *   answered -> the reply is complete (or the client left): r->http is NULL
 *               and nothing touches the connection any more;
 *   finished -> every choice had its FINISH or ERROR (or was never
 *               submitted): the timeline goes to the HDF5 log and metrics,
 *               the state is freed. Exactly once, in progress().
 * A choice whose text ended early (stop string, error, client gone, drain)
 * is cancelled in its engine; its CANCELLED FINISH still ends it.
 *
 * The connection: evhttp does not notice a client that closes while we are
 * still working on its request (it is not reading then), so each admitted
 * request watches its socket with an EV_READ event that peeks: EOF or an
 * error means the client left, and its engine requests are cancelled. When
 * evhttp itself notices (a failed write, a timeout) the close callback does
 * the same. evhttp frees the evhttp_request except when it detached it from
 * a failed connection while we still owned the reply; then we free it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "frontend/fe_server_impl.h"
#include "frontend/fe_tools.h"
#include "frontend/openai_render.h"
#include "rotor/chat.h"
#include "rotor/log.h"

#define REJECTED_SLOT (FE_MAX_SLOTS - 1) /* engine-id slot of requests never admitted */

static void progress(fe_server_t *fe, fe_req_t *r);

/* ------------------------------------------------------------ slot table */

static bool slot_take(fe_server_t *fe, uint32_t *slot) {
    if (fe->n_free) {
        *slot = fe->free_slots[--fe->n_free];
        return true;
    }
    if (fe->n_used_slots == fe->cap_slots) {
        uint32_t cap = fe->cap_slots ? 2 * fe->cap_slots : 256;
        if (cap > REJECTED_SLOT) cap = REJECTED_SLOT;
        if (cap <= fe->cap_slots) return false;
        fe_req_t **s = realloc(fe->slots, cap * sizeof *s);
        if (!s) return false;
        fe->slots = s;
        uint32_t *f = realloc(fe->free_slots, cap * sizeof *f);
        if (!f) return false;
        fe->free_slots = f;
        for (uint32_t i = fe->cap_slots; i < cap; i++)
            fe->slots[i] = NULL;
        fe->cap_slots = cap;
    }
    *slot = fe->n_used_slots++;
    return true;
}

static void slot_release(fe_server_t *fe, uint32_t slot) {
    fe->slots[slot] = NULL;
    fe->free_slots[fe->n_free++] = slot;
}

/* splitmix64: a seed for a choice of a request without one */
static uint64_t next_seed(fe_server_t *fe) {
    uint64_t z = (fe->seed_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------ the HTTP side */

static void unwatch(fe_req_t *r) {
    if (r->watch) {
        event_free(r->watch);
        r->watch = NULL;
    }
}

/* We are done with the connection: stop watching it and forget the
 * request (the caller sends the last bytes or drops it right after). */
static struct evhttp_request *release_http(fe_req_t *r) {
    struct evhttp_request *req = r->http;
    if (!req) return NULL;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon) evhttp_connection_set_closecb(evcon, NULL, NULL);
    unwatch(r);
    r->http = NULL;
    r->answered = true;
    r->t_finish = hlog_now();
    return req;
}

static void cancel_choice(fe_server_t *fe, fe_req_t *r, fe_choice_t *c) {
    if (!c->submitted || c->engine_done || c->cancel_sent) return;
    c->cancel_sent = true;
    r->busy++;
    fe->dispatch.ops->cancel(fe->dispatch.self, c->eid);
    r->busy--;
}

/* The choice's text ends early: stop its engine request (a parked one is
 * simply never submitted). */
static void abandon_choice(fe_server_t *fe, fe_req_t *r, fe_choice_t *c,
                           const char *finish_reason) {
    fe_choice_end(c, finish_reason);
    if (!c->submitted) {
        c->parked = false;
        c->engine_done = true;
    }
    cancel_choice(fe, r, c);
}

static void client_gone(fe_server_t *fe, fe_req_t *r) {
    r->client_gone = true;
    if (!r->stream_started)
        r->http_status = 499; /* nothing was sent: nginx's "client closed request" */
    for (int i = 0; i < r->n_choices; i++)
        abandon_choice(fe, r, &r->choices[i], "abort");
    progress(fe, r);
}

/* evhttp tears the connection down (write error, timeout, server freed). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg) {
    fe_req_t *r = arg;
    struct evhttp_request *req = release_http(r);
    /* detached from its failed connection while the reply was ours: ours to free */
    if (req && !evhttp_request_get_connection(req)) evhttp_request_free(req);
    client_gone(r->fe, r);
}

/* The client's socket became readable while we work on its request. */
static void on_watch(evutil_socket_t fd, short what, void *arg) {
    fe_req_t *r = arg;
    char b;
    ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (k > 0) { /* a pipelined request: evhttp reads it later; stop watching */
        event_del(r->watch);
        return;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    /* EOF or a reset: the client left */
    struct evhttp_connection *evcon = r->http ? evhttp_request_get_connection(r->http) : NULL;
    release_http(r);
    if (evcon) evhttp_connection_free(evcon); /* frees the request as well */
    client_gone(r->fe, r);
}

static void watch_client(fe_server_t *fe, fe_req_t *r) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->http);
    if (!evcon) return;
    evhttp_connection_set_closecb(evcon, on_conn_close, r);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return;
    r->watch = event_new(fe->base, fd, EV_READ | EV_PERSIST, on_watch, r);
    if (r->watch) event_add(r->watch, NULL);
}

/* fe->chunk is reused: evhttp moves its bytes to the connection; whatever
 * it leaves (no connection any more) is dropped. */
static void stream_write(fe_server_t *fe, fe_req_t *r, const char *data, size_t len) {
    if (!r->http) return;
    if (evbuffer_add(fe->chunk, data, len) == 0) evhttp_send_reply_chunk(r->http, fe->chunk);
    evbuffer_drain(fe->chunk, evbuffer_get_length(fe->chunk));
}

static void stream_json(fe_server_t *fe, fe_req_t *r, cJSON *o) {
    size_t len = 0;
    char *s = o ? oai_sse_event(o, &len) : NULL;
    cJSON_Delete(o);
    if (s) stream_write(fe, r, s, len);
    free(s);
}

static oai_head_t head_of(const fe_server_t *fe, const fe_req_t *r) {
    return (oai_head_t){
        .kind = r->oai.kind, .id = r->id, .model = fe->model_name, .created = r->created};
}

static void stream_start(fe_server_t *fe, fe_req_t *r) {
    if (r->stream_started || !r->http || !r->oai.stream) return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->http);
    evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(r->http, 200, "OK");
    fe_metrics_observe_http(fe->metrics, 200);
    r->stream_started = true;
    r->http_status = 200;
    oai_head_t hd = head_of(fe, r);
    if (r->oai.kind == OAI_CHAT) {
        for (int i = 0; i < r->n_choices; i++)
            stream_json(fe, r, oai_chunk(&hd, i, "assistant", "", NULL, NULL));
    } else if (r->oai.echo) { /* the echoed prompt first; its logprobs come with the first token's */
        for (int i = 0; i < r->n_choices; i++)
            stream_json(fe, r, oai_chunk(&hd, i, NULL, r->choices[i].text ? r->choices[i].text : "", NULL, NULL));
    }
}

/* The stream's last event, then the end of the chunked reply. */
static void stream_end(fe_server_t *fe, fe_req_t *r) {
    static const char done[] = "data: [DONE]\n\n";
    stream_write(fe, r, done, sizeof done - 1);
    struct evhttp_request *req = release_http(r);
    if (req) evhttp_send_reply_end(req);
}

/* End the request with an error: cancel what still runs, answer (a JSON
 * error, or in a started stream an error event and [DONE]). */
static void fail_request(fe_server_t *fe, fe_req_t *r, const oai_error_t *e,
                         const char *finish_reason) {
    if (r->failed) return;
    r->failed = true;
    r->err = *e;
    r->busy++;
    for (int i = 0; i < r->n_choices; i++)
        abandon_choice(fe, r, &r->choices[i], finish_reason);
    if (r->http) {
        if (r->stream_started) {
            stream_json(fe, r, oai_error_object(e));
            stream_end(fe, r);
        } else {
            r->http_status = e->status;
            fe_reply_error(fe, release_http(r), e); /* r->http was non-NULL */
        }
    }
    r->busy--;
    progress(fe, r);
}

/* Every choice is finished: the rest of the stream, or the whole reply. */
static void answer(fe_server_t *fe, fe_req_t *r) {
    oai_head_t hd = head_of(fe, r);
    int prompt, completion, cached;
    fe_req_usage(r, &prompt, &completion, &cached);
    if (r->oai.stream) {
        stream_start(fe, r);
        if (r->oai.include_usage)
            stream_json(fe, r, oai_usage_chunk(&hd, oai_usage(prompt, completion, cached)));
        stream_end(fe, r);
        return;
    }
    cJSON *choices = cJSON_CreateArray();
    for (int i = 0; choices && i < r->n_choices; i++) {
        fe_choice_t *c = &r->choices[i];
        cJSON *calls = NULL;
        char *content = NULL;
        if (fe_tools_on(r) && fe_tools_result(r, c, i, false, &calls, &content) && calls) {
            cJSON_AddItemToArray(choices, oai_choice_message(i, content, calls, "tool_calls", oai_lp_take(&c->lp)));
            free(content);
            continue;
        }
        free(content);
        cJSON_AddItemToArray(choices, oai_choice(r->oai.kind, i, c->text ? c->text : "", c->finish_reason,
                                                 oai_lp_take(&c->lp)));
    }
    cJSON *o = oai_response(&hd, choices, oai_usage(prompt, completion, cached));
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    struct evhttp_request *req = release_http(r);
    if (!req) {
        cJSON_free(s);
        return;
    }
    if (s) {
        r->http_status = 200;
        fe_reply(fe, req, 200, "application/json", s, strlen(s));
    } else {
        oai_error_t e;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        r->http_status = 500;
        fe_reply_error(fe, req, &e);
    }
    cJSON_free(s);
}

/* ------------------------------------------------------------ finishing */

static const char *metrics_reason(const fe_req_t *r) {
    if (r->failed)
        return strcmp(r->choices[0].finish_reason ? r->choices[0].finish_reason : "", "abort") == 0
                   ? "abort"
                   : "error";
    return r->choices[0].finish_reason ? r->choices[0].finish_reason : "error";
}

static void finish(fe_server_t *fe, fe_req_t *r) {
    int prompt, completion, cached;
    fe_req_usage(r, &prompt, &completion, &cached);
    fe_metrics_observe_request(fe->metrics, r->t_finish - r->t_arrival,
                               fe_choice_queue_wait(&r->choices[0]), metrics_reason(r),
                               prompt, completion, cached);
    if (fe->hlog) {
        for (int i = 0; i < r->n_choices; i++) {
            hlog_request_t rec;
            fe_req_hlog_record(r, i, &rec);
            hlog_request(fe->hlog, &rec);
            const fe_choice_t *c = &r->choices[i];
            size_t n = (size_t)c->n_tokens < c->tok_cap ? (size_t)c->n_tokens : c->tok_cap;
            if (n) hlog_tokens(fe->hlog, c->eid, 0, c->tok_t, n);
        }
    }
    slot_release(fe, r->slot);
    fe->n_live--;
    fe_req_destroy(r);
    fe_drain_check(fe);
}

/* Answer when every choice is done, free when every engine is done. */
static void progress(fe_server_t *fe, fe_req_t *r) {
    if (r->busy) return;
    for (int i = 0; i < r->n_choices; i++)
        if (!r->choices[i].engine_done) return;
    if (!r->answered) {
        r->busy++;
        answer(fe, r);
        r->busy--;
    }
    finish(fe, r);
}

/* ------------------------------------------------------------ submitting */

static bool backlog_push(fe_server_t *fe, uint64_t eid) {
    if (fe->bl_len == fe->bl_cap) {
        size_t cap = fe->bl_cap ? 2 * fe->bl_cap : 256;
        uint64_t *b = malloc(cap * sizeof *b);
        if (!b) return false;
        for (size_t i = 0; i < fe->bl_len; i++)
            b[i] = fe->backlog[(fe->bl_head + i) % fe->bl_cap];
        free(fe->backlog);
        fe->backlog = b;
        fe->bl_cap = cap;
        fe->bl_head = 0;
    }
    fe->backlog[(fe->bl_head + fe->bl_len++) % fe->bl_cap] = eid;
    return true;
}

/* The live request and choice of an engine id, or NULL. */
static fe_req_t *lookup(fe_server_t *fe, uint64_t eid, fe_choice_t **c) {
    uint32_t slot = FE_EID_SLOT(eid);
    if (slot >= fe->n_used_slots) return NULL;
    fe_req_t *r = fe->slots[slot];
    int i = FE_EID_CHOICE(eid);
    if (!r || r->seq != FE_EID_SEQ(eid) || i >= r->n_choices) return NULL;
    *c = &r->choices[i];
    return r;
}

typedef enum { SUB_OK, SUB_FULL, SUB_FAILED } sub_result_t;

/* Hand one choice to the dispatcher; a refusal other than "full" fails the
 * request. */
static sub_result_t submit_choice(fe_server_t *fe, fe_req_t *r, fe_choice_t *c) {
    int i = (int)(c - r->choices);
    engine_request_t er = {
        .id = c->eid,
        .prompt = r->prompt,
        .n_prompt = r->n_prompt,
        .sampling = r->oai.sampling,
        .max_tokens = r->max_tokens,
        .min_tokens = r->oai.min_tokens,
        .constraint = r->oai.json_object ? ENGINE_CONSTRAINT_JSON_OBJECT : ENGINE_CONSTRAINT_NONE,
        .ignore_eos = r->oai.ignore_eos,
        .stop_tokens = r->oai.stop_token_ids,
        .n_stop_tokens = r->oai.n_stop_token_ids,
        .logit_bias_ids = r->oai.logit_bias_ids,
        .logit_bias = r->oai.logit_bias,
        .n_logit_bias = r->oai.n_logit_bias,
        .top_logprobs = r->oai.logprobs ? r->oai.top_logprobs : 0,
        .logprobs = r->oai.logprobs,
        .prompt_logprobs = r->oai.echo && r->oai.logprobs,
    };
    er.sampling.seed = r->oai.has_seed ? r->oai.sampling.seed + (uint64_t)i : next_seed(fe);
    c->t_routed = hlog_now();
    dispatch_route_t route = {.worker = -1, .overlap_blocks = -1, .prefill_worker = -1};
    /* submitted before the call: events may in principle come from inside it */
    const bool was_parked = c->parked;
    c->edge = fe->cap_hint != SIZE_MAX && fe->n_inflight + 1 >= fe->cap_hint;
    c->submitted = true;
    c->parked = false;
    fe->n_inflight++;
    r->busy++;
    rt_status_t st = fe->dispatch.ops->submit(fe->dispatch.self, &er, &route);
    r->busy--;
    if (st == RT_OK) {
        if (c->worker < 0) c->worker = route.worker;
        c->route_overlap_blocks = route.overlap_blocks;
        return SUB_OK;
    }
    c->submitted = false;
    c->parked = was_parked;
    fe->n_inflight--;
    if (st == RT_ERR_FULL) {
        fe->cap_hint = fe->n_inflight;
        return SUB_FULL;
    }
    oai_error_t e;
    if (st == RT_ERR_UNAVAILABLE)
        oai_error_set(&e, 503, "server_error", "service_unavailable", NULL,
                      "No worker can take the request now: %s", rt_error_msg());
    else if (st == RT_ERR_INVALID || st == RT_ERR_RANGE)
        oai_error_set(&e, 400, "invalid_request_error", NULL, NULL, "%s", rt_error_msg());
    else
        oai_error_set(&e, 500, "server_error", NULL, NULL,
                      "The request could not be submitted: %s (%s)", rt_error_msg(),
                      rt_status_str(st));
    fe_copy_str(c->error, sizeof c->error, e.message);
    fail_request(fe, r, &e, "error");
    return SUB_FAILED;
}

#define FE_PUMP_RETRY_US 100000

static void arm_pump(fe_server_t *fe) {
    const struct timeval tv = {0, FE_PUMP_RETRY_US};
    if (fe->bl_len && !evtimer_pending(fe->ev_pump, NULL)) evtimer_add(fe->ev_pump, &tv);
}

static void park(fe_server_t *fe, fe_req_t *r, fe_choice_t *c) {
    if (backlog_push(fe, c->eid)) {
        c->parked = true;
        arm_pump(fe);
        return;
    }
    oai_error_t e;
    oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
    fail_request(fe, r, &e, "error");
}

/* Submit every choice, or park them behind what is already parked. */
static void submit_all(fe_server_t *fe, fe_req_t *r) {
    bool full = fe->bl_len > 0 || fe->n_inflight >= fe->cap_hint;
    for (int i = 0; i < r->n_choices && !r->failed; i++) {
        fe_choice_t *c = &r->choices[i];
        if (!full && submit_choice(fe, r, c) != SUB_FULL) continue;
        full = true;
        park(fe, r, c);
    }
}

/* Submit parked choices while the engines have room (probe: one beyond the
 * capacity hint). */
static void pump_backlog(fe_server_t *fe, bool probe) {
    if (fe->pumping) return;
    fe->pumping = true;
    while (fe->bl_len && (fe->n_inflight < fe->cap_hint || probe)) {
        uint64_t eid = fe->backlog[fe->bl_head];
        fe_choice_t *c = NULL;
        fe_req_t *r = lookup(fe, eid, &c);
        if (r && c->parked && !r->failed) {
            r->busy++;
            sub_result_t res = submit_choice(fe, r, c);
            r->busy--;
            if (res == SUB_FULL) break; /* still no room: stays first in line */
            probe = false;
            fe->bl_head = (fe->bl_head + 1) % fe->bl_cap;
            fe->bl_len--;
            progress(fe, r);
            continue;
        }
        fe->bl_head = (fe->bl_head + 1) % fe->bl_cap;
        fe->bl_len--;
    }
    fe->pumping = false;
    arm_pump(fe);
}

void fe_pump_backlog(evutil_socket_t fd, short what, void *arg) {
    pump_backlog(arg, true);
}

/* ------------------------------------------------------------- events */

/* Streaming with tools: the content delta in fe->scratch (len bytes) goes
 * out until a call begins; with finish_reason (the choice's end) what was
 * held back goes out, then the calls as one delta with finish_reason
 * "tool_calls", or, when there are none, the rest of the text as content. */
static void stream_tools(fe_server_t *fe, fe_req_t *r, fe_choice_t *c, int index, size_t len,
                         const char *finish_reason) {
    char out[FE_TEXT_SCRATCH];
    size_t n = fe_tools_filter(c, fe->scratch, len, out, sizeof out);
    if (finish_reason) n += fe_tools_flush(c, out + n, sizeof out - n);
    c->tool_streamed += n;
    stream_start(fe, r);
    oai_head_t hd = head_of(fe, r);
    if (n) stream_json(fe, r, oai_chunk(&hd, index, NULL, out, NULL, oai_lp_take(&c->lp)));
    if (!finish_reason) return;
    cJSON *calls = NULL;
    char *content = NULL;
    bool ok = fe_tools_result(r, c, index, true, &calls, &content);
    free(content); /* streamed already: the content before the first call */
    if (ok && calls) {
        stream_json(fe, r, oai_chunk_tool_calls(&hd, index, NULL, calls, "tool_calls"));
        return;
    }
    /* no call after all: what was held back (a forced opening leads the text) */
    const char *tail = c->text && c->text_len > c->tool_streamed ? c->text + c->tool_streamed : NULL;
    stream_json(fe, r, oai_chunk(&hd, index, NULL, tail, finish_reason, oai_lp_take(&c->lp)));
}

static void on_token(fe_server_t *fe, fe_req_t *r, fe_choice_t *c, int index,
                     const engine_event_t *ev) {
    if (c->text_done) return;
    double now = hlog_now();
    bool first = c->n_tokens == 0;
    double prev = c->t_last;
    fe_text_opts_t o = fe_req_text_opts(r, fe->model.vocab);
    size_t len = 0;
    bool stopped = fe_choice_token(c, &o, ev, now, fe->scratch, &len);
    if (r->t_first_token == 0) {
        r->t_first_token = now;
        fe_metrics_observe_ttft(fe->metrics, now - r->t_arrival);
    } else if (!first) {
        fe_metrics_observe_itl(fe->metrics, now - prev);
    }
    if (stopped) cancel_choice(fe, r, c);
    if (!r->oai.stream || !r->http) return;
    if (fe_tools_on(r)) {
        stream_tools(fe, r, c, index, len, stopped ? "stop" : NULL);
        return;
    }
    if (len == 0 && !stopped) return; /* nothing visible yet; logprobs wait for the next chunk */
    stream_start(fe, r);
    oai_head_t hd = head_of(fe, r);
    stream_json(
        fe, r,
        oai_chunk(&hd, index, NULL, fe->scratch, stopped ? "stop" : NULL, oai_lp_take(&c->lp)));
}

static void on_finish(fe_server_t *fe, fe_req_t *r, fe_choice_t *c, int index,
                      const engine_event_t *ev) {
    bool open = !c->text_done;
    fe_text_opts_t o = fe_req_text_opts(r, fe->model.vocab);
    size_t len = 0;
    fe_choice_finish(c, &o, ev, fe->scratch, &len);
    if (ev->finish == ENGINE_FINISH_ERROR && !r->failed) {
        oai_error_t e;
        snprintf(c->error, sizeof c->error, "the engine failed");
        oai_error_set(&e, 500, "server_error", NULL, NULL,
                      "The engine failed while generating this request.");
        fail_request(fe, r, &e, "error");
        return;
    }
    if (!open || !r->oai.stream || !r->http) return;
    if (fe_tools_on(r)) {
        stream_tools(fe, r, c, index, len, c->finish_reason);
        return;
    }
    stream_start(fe, r);
    oai_head_t hd = head_of(fe, r);
    stream_json(fe, r,
                oai_chunk(&hd, index, NULL, len ? fe->scratch : NULL, c->finish_reason,
                          oai_lp_take(&c->lp)));
}

static void on_error(fe_server_t *fe, fe_req_t *r, fe_choice_t *c, const engine_event_t *ev) {
    if (ev->status == RT_ERR_FULL && c->n_tokens == 0 && !c->text_done && !r->failed) {
        /* a worker refused it for want of room (asynchronously, as the MPI
         * dispatcher reports it): back in line, retried when room appears */
        c->submitted = false;
        c->cancel_sent = false;
        c->worker = -1;
        fe->cap_hint = fe->n_inflight;
        park(fe, r, c);
        return;
    }
    c->engine_done = true;
    fe_choice_end(c, "error");
    /* the dispatcher leaves the reason in rt_error_msg() during the callback */
    const char *msg = rt_error_msg();
    const char *why = msg && *msg ? msg
                      : ev->status == RT_ERR_UNAVAILABLE ? "its worker went away"
                      : ev->status == RT_ERR_TIMEOUT     ? "its worker stopped answering"
                                                         : "the engine failed";
    bool unavailable = ev->status == RT_ERR_UNAVAILABLE || ev->status == RT_ERR_TIMEOUT;
    snprintf(c->error, sizeof c->error, "%.100s (%s)", why, rt_status_str(ev->status));
    oai_error_t e;
    oai_error_set(&e, unavailable ? 503 : 500, unavailable ? "service_unavailable" : "server_error", NULL, NULL,
                  "The request failed: %s (%s).", why, rt_status_str(ev->status));
    fail_request(fe, r, &e, "error");
}

void fe_server_on_event(void *ctx, const engine_event_t *ev, int worker) {
    fe_server_t *fe = ctx;
    if (!fe || !ev) return;
    fe_choice_t *c = NULL;
    fe_req_t *r = lookup(fe, ev->request_id, &c);
    /* not ours, gone, the FINISH that follows an ERROR, or a parked choice */
    if (!r || c->engine_done || !c->submitted) return;
    int i = (int)(c - r->choices);
    if (worker >= 0) c->worker = worker;
    /* an ended request makes room (a refusal does not: the timer retries) */
    bool room =
        ev->kind == ENGINE_EV_FINISH || (ev->kind == ENGINE_EV_ERROR && ev->status != RT_ERR_FULL);
    if (ev->kind == ENGINE_EV_PROMPT_LOGPROB) {
        fe_text_opts_t o = fe_req_text_opts(r, fe->model.vocab);
        fe_choice_prompt_logprob(c, &o, ev, r->n_prompt ? r->prompt[0] : 0);
        return;
    }
    if (ev->kind != ENGINE_EV_TOKEN) {
        fe->n_inflight--; /* it ended (or was refused) */
    } else if (c->edge) {
        /* taken at the capacity hint: try one more (additive increase) */
        c->edge = false;
        if (fe->cap_hint != SIZE_MAX) fe->cap_hint++;
        room = true;
    }
    r->busy++;
    switch (ev->kind) {
    case ENGINE_EV_TOKEN:
        on_token(fe, r, c, i, ev);
        break;
    case ENGINE_EV_FINISH:
        on_finish(fe, r, c, i, ev);
        break;
    case ENGINE_EV_ERROR:
        on_error(fe, r, c, ev);
        break;
    case ENGINE_EV_PROMPT_LOGPROB: /* handled above */
        break;
    }
    r->busy--;
    progress(fe, r); /* may free r */
    if (room && fe->bl_len) pump_backlog(fe, false);
}

/* ---------------------------------------------------------- admission */

/* A rejected request: its answer, its record in the HDF5 log. */
static void reject(fe_server_t *fe, struct evhttp_request *req, const oai_error_t *e,
                   double t_arrival, size_t n_prompt) {
    fe_reply_error(fe, req, e);
    if (!fe->hlog) return;
    hlog_request_t rec = {0};
    rec.id = FE_EID(fe->next_seq++, REJECTED_SLOT, 0);
    rec.worker = -1;
    rec.route_overlap_blocks = -1;
    rec.t_arrival = t_arrival;
    rec.t_finish = hlog_now();
    rec.tokens_in = (int32_t)n_prompt;
    rec.http_status = e->status;
    snprintf(rec.finish_reason, sizeof rec.finish_reason, "error");
    fe_copy_str(rec.error, sizeof rec.error, e->message);
    hlog_request(fe->hlog, &rec);
}

rt_status_t fe_encode_chat(const fe_server_t *fe, const chat_msg_t *msgs, size_t n_msgs,
                           const char *const *tools, size_t n_tools, bool add_generation_prompt,
                           const char *forced, int32_t **ids, size_t *n) {
    const tok_vocab_t *v = fe->model.vocab;
    const char *bos = tok_bos(v) >= 0 ? tok_text(v, tok_bos(v)) : "";
    const char *eos = tok_eos(v) >= 0 ? tok_text(v, tok_eos(v)) : "";
    char *text = NULL;
    rt_status_t st = chat_render_tools(fe->model.chat_template, msgs, n_msgs, tools, n_tools,
                                       add_generation_prompt, bos, eos, &text);
    if (st == RT_OK && forced && forced[0]) {
        size_t a = strlen(text), b = strlen(forced);
        char *t = realloc(text, a + b + 1);
        if (t) {
            memcpy(t + a, forced, b + 1);
            text = t;
        } else
            st = rt_error_set(RT_ERR_NOMEM, "out of memory");
    }
    if (st == RT_OK) st = tok_encode(v, text, strlen(text), true, true, ids, n);
    free(text);
    return st;
}

rt_status_t fe_encode_text(const fe_server_t *fe, const char *text, bool add_special, int32_t **ids,
                           size_t *n) {
    return tok_encode(fe->model.vocab, text, strlen(text), add_special, false, ids, n);
}

/* Completions' echo: every choice's text starts with the prompt: the
 * string given, or the ids' text (special tokens as skip_special_tokens
 * says). false when out of memory. */
static bool echo_prompt(fe_server_t *fe, fe_req_t *r) {
    char *ids_text = r->oai.prompt ? NULL
                                   : fe_detokenize_ids(fe->model.vocab, r->prompt, r->n_prompt,
                                                       !r->oai.skip_special_tokens);
    const char *text = r->oai.prompt ? r->oai.prompt : ids_text;
    bool ok = text != NULL;
    for (int i = 0; ok && i < r->n_choices; i++) ok = fe_choice_lead(&r->choices[i], text, strlen(text));
    free(ids_text);
    return ok;
}

/* The prompt's token ids, as `rotor generate` makes them (fe_encode_chat,
 * fe_encode_text with BOS), or the request's own ids. With tools
 * (tool_choice not none) the chat is rendered with them, and a required
 * call's opening (o->tool_prefix) ends the prompt. */
static bool build_prompt(fe_server_t *fe, oai_request_t *o, int32_t **ids, size_t *n,
                         oai_error_t *e) {
    const tok_vocab_t *v = fe->model.vocab;
    rt_status_t st;
    const char *param = o->kind == OAI_CHAT ? "messages" : "prompt";
    if (o->kind == OAI_CHAT) {
        const bool tools = o->tool_choice != OAI_TOOLS_NONE;
        o->tool_prefix = tools && o->tool_choice >= OAI_TOOLS_REQUIRED
                             ? chat_tool_call_prefix(fe->model.chat_template,
                                                     o->tool_choice == OAI_TOOLS_NAMED ? o->tool_choice_name : NULL)
                             : NULL;
        if (tools && o->tool_choice >= OAI_TOOLS_REQUIRED && !o->tool_prefix &&
            chat_tools_supported(fe->model.chat_template)) {
            oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return false;
        }
        st = fe_encode_chat(fe, o->msgs, o->n_msgs, (const char *const *)o->tools, tools ? o->n_tools : 0,
                            o->add_generation_prompt, o->tool_prefix, ids, n);
    } else if (o->prompt) {
        st = fe_encode_text(fe, o->prompt, true, ids, n);
    } else {
        int32_t nv = tok_n_vocab(v);
        for (size_t i = 0; i < o->n_prompt_ids; i++)
            if (o->prompt_ids[i] >= nv) {
                oai_error_set(e, 400, "invalid_request_error", NULL, "prompt",
                              "token id %d at prompt[%zu] is outside the vocabulary (0..%d)",
                              o->prompt_ids[i], i, nv - 1);
                return false;
            }
        *ids = o->prompt_ids;
        *n = o->n_prompt_ids;
        o->prompt_ids = NULL;
        o->n_prompt_ids = 0;
        st = RT_OK;
    }
    if (st) {
        oai_error_set(e, st == RT_ERR_NOMEM ? 500 : 400,
                      st == RT_ERR_NOMEM ? "server_error" : "invalid_request_error", NULL, param,
                      "cannot tokenize the %s: %s", param, rt_error_msg());
        return false;
    }
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        oai_error_set(e, 400, "invalid_request_error", NULL, param,
                      "the %s is empty (it encodes to no tokens)", param);
        return false;
    }
    return true;
}

/* max_tokens against the context and the limits; 0 with *e set on error. */
static int choose_max_tokens(const fe_server_t *fe, const oai_request_t *o, size_t n_prompt,
                             oai_error_t *e) {
    const int n_ctx = fe->model.n_ctx;
    const char *what = o->kind == OAI_CHAT ? "messages" : "prompt";
    if ((int64_t)n_prompt >= n_ctx) {
        oai_error_set(e, 400, "invalid_request_error", "context_length_exceeded", what,
                      "This model's maximum context length is %d tokens. However, your %s resulted "
                      "in %zu tokens. "
                      "Please reduce the length of the %s.",
                      n_ctx, what, n_prompt, what);
        return 0;
    }
    int room = n_ctx - (int)n_prompt;
    if (o->max_tokens > 0) {
        if (fe->max_tokens_limit > 0 && o->max_tokens > fe->max_tokens_limit) {
            oai_error_set(
                e, 400, "invalid_request_error", NULL, "max_tokens",
                "max_tokens is %d; this server allows at most %d (server:max_tokens_limit).",
                o->max_tokens, fe->max_tokens_limit);
            return 0;
        }
        if (o->max_tokens > room) {
            oai_error_set(e, 400, "invalid_request_error", "context_length_exceeded", what,
                          "This model's maximum context length is %d tokens. However, you "
                          "requested %lld tokens "
                          "(%zu in the %s, %d in the completion). Please reduce the length of the "
                          "%s or completion.",
                          n_ctx, (long long)n_prompt + o->max_tokens, n_prompt, what, o->max_tokens,
                          what);
            return 0;
        }
        return o->max_tokens;
    }
    int m = fe->default_max_tokens < room ? fe->default_max_tokens : room;
    if (fe->max_tokens_limit > 0 && m > fe->max_tokens_limit) m = fe->max_tokens_limit;
    return m;
}

static bool check_token_ids(const fe_server_t *fe, const oai_request_t *o, oai_error_t *e) {
    int32_t nv = tok_n_vocab(fe->model.vocab);
    for (size_t i = 0; i < o->n_stop_token_ids; i++)
        if (o->stop_token_ids[i] >= nv) {
            oai_error_set(e, 400, "invalid_request_error", NULL, "stop_token_ids",
                          "stop_token_ids[%zu] = %d is outside the vocabulary (0..%d)", i,
                          o->stop_token_ids[i], nv - 1);
            return false;
        }
    for (size_t i = 0; i < o->n_logit_bias; i++)
        if (o->logit_bias_ids[i] >= nv) {
            oai_error_set(e, 400, "invalid_request_error", NULL, "logit_bias",
                          "logit_bias token %d is outside the vocabulary (0..%d)", o->logit_bias_ids[i], nv - 1);
            return false;
        }
    return true;
}

bool fe_admit_body(const fe_server_t *fe, size_t len, oai_error_t *e) {
    if (len > fe->max_body) {
        oai_error_set(e, 413, "invalid_request_error", "request_too_large", NULL,
                      "The request body is %zu bytes; this server accepts at most %zu "
                      "(server:max_body_bytes).",
                      len, fe->max_body);
        return false;
    }
    if (fe->draining) {
        oai_error_set(e, 503, "server_error", "service_unavailable", NULL,
                      "The server is shutting down.");
        return false;
    }
    return true;
}

bool fe_check_model(const fe_server_t *fe, const char *model, oai_error_t *e) {
    if (strcmp(model, fe->model_name) == 0) return true;
    char shown[128];
    oai_utf8_sanitize(model, strlen(model), shown, sizeof shown);
    oai_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                  "The model `%s` does not exist (this server serves `%s`).", shown,
                  fe->model_name);
    return false;
}

void fe_generate(fe_server_t *fe, struct evhttp_request *req, oai_kind_t kind, double t_arrival) {
    oai_error_t e;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (!fe_admit_body(fe, len, &e)) {
        reject(fe, req, &e, t_arrival, 0);
        return;
    }
    if (fe->n_live >= fe->max_queued) {
        oai_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "Too many requests in flight (%zu; server:max_queued_requests). Retry later.",
                      fe->n_live);
        reject(fe, req, &e, t_arrival, 0);
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "";
    oai_request_t o;
    if (oai_parse(kind, body ? body : "", body ? len : 0, &fe->defaults, &o, &e)) {
        reject(fe, req, &e, t_arrival, 0);
        return;
    }
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    int max_tokens = 0;
    uint32_t slot = 0;
    fe_req_t *r = NULL;
    if (!fe_check_model(fe, o.model, &e)) goto rejected;
    if (!check_token_ids(fe, &o, &e) || !build_prompt(fe, &o, &prompt, &n_prompt, &e)) goto rejected;
    if (!(max_tokens = choose_max_tokens(fe, &o, n_prompt, &e))) goto rejected;
    if (o.min_tokens > max_tokens) {
        oai_error_set(&e, 400, "invalid_request_error", NULL, "min_tokens",
                      "'min_tokens' (%d) is more than this request may generate (%d)", o.min_tokens, max_tokens);
        goto rejected;
    }
    if (!slot_take(fe, &slot)) {
        oai_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "Too many requests in flight.");
        goto rejected;
    }
    uint64_t seq = fe->next_seq++;
    if (fe_req_create(fe, seq, slot, &o, prompt, n_prompt, max_tokens, &r)) {
        fe->free_slots[fe->n_free++] = slot;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        goto rejected;
    }
    if ((r->oai.echo && !echo_prompt(fe, r)) || fe_tools_init(r)) { /* r owns them now */
        fe_req_destroy(r);
        fe->free_slots[fe->n_free++] = slot;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        reject(fe, req, &e, t_arrival, n_prompt);
        return;
    }
    fe->slots[slot] = r;
    fe->n_live++;
    snprintf(r->id, sizeof r->id, "%s-%016llx%08llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)fe->salt, (unsigned long long)seq);
    r->created = (int64_t)time(NULL);
    r->t_arrival = t_arrival;
    r->http = req;
    watch_client(fe, r);

    r->busy++;
    submit_all(fe, r);
    if (!r->failed) stream_start(fe, r);
    r->busy--;
    progress(fe, r);
    return;
rejected:
    reject(fe, req, &e, t_arrival, n_prompt);
    free(prompt);
    oai_request_free(&o);
}

/* ------------------------------------------------------- drain, destroy */

void fe_cancel_all(fe_server_t *fe, const char *why) {
    oai_error_t e;
    oai_error_set(&e, 503, "server_error", "service_unavailable", NULL, "%s", why);
    for (uint32_t s = 0; s < fe->n_used_slots; s++) {
        fe_req_t *r = fe->slots[s];
        if (!r) continue;
        if (!r->failed)
            fail_request(fe, r, &e, "abort"); /* may free r */
        else
            for (int i = 0; i < r->n_choices; i++)
                cancel_choice(fe, r, &r->choices[i]);
    }
}

void fe_free_all(fe_server_t *fe) {
    for (uint32_t s = 0; s < fe->n_used_slots; s++) {
        fe_req_t *r = fe->slots[s];
        if (!r) continue;
        release_http(r); /* evhttp_free frees the connection and its request */
        fe->slots[s] = NULL;
        fe_req_destroy(r);
    }
    fe->n_live = 0;
}
