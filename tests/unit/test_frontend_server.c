/* test_frontend_server.c - the HTTP front end against a scripted dispatcher,
 * with libevent's own HTTP client on the same event loop: the paths an
 * engine rarely takes (an ERROR before or in the middle of a stream, no
 * worker up, a refused request), cancellation when a stop string matches,
 * a client that leaves before its answer or mid-stream, the queue limit,
 * /health against the workers' state, the drain (503 for new requests, the
 * stream cancelled after the grace period, done() exactly once) and destroy
 * with requests in flight. Under `make asan` this also checks that every
 * request's state is freed exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor/frontend.h"
#include "rotor/gguf.h"
#include "rotor/tokenizer.h"
#include "test_model_util.h"

/* --------------------------------------------------- scripted dispatcher */

enum {
    MODE_ERROR = 1000,   /* two tokens, then ERROR */
    MODE_UNAVAIL = 1001, /* submit: RT_ERR_UNAVAILABLE */
    MODE_ENDLESS = 1002, /* a token per tick until cancelled */
    MODE_INVALID = 1003, /* submit: RT_ERR_INVALID */
};

typedef struct {
    uint64_t id;
    int mode, max_tokens, emitted;
    bool cancelled, live, refused;
} fake_req_t;

typedef struct {
    struct event_base *base;
    struct event *tick;
    dispatch_sink_t sink;
    fake_req_t reqs[64];
    int n_up, n_workers;
    int32_t toks[3]; /* "a", "b", "c" */
    int n_submits, n_cancels, n_live;
    int cap;         /* requests it takes at once (RT_ERR_FULL above); 0 = 64 */
    int refuse_next; /* accept this many requests, then refuse each with an ERROR (RT_ERR_FULL) */
} fake_t;

static void fake_emit(fake_t *f, engine_event_t ev) {
    if (f->sink.on_event) f->sink.on_event(f->sink.ctx, &ev, 1);
}

static void fake_end(fake_t *f, fake_req_t *q, engine_finish_t why) {
    q->live = false;
    f->n_live--;
    fake_emit(f, (engine_event_t){.kind = ENGINE_EV_FINISH,
                                  .request_id = q->id,
                                  .finish = why,
                                  .n_prompt = 7,
                                  .n_cached = 3,
                                  .n_generated = q->emitted,
                                  .t_scheduled = 1.0,
                                  .t_prefill_done = 2.0});
}

static void fake_tick(evutil_socket_t fd, short what, void *arg) {
    fake_t *f = arg;
    for (size_t i = 0; i < 64; i++) {
        fake_req_t *q = &f->reqs[i];
        if (!q->live) continue;
        if (q->cancelled) {
            fake_end(f, q, ENGINE_FINISH_CANCELLED);
            continue;
        }
        if (q->refused) { /* as a worker refuses: one ERROR, no FINISH */
            q->live = false;
            f->n_live--;
            fake_emit(f, (engine_event_t){
                             .kind = ENGINE_EV_ERROR, .request_id = q->id, .status = RT_ERR_FULL});
            continue;
        }
        if (q->mode == MODE_ERROR && q->emitted == 2) {
            fake_emit(f, (engine_event_t){.kind = ENGINE_EV_ERROR,
                                          .request_id = q->id,
                                          .status = RT_ERR_INTERNAL});
            fake_end(f, q, ENGINE_FINISH_ERROR); /* as the engine does: ERROR, then FINISH */
            continue;
        }
        fake_emit(f, (engine_event_t){.kind = ENGINE_EV_TOKEN,
                                      .request_id = q->id,
                                      .token = f->toks[q->emitted % 3],
                                      .logprob = -1.0f});
        q->emitted++;
        if (q->mode != MODE_ENDLESS && q->mode != MODE_ERROR && q->emitted == q->max_tokens)
            fake_end(f, q, ENGINE_FINISH_LENGTH);
    }
    if (f->n_live == 0) event_del(f->tick);
}

static void fake_set_sink(void *self, dispatch_sink_t s) {
    ((fake_t *)self)->sink = s;
}

static rt_status_t fake_submit(void *self, const engine_request_t *r, dispatch_route_t *route) {
    fake_t *f = self;
    int mode = (int)r->sampling.seed;
    if (mode == MODE_UNAVAIL) return rt_error_set(RT_ERR_UNAVAILABLE, "no worker is up");
    if (mode == MODE_INVALID) return rt_error_set(RT_ERR_INVALID, "the engine refuses this");
    if (f->cap && f->n_live >= f->cap) return rt_error_set(RT_ERR_FULL, "the engine queue is full");
    for (size_t i = 0; i < 64; i++)
        if (!f->reqs[i].live) {
            f->reqs[i] = (fake_req_t){.id = r->id,
                                      .mode = mode,
                                      .max_tokens = r->max_tokens,
                                      .live = true,
                                      .refused = f->refuse_next > 0};
            if (f->refuse_next > 0) f->refuse_next--;
            f->n_submits++;
            f->n_live++;
            struct timeval tv = {0, 1000};
            event_add(f->tick, &tv);
            *route = (dispatch_route_t){.worker = 1, .overlap_blocks = -1};
            return RT_OK;
        }
    return rt_error_set(RT_ERR_FULL, "fake dispatcher full");
}

static void fake_cancel(void *self, uint64_t id) {
    fake_t *f = self;
    for (size_t i = 0; i < 64; i++)
        if (f->reqs[i].live && f->reqs[i].id == id && !f->reqs[i].cancelled) {
            f->reqs[i].cancelled = true;
            f->n_cancels++;
        }
}

static void fake_status(void *self, dispatch_status_t *st) {
    fake_t *f = self;
    *st = (dispatch_status_t){.n_workers = f->n_workers, .n_up = f->n_up, .n_running = f->n_live};
}

static const dispatch_ops_t fake_ops = {.name = "fake",
                                        .set_sink = fake_set_sink,
                                        .submit = fake_submit,
                                        .cancel = fake_cancel,
                                        .status = fake_status};

/* ------------------------------------------------------------- fixture */

typedef struct {
    char model_path[256];
    gguf_ctx_t *g;
    tok_vocab_t *v;
    struct event_base *base;
    cfg_t *cfg;
    fake_t fake;
    fe_server_t *fe;
    int port;
    int n_done; /* drain callbacks */
} fx_t;

static fx_t *G;            /* the fixture of the running test (for the client callbacks) */
static const char *G_auth; /* Authorization header of the next requests, or NULL */

static int group_setup(void **state) {
    fx_t *x = calloc(1, sizeof *x);
    if (!x || test_gen_model(x->model_path, sizeof x->model_path, "fesrv",
                             "--tokenizer bpe --n-vocab 600") != 0)
        return -1;
    if (gguf_open(x->model_path, &x->g) || tok_vocab_from_gguf(x->g, &x->v)) return -1;
    unlink(x->model_path);
    *state = x;
    return 0;
}

static int group_teardown(void **state) {
    fx_t *x = *state;
    tok_vocab_destroy(x->v);
    gguf_close(x->g);
    free(x);
    return 0;
}

/* A server with these extra config settings ("key=value", NULL-ended). */
static void start(fx_t *x, const char *const *sets) {
    G = x;
    x->base = event_base_new();
    assert_non_null(x->base);
    assert_int_equal(cfg_load(NULL, &x->cfg), RT_OK);
    assert_int_equal(cfg_set(x->cfg, "server:port", "0"), RT_OK);
    for (; sets && *sets; sets += 2)
        assert_int_equal(cfg_set(x->cfg, sets[0], sets[1]), RT_OK);
    memset(&x->fake, 0, sizeof x->fake);
    x->fake.base = x->base;
    x->fake.tick = event_new(x->base, -1, EV_PERSIST, fake_tick, &x->fake);
    x->fake.n_up = x->fake.n_workers = 2;
    const char *letters[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        assert_true((x->fake.toks[i] = tok_find(x->v, letters[i])) >= 0);
    fe_model_t m = {
        .vocab = x->v, .chat_template = CHAT_TMPL_CHATML, .model_name = "fake", .n_ctx = 512};
    dispatch_t d = {.ops = &fake_ops, .self = &x->fake};
    assert_int_equal(fe_server_create(x->base, x->cfg, &m, d, NULL, &x->fe), RT_OK);
    const char *ep = fe_server_endpoint(x->fe);
    assert_non_null(strstr(ep, "127.0.0.1:"));
    x->port = atoi(strrchr(ep, ':') + 1);
    assert_true(x->port > 0);
    x->n_done = 0;
}

static void stop(fx_t *x) {
    fe_server_destroy(x->fe);
    x->fe = NULL;
    event_free(x->fake.tick);
    cfg_destroy(x->cfg);
    event_base_free(x->base);
}

/* -------------------------------------------------------------- client */

typedef struct {
    struct evhttp_connection *conn;
    int status; /* 0 until the answer is complete; -1 on a failed connection */
    char body[65536];
    size_t len;
    int n_chunks;
    int break_after; /* stop the loop after this many chunks (0: at the end) */
    char retry_after[16];
} resp_t;

static void take_input(resp_t *r, struct evhttp_request *req) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > sizeof r->body - 1 - r->len) n = sizeof r->body - 1 - r->len;
    evbuffer_remove(in, r->body + r->len, n);
    r->len += n;
    r->body[r->len] = '\0';
}

static void on_chunk(struct evhttp_request *req, void *arg) {
    resp_t *r = arg;
    take_input(r, req);
    r->n_chunks++;
    if (r->break_after && r->n_chunks == r->break_after) event_base_loopbreak(G->base);
}

static void on_done(struct evhttp_request *req, void *arg) {
    resp_t *r = arg;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        r->status = -1;
    } else {
        take_input(r, req);
        r->status = evhttp_request_get_response_code(req);
        const char *ra = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After");
        if (ra) snprintf(r->retry_after, sizeof r->retry_after, "%s", ra);
    }
    event_base_loopbreak(G->base);
}

static void on_hang(evutil_socket_t fd, short what, void *arg) {
    fail_msg("the test hung");
}

/* Run the loop until it is broken (or 20 s pass: a hang is a failure). */
static void run_loop(fx_t *x) {
    struct event *hang = evtimer_new(x->base, on_hang, NULL);
    struct timeval tv = {20, 0};
    evtimer_add(hang, &tv);
    event_base_dispatch(x->base);
    event_free(hang);
}

/* Send a request; resp must stay valid until it is answered. */
static void send_req(fx_t *x, resp_t *r, enum evhttp_cmd_type cmd, const char *path,
                     const char *body) {
    memset(r, 0, sizeof *r);
    r->conn = evhttp_connection_base_new(x->base, NULL, "127.0.0.1", (ev_uint16_t)x->port);
    struct evhttp_request *req = evhttp_request_new(on_done, r);
    evhttp_request_set_chunked_cb(req, on_chunk);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    evhttp_add_header(h, "Content-Type", "application/json");
    if (G_auth) evhttp_add_header(h, "Authorization", G_auth);
    if (body) evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    assert_int_equal(evhttp_make_request(r->conn, req, cmd, path), 0);
}

static void finish_req(resp_t *r) {
    evhttp_connection_free(r->conn);
    r->conn = NULL;
}

/* Request and wait for the whole answer. */
static void fetch(fx_t *x, resp_t *r, enum evhttp_cmd_type cmd, const char *path,
                  const char *body) {
    send_req(x, r, cmd, path, body);
    while (r->status == 0)
        run_loop(x);
    finish_req(r);
}

typedef bool (*pred_t)(fx_t *x);
static pred_t wait_pred;
static void on_poll(evutil_socket_t fd, short what, void *arg) {
    if (wait_pred(arg)) event_base_loopbreak(((fx_t *)arg)->base);
}

static void wait_for(fx_t *x, pred_t p) {
    if (p(x)) return;
    wait_pred = p;
    struct event *poll = event_new(x->base, -1, EV_PERSIST, on_poll, x);
    struct timeval tv = {0, 1000};
    event_add(poll, &tv);
    run_loop(x);
    event_free(poll);
    assert_true(p(x));
}

static bool none_active(fx_t *x) {
    return fe_server_n_active(x->fe) == 0 && x->fake.n_live == 0;
}
static bool one_running(fx_t *x) {
    return x->fake.n_live == 1 && x->fake.reqs[0].emitted > 0;
}

static cJSON *json_of(const resp_t *r) {
    cJSON *j = cJSON_Parse(r->body);
    if (!j) fail_msg("not JSON: %s", r->body);
    return j;
}

static const char *error_field(cJSON *j, const char *k) {
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

#define CHAT(extra)                                                                                \
    "{\"model\":\"fake\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"

/* --------------------------------------------------------------- tests */

static void test_answer_and_stop_string(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    resp_t r;
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":4,\"seed\":5"));
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "abca");
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "length");
    cJSON *u = cJSON_GetObjectItem(j, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 4);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens")
            ->valueint,
        3);
    cJSON_Delete(j);
    assert_int_equal(x->fake.n_cancels, 0);

    /* "ca" ends the text after "ab"; the engine request is cancelled and its
     * CANCELLED finish still arrives and is absorbed */
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions",
          CHAT(",\"max_tokens\":10,\"seed\":5,\"stop\":\"ca\""));
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "ab");
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "stop");
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "completion_tokens")->valueint, 4);
    cJSON_Delete(j);
    assert_int_equal(x->fake.n_cancels, 1);
    wait_for(x, none_active);
    stop(x);
}

static void test_engine_errors(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    resp_t r;
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":1000"));
    assert_int_equal(r.status, 500);
    cJSON *j = json_of(&r);
    assert_string_equal(error_field(j, "type"), "server_error");
    assert_non_null(strstr(error_field(j, "message"), "RT_ERR_INTERNAL"));
    cJSON_Delete(j);

    /* mid-stream: the tokens so far, an error event, then [DONE] */
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/completions",
          "{\"model\":\"fake\",\"prompt\":\"x\",\"seed\":1000,\"stream\":true}");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"text\":\"a\""));
    assert_non_null(strstr(r.body, "\"text\":\"b\""));
    const char *err = strstr(r.body, "data: {\"error\":{");
    assert_non_null(err);
    assert_non_null(strstr(err, "\"type\":\"server_error\""));
    size_t n = strlen(r.body);
    assert_true(n > 14 && strcmp(r.body + n - 14, "data: [DONE]\n\n") == 0);

    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":1001,\"stream\":true"));
    assert_int_equal(r.status, 503);
    j = json_of(&r);
    assert_string_equal(error_field(j, "code"), "service_unavailable");
    assert_non_null(strstr(error_field(j, "message"), "no worker is up"));
    cJSON_Delete(j);

    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":1003"));
    assert_int_equal(r.status, 400);
    j = json_of(&r);
    assert_string_equal(error_field(j, "message"), "the engine refuses this");
    cJSON_Delete(j);
    wait_for(x, none_active);
    assert_int_equal(x->fake.n_cancels, 0); /* nothing was left running */
    stop(x);
}

static void test_health_follows_workers(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    resp_t r;
    fetch(x, &r, EVHTTP_REQ_GET, "/health", NULL);
    assert_int_equal(r.status, 200);
    x->fake.n_up = 1;
    fetch(x, &r, EVHTTP_REQ_GET, "/health", NULL);
    assert_int_equal(r.status, 503);
    x->fake.n_up = 0;
    x->fake.n_workers = 0;
    fetch(x, &r, EVHTTP_REQ_GET, "/health", NULL);
    assert_int_equal(r.status, 503);
    fetch(x, &r, EVHTTP_REQ_GET, "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "rotor_http_requests_total"));
    stop(x);
}

static void test_client_leaves(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    /* mid-stream */
    resp_t r;
    send_req(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions",
             CHAT(",\"seed\":1002,\"stream\":true"));
    r.break_after = 3;
    run_loop(x);
    assert_int_equal(r.n_chunks, 3);
    assert_int_equal(fe_server_n_active(x->fe), 1);
    finish_req(&r);
    wait_for(x, none_active);
    assert_int_equal(x->fake.n_cancels, 1);

    /* before any byte of the answer */
    send_req(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":1002"));
    wait_for(x, one_running);
    finish_req(&r);
    wait_for(x, none_active);
    assert_int_equal(x->fake.n_cancels, 2);

    /* the server still answers */
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":2,\"seed\":5"));
    assert_int_equal(r.status, 200);
    stop(x);
}

static void test_queue_limit(void **state) {
    fx_t *x = *state;
    const char *sets[] = {"server:max_queued_requests", "1", NULL};
    start(x, sets);
    resp_t a, b;
    send_req(x, &a, EVHTTP_REQ_POST, "/v1/chat/completions",
             CHAT(",\"seed\":1002,\"stream\":true"));
    a.break_after = 2;
    run_loop(x);
    fetch(x, &b, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":5"));
    assert_int_equal(b.status, 429);
    assert_string_equal(b.retry_after, "1");
    cJSON *j = json_of(&b);
    assert_string_equal(error_field(j, "code"), "rate_limit_exceeded");
    cJSON_Delete(j);
    finish_req(&a);
    wait_for(x, none_active);
    fetch(x, &b, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":1,\"seed\":5"));
    assert_int_equal(b.status, 200);
    stop(x);
}

/* Engines that take two requests at once: the rest wait in the front end's
 * backlog, in order, and every request is answered. */
static void test_backlog(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    x->fake.cap = 2;
    enum { N = 7 };
    resp_t *r = calloc(N, sizeof *r);
    for (int i = 0; i < N; i++)
        send_req(x, &r[i], EVHTTP_REQ_POST, "/v1/chat/completions",
                 i % 2 ? CHAT(",\"max_tokens\":3,\"seed\":5,\"stream\":true")
                       : CHAT(",\"max_tokens\":3,\"seed\":5"));
    for (int i = 0; i < N; i++) {
        while (r[i].status == 0)
            run_loop(x);
        finish_req(&r[i]);
        assert_int_equal(r[i].status, 200);
        if (i % 2)
            assert_non_null(strstr(r[i].body, "data: [DONE]"));
        else
            assert_non_null(strstr(r[i].body, "\"content\":\"abc\""));
    }
    assert_int_equal(x->fake.n_submits, N);
    /* a client that leaves while parked: nothing is submitted for it */
    x->fake.cap = 1;
    resp_t a, b;
    send_req(x, &a, EVHTTP_REQ_POST, "/v1/chat/completions",
             CHAT(",\"seed\":1002,\"stream\":true"));
    a.break_after = 2;
    run_loop(x);
    send_req(x, &b, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"seed\":5,\"stream\":true"));
    b.break_after = 1; /* its headers and role chunk: admitted and parked */
    run_loop(x);
    assert_int_equal(fe_server_n_active(x->fe), 2);
    finish_req(&b);
    finish_req(&a);
    wait_for(x, none_active);
    assert_int_equal(x->fake.n_submits, N + 1);

    /* refusals that come back as ERROR (RT_ERR_FULL) events: retried */
    x->fake.cap = 0;
    x->fake.refuse_next = 2;
    fetch(x, &a, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":3,\"seed\":5"));
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "\"content\":\"abc\""));
    assert_int_equal(x->fake.n_submits, N + 4);
    free(r);
    stop(x);
}

static void on_drained(void *arg) {
    ((fx_t *)arg)->n_done++;
}
static bool drained(fx_t *x) {
    return x->n_done > 0;
}

static void test_drain(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    resp_t a, b;
    send_req(x, &a, EVHTTP_REQ_POST, "/v1/completions",
             "{\"model\":\"fake\",\"prompt\":\"x\",\"seed\":1002,\"stream\":true}");
    a.break_after = 2;
    run_loop(x);
    fe_server_drain(x->fe, 0.05, on_drained, x);
    fetch(x, &b, EVHTTP_REQ_POST, "/v1/completions", "{\"model\":\"fake\",\"prompt\":\"x\"}");
    assert_int_equal(b.status, 503);
    fetch(x, &b, EVHTTP_REQ_GET, "/health", NULL);
    assert_int_equal(b.status, 503);
    assert_int_equal(x->n_done, 0); /* the stream still runs in its grace period */
    a.break_after = 0;
    while (a.status == 0)
        run_loop(x); /* cancelled after the grace period */
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "shutting down"));
    assert_non_null(strstr(a.body, "data: [DONE]\n\n"));
    finish_req(&a);
    wait_for(x, drained);
    assert_int_equal(fe_server_n_active(x->fe), 0);
    fe_server_drain(x->fe, 0, on_drained, x); /* again: done() is not called twice */
    resp_t c;
    fetch(x, &c, EVHTTP_REQ_GET, "/health", NULL); /* a turn of the loop */
    assert_int_equal(x->n_done, 1);
    stop(x);
}

static void test_drain_idle_and_destroy_busy(void **state) {
    fx_t *x = *state;
    start(x, NULL);
    fe_server_drain(x->fe, 5, on_drained, x); /* nothing in flight: done() right away */
    wait_for(x, drained);
    stop(x);

    /* destroy with a request in flight and its client still connected */
    start(x, NULL);
    resp_t a;
    send_req(x, &a, EVHTTP_REQ_POST, "/v1/chat/completions",
             CHAT(",\"seed\":1002,\"stream\":true"));
    a.break_after = 2;
    run_loop(x);
    fe_server_destroy(x->fe);
    x->fe = NULL;
    finish_req(&a);
    memset(x->fake.reqs, 0, sizeof x->fake.reqs);
    x->fake.n_live = 0;
    event_free(x->fake.tick);
    cfg_destroy(x->cfg);
    event_base_free(x->base);
}

static void test_routes(void **state) {
    fx_t *x = *state;
    const char *sets[] = {"server:api_key", "k", "server:max_body_bytes", "1024", NULL};
    start(x, sets);
    resp_t r;
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":1,\"seed\":5"));
    assert_int_equal(r.status, 401);
    G_auth = "Bearer kk";
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":1,\"seed\":5"));
    assert_int_equal(r.status, 401);
    G_auth = "bearer k";
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/chat/completions", CHAT(",\"max_tokens\":1,\"seed\":5"));
    assert_int_equal(r.status, 200);
    char big[2100];
    snprintf(big, sizeof big, "{\"model\":\"fake\",\"prompt\":\"%02000d\"}", 0);
    fetch(x, &r, EVHTTP_REQ_POST, "/v1/completions", big);
    assert_int_equal(r.status, 413);
    cJSON *j = json_of(&r);
    assert_string_equal(error_field(j, "code"), "request_too_large");
    cJSON_Delete(j);
    G_auth = NULL;
    fetch(x, &r, EVHTTP_REQ_GET, "/nope", NULL);
    assert_int_equal(r.status, 404);
    fetch(x, &r, EVHTTP_REQ_PUT, "/v1/models", NULL);
    assert_int_equal(r.status, 405);
    fetch(x, &r, EVHTTP_REQ_GET, "/health", NULL);
    assert_int_equal(r.status, 200);
    stop(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_and_stop_string),
        cmocka_unit_test(test_engine_errors),
        cmocka_unit_test(test_health_follows_workers),
        cmocka_unit_test(test_client_leaves),
        cmocka_unit_test(test_queue_limit),
        cmocka_unit_test(test_backlog),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_drain_idle_and_destroy_busy),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests_name("frontend_server", tests, group_setup, group_teardown);
}
