/* test_dispatch_local.c - the in-process dispatcher on a libevent loop with a
 * small generated model (../bin/rotor-model beside this binary): every
 * request gets max_tokens TOKEN events then exactly one FINISH, outputs equal
 * a direct engine run of the same requests, I/O is served between steps,
 * cancel (also from inside the sink, and before the first step) ends a
 * request with FINISH CANCELLED, submit from inside the sink works, and
 * destroy from inside the sink is safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "test_model_util.h"
#include "rotor/dispatch.h"
#include "rotor/frontend.h"

#define NREQ 5
#define MAXOUT 10
#define MAXTOK 256

static char model_path[512];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(model_path, sizeof model_path, "dispatch-local",
                          "--type f32 --tokenizer bpe --seed 5 --n-ctx 512");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

static engine_config_t small_cfg(void)
{
    engine_config_t c = engine_config_default();
    c.model_path = model_path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = 64;
    c.max_num_seqs = 4;
    c.max_num_batched_tokens = 32; /* chunked prefills */
    c.kv_type = RT_TYPE_F32;
    return c;
}

typedef struct {
    int32_t prompt[80];
    int n_prompt;
    int32_t out[MAXTOK];
    int n_out, n_finish, n_error, n_after_finish;
    engine_finish_t finish;
    int n_generated; /* FINISH's */
} req_t;

static void make_prompt(req_t *r, int i)
{
    memset(r, 0, sizeof *r);
    unsigned x = 31u + (unsigned)i;
    r->n_prompt = 4 + 11 * i;
    for (int j = 0; j < r->n_prompt; j++) {
        x = x * 1103515245u + 12345u;
        r->prompt[j] = (int32_t)(10 + (x >> 8) % 400);
    }
}

static engine_request_t greedy(const req_t *r, uint64_t id, int max_tokens)
{
    engine_request_t q = {.id = id, .prompt = r->prompt, .n_prompt = (size_t)r->n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = max_tokens,
                          .ignore_eos = true};
    q.sampling.temperature = 0.0f;
    return q;
}

static void record(req_t *q, const engine_event_t *ev)
{
    if (q->n_finish || q->n_error)
        q->n_after_finish++;
    if (ev->kind == ENGINE_EV_TOKEN) {
        assert_true(q->n_out < MAXTOK);
        q->out[q->n_out++] = ev->token;
    } else if (ev->kind == ENGINE_EV_FINISH) {
        q->n_finish++;
        q->finish = ev->finish;
        q->n_generated = ev->n_generated;
    } else {
        q->n_error++;
    }
}

/* the same requests straight on an engine, all submitted at once */
static void direct_run(req_t *r, int n)
{
    engine_config_t c = small_cfg();
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    for (int i = 0; i < n; i++) {
        engine_request_t q = greedy(&r[i], (uint64_t)i, MAXOUT);
        assert_int_equal(engine_add_request(e, &q), RT_OK);
    }
    engine_event_t ev[64];
    for (int step = 0; engine_has_work(e); step++) {
        size_t k = 0;
        assert_int_equal(engine_step(e, ev, 64, &k, NULL), RT_OK);
        for (size_t j = 0; j < k; j++)
            record(&r[ev[j].request_id], &ev[j]);
        assert_true(step < 10000);
    }
    engine_destroy(e);
    for (int i = 0; i < n; i++)
        assert_int_equal(r[i].n_out, MAXOUT);
}

/* ------------------------------------------------ many requests, with I/O */

typedef struct {
    dispatch_t d;
    req_t r[NREQ];
    int n_done;
    int fds[2];          /* socketpair: the sink writes, the loop reads */
    struct event *ev_rd; /* persistent read event on fds[0] */
    int bytes_read;
    int max_running;
    double max_kv;
} run_t;

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    run_t *t = arg;
    char buf[64];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0)
        t->bytes_read += (int)n;
}

static void sink_run(void *ctx, const engine_event_t *ev, int worker)
{
    run_t *t = ctx;
    assert_int_equal(worker, 0);
    assert_true(ev->request_id < NREQ);
    req_t *q = &t->r[ev->request_id];
    record(q, ev);
    dispatch_status_t st;
    t->d.ops->status(t->d.self, &st);
    if (st.n_running > t->max_running)
        t->max_running = st.n_running;
    if (st.kv_usage > t->max_kv)
        t->max_kv = st.kv_usage;
    if (ev->kind == ENGINE_EV_TOKEN && ev->request_id == 0) {
        /* request 0 gets one token per step: the byte written for each of its
         * earlier tokens must have been read by the loop before this step */
        assert_int_equal(t->bytes_read, q->n_out - 1);
        assert_int_equal(write(t->fds[1], "x", 1), 1);
    }
    if (ev->kind == ENGINE_EV_FINISH && ++t->n_done == NREQ)
        event_del(t->ev_rd); /* nothing left: let the loop end */
}

static void test_outputs_equal_direct_run(void **state)
{
    (void)state;
    req_t ref[NREQ];
    for (int i = 0; i < NREQ; i++)
        make_prompt(&ref[i], i);
    direct_run(ref, NREQ);

    run_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    engine_config_t c = small_cfg();
    assert_int_equal(dispatch_local_create(base, &c, &t->d), RT_OK);
    assert_string_equal(t->d.ops->name, "local");
    t->d.ops->set_sink(t->d.self, (dispatch_sink_t){.on_event = sink_run, .ctx = t});
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, t->fds), 0);
    t->ev_rd = event_new(base, t->fds[0], EV_READ | EV_PERSIST, on_readable, t);
    assert_int_equal(event_add(t->ev_rd, NULL), 0);

    for (int i = 0; i < NREQ; i++) {
        make_prompt(&t->r[i], i);
        engine_request_t q = greedy(&t->r[i], (uint64_t)i, MAXOUT);
        dispatch_route_t route = {.worker = -1};
        assert_int_equal(t->d.ops->submit(t->d.self, &q, &route), RT_OK);
        assert_int_equal(route.worker, 0);
        assert_int_equal(route.overlap_blocks, -1); /* no router estimate in one process */
    }
    dispatch_status_t st;
    t->d.ops->status(t->d.self, &st);
    assert_int_equal(st.n_waiting, NREQ); /* submitted, not stepped yet */
    assert_int_equal(st.steps_total, 0);

    assert_int_equal(event_base_dispatch(base), 1); /* ends when no event is left */

    assert_int_equal(t->n_done, NREQ);
    for (int i = 0; i < NREQ; i++) {
        const req_t *q = &t->r[i];
        assert_int_equal(q->n_out, MAXOUT);
        assert_int_equal(q->n_finish, 1);
        assert_int_equal(q->n_error, 0);
        assert_int_equal(q->n_after_finish, 0);
        assert_int_equal(q->finish, ENGINE_FINISH_LENGTH);
        assert_int_equal(q->n_generated, MAXOUT);
        assert_memory_equal(q->out, ref[i].out, sizeof(int32_t) * MAXOUT);
    }
    /* request 0 (shortest prompt) finishes steps before the last one: all read */
    assert_int_equal(t->bytes_read, MAXOUT);
    assert_true(t->max_running >= 2 && t->max_running <= 4);
    assert_true(t->max_kv > 0.0 && t->max_kv <= 1.0);
    t->d.ops->status(t->d.self, &st);
    assert_int_equal(st.n_workers, 1);
    assert_int_equal(st.n_up, 1);
    assert_int_equal(st.n_running, 0);
    assert_int_equal(st.n_waiting, 0);
    assert_true(st.kv_usage == 0.0);
    assert_true(st.steps_total >= MAXOUT);

    dispatch_local_destroy(t->d);
    event_free(t->ev_rd);
    close(t->fds[0]);
    close(t->fds[1]);
    event_base_free(base);
    free(t);
}

/* -------------------------------------------------------- cancellation */

enum { ID_A = 0, ID_B = 1, ID_C = 2, ID_D = 3, N_CANCEL_REQS = 4 };

typedef struct {
    dispatch_t d;
    req_t r[N_CANCEL_REQS];
} cancel_t;

static void sink_cancel(void *ctx, const engine_event_t *ev, int worker)
{
    cancel_t *t = ctx;
    assert_int_equal(worker, 0);
    assert_true(ev->request_id < N_CANCEL_REQS);
    req_t *q = &t->r[ev->request_id];
    record(q, ev);
    if (ev->request_id == ID_A && ev->kind == ENGINE_EV_TOKEN && q->n_out == 3) {
        /* re-entrant: cancel A and submit C from inside the sink */
        t->d.ops->cancel(t->d.self, ID_A);
        t->d.ops->cancel(t->d.self, 12345); /* unknown: ignored */
        engine_request_t c = greedy(&t->r[ID_C], ID_C, MAXOUT);
        dispatch_route_t w = {.worker = -1};
        assert_int_equal(t->d.ops->submit(t->d.self, &c, &w), RT_OK);
        assert_int_equal(w.worker, 0);
    }
}

static void test_cancel_and_reentrant_submit(void **state)
{
    (void)state;
    req_t ref[NREQ];
    for (int i = 0; i < NREQ; i++)
        make_prompt(&ref[i], i);
    direct_run(ref, NREQ);

    cancel_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    engine_config_t c = small_cfg();
    assert_int_equal(dispatch_local_create(base, &c, &t->d), RT_OK);
    t->d.ops->set_sink(t->d.self, (dispatch_sink_t){.on_event = sink_cancel, .ctx = t});
    for (int i = 0; i < N_CANCEL_REQS; i++)
        make_prompt(&t->r[i], i);
    dispatch_route_t worker;
    engine_request_t a = greedy(&t->r[ID_A], ID_A, 200);
    engine_request_t b = greedy(&t->r[ID_B], ID_B, MAXOUT);
    engine_request_t d = greedy(&t->r[ID_D], ID_D, MAXOUT);
    assert_int_equal(t->d.ops->submit(t->d.self, &a, &worker), RT_OK);
    assert_int_equal(t->d.ops->submit(t->d.self, &b, &worker), RT_OK);
    assert_int_equal(t->d.ops->submit(t->d.self, &d, &worker), RT_OK);
    t->d.ops->cancel(t->d.self, ID_D); /* before the first step */

    assert_int_equal(event_base_dispatch(base), 1);

    for (int i = 0; i < N_CANCEL_REQS; i++) {
        assert_int_equal(t->r[i].n_finish, 1);
        assert_int_equal(t->r[i].n_error, 0);
        assert_int_equal(t->r[i].n_after_finish, 0);
    }
    /* A: one token per step, so nothing after the token that cancelled it */
    assert_int_equal(t->r[ID_A].finish, ENGINE_FINISH_CANCELLED);
    assert_int_equal(t->r[ID_A].n_out, 3);
    assert_int_equal(t->r[ID_D].finish, ENGINE_FINISH_CANCELLED);
    assert_int_equal(t->r[ID_D].n_out, 0);
    assert_int_equal(t->r[ID_B].finish, ENGINE_FINISH_LENGTH);
    assert_memory_equal(t->r[ID_B].out, ref[ID_B].out, sizeof(int32_t) * MAXOUT);
    assert_int_equal(t->r[ID_C].finish, ENGINE_FINISH_LENGTH);
    assert_int_equal(t->r[ID_C].n_out, MAXOUT);
    assert_memory_equal(t->r[ID_C].out, ref[ID_C].out, sizeof(int32_t) * MAXOUT);
    /* A's first tokens are the greedy ones too */
    assert_memory_equal(t->r[ID_A].out, ref[ID_A].out, sizeof(int32_t) * 3);
    dispatch_status_t st;
    t->d.ops->status(t->d.self, &st);
    assert_int_equal(st.n_running + st.n_waiting, 0);
    assert_true(st.kv_usage == 0.0);

    dispatch_local_destroy(t->d);
    event_base_free(base);
    free(t);
}

/* ------------------------------------------- destroy from inside the sink */

typedef struct {
    dispatch_t d;
    int n_events;
} destroy_t;

static void sink_destroy(void *ctx, const engine_event_t *ev, int worker)
{
    (void)ev;
    (void)worker;
    destroy_t *t = ctx;
    t->n_events++;
    dispatch_local_destroy(t->d); /* the loop must stop delivering and free it after */
}

static void test_destroy_inside_sink(void **state)
{
    (void)state;
    destroy_t t = {0};
    struct event_base *base = event_base_new();
    assert_non_null(base);
    engine_config_t c = small_cfg();
    assert_int_equal(dispatch_local_create(base, &c, &t.d), RT_OK);
    t.d.ops->set_sink(t.d.self, (dispatch_sink_t){.on_event = sink_destroy, .ctx = &t});
    req_t r[2];
    for (int i = 0; i < 2; i++) {
        make_prompt(&r[i], 0); /* same short prompt: both emit a token in the first step */
        engine_request_t q = greedy(&r[i], (uint64_t)i, MAXOUT);
        dispatch_route_t worker;
        assert_int_equal(t.d.ops->submit(t.d.self, &q, &worker), RT_OK);
    }
    assert_int_equal(event_base_dispatch(base), 1); /* the step timer went with it */
    assert_int_equal(t.n_events, 1);
    event_base_free(base);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_requests(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    dispatch_t d = {0};
    engine_config_t c = small_cfg();
    c.model_path = "/nonexistent/model.gguf";
    assert_true(dispatch_local_create(base, &c, &d) != RT_OK);
    assert_null(d.self); /* untouched on failure */
    c = small_cfg();
    assert_int_equal(dispatch_local_create(base, &c, &d), RT_OK);
    req_t r;
    make_prompt(&r, 1);
    engine_request_t q = greedy(&r, 9, MAXOUT);
    dispatch_route_t worker = {.worker = -1};
    q.n_prompt = 0;
    rt_error_clear();
    assert_int_equal(d.ops->submit(d.self, &q, &worker), RT_ERR_INVALID);
    assert_true(strlen(rt_error_msg()) > 0);
    q.n_prompt = (size_t)r.n_prompt;
    r.prompt[0] = 1 << 29; /* out of the vocabulary */
    assert_int_equal(d.ops->submit(d.self, &q, &worker), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "out of range"));
    assert_int_equal(worker.worker, -1); /* output only on success */
    dispatch_status_t st;
    d.ops->status(d.self, &st);
    assert_int_equal(st.n_waiting, 0);
    assert_int_equal(event_base_dispatch(base), 1); /* nothing queued: nothing runs */
    d.ops->status(d.self, &st);
    assert_int_equal(st.steps_total, 0);
    dispatch_local_destroy(d);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outputs_equal_direct_run),
        cmocka_unit_test(test_cancel_and_reentrant_submit),
        cmocka_unit_test(test_destroy_inside_sink),
        cmocka_unit_test(test_bad_requests),
    };
    return cmocka_run_group_tests_name("dispatch_local", tests, setup, teardown);
}
