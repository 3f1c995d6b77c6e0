/* test_engine.c - continuous batching, chunked prefill, prefix caching,
 * preemption and cancellation in the engine, on a small generated model
 * (written by ../bin/rotor-model beside this binary). Greedy outputs of
 * requests batched together must equal the same requests run one at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/engine.h"

#define NREQ 6
#define MAXOUT 12

static char model_path[512];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(model_path, sizeof model_path, "engine", "--type f32 --tokenizer bpe --seed 11 --n-ctx 512");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

typedef struct {
    int32_t prompt[80];
    int n_prompt;
    int32_t out[MAXOUT];
    int n_out;
    int finished, n_cached;
} req_t;

static void make_requests(req_t *r)
{
    unsigned x = 7;
    for (int i = 0; i < NREQ; i++) {
        r[i].n_prompt = 3 + 13 * i; /* 3 .. 68 tokens: several blocks, chunked prefills */
        for (int j = 0; j < r[i].n_prompt; j++) {
            x = x * 1103515245u + 12345u;
            r[i].prompt[j] = (int32_t)(10 + (x >> 8) % 400);
        }
        r[i].n_out = r[i].finished = r[i].n_cached = 0;
    }
}

static engine_config_t small_cfg(int max_seqs, int kv_blocks, int budget)
{
    engine_config_t c = engine_config_default();
    c.model_path = model_path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    c.kv_type = RT_TYPE_F32;
    return c;
}

static void add(engine_t *e, req_t *r, uint64_t id)
{
    engine_request_t q = {.id = id, .prompt = r->prompt, .n_prompt = (size_t)r->n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = MAXOUT, .ignore_eos = true};
    q.sampling.temperature = 0.0f;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
}

/* run until idle; requests in `late` join after `join_step` steps */
static void run(engine_t *e, req_t *r, int n_first, int join_step, engine_step_stats_t *last)
{
    engine_event_t ev[256];
    for (int i = 0; i < n_first; i++) add(e, &r[i], (uint64_t)i);
    for (int step = 0; engine_has_work(e) || step <= join_step; step++) {
        if (step == join_step)
            for (int i = n_first; i < NREQ; i++) add(e, &r[i], (uint64_t)i);
        size_t n = 0;
        assert_int_equal(engine_step(e, ev, 256, &n, last), RT_OK);
        for (size_t k = 0; k < n; k++) {
            req_t *q = &r[ev[k].request_id];
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                assert_true(q->n_out < MAXOUT);
                q->out[q->n_out++] = ev[k].token;
            } else if (ev[k].kind == ENGINE_EV_FINISH) {
                q->finished = ev[k].finish;
                q->n_cached = ev[k].n_cached;
            }
        }
        assert_true(step < 10000);
    }
}

static void test_batched_equals_one_at_a_time(void **state)
{
    (void)state;
    req_t alone[NREQ], batched[NREQ];
    make_requests(alone);
    make_requests(batched);
    engine_t *e = NULL;
    engine_step_stats_t st;
    /* one at a time */
    for (int i = 0; i < NREQ; i++) {
        engine_config_t c = small_cfg(1, 64, 512);
        assert_int_equal(engine_create(&c, &e), RT_OK);
        req_t one[NREQ];
        memcpy(one, alone, sizeof one);
        engine_event_t ev[64];
        add(e, &one[i], (uint64_t)i);
        while (engine_has_work(e)) {
            size_t n = 0;
            assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK);
            for (size_t k = 0; k < n; k++)
                if (ev[k].kind == ENGINE_EV_TOKEN) alone[i].out[alone[i].n_out++] = ev[k].token;
                else if (ev[k].kind == ENGINE_EV_FINISH) alone[i].finished = ev[k].finish;
        }
        engine_destroy(e);
        assert_int_equal(alone[i].n_out, MAXOUT);
        assert_int_equal(alone[i].finished, ENGINE_FINISH_LENGTH);
    }
    /* together, half joining mid-flight, small token budget: chunked prefill */
    engine_config_t c = small_cfg(4, 64, 32);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, batched, NREQ / 2, 3, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(batched[i].n_out, MAXOUT);
        assert_memory_equal(batched[i].out, alone[i].out, sizeof(int32_t) * MAXOUT);
    }
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
}

static void test_prefix_cache_hit(void **state)
{
    (void)state;
    req_t a[NREQ], b[NREQ];
    make_requests(a);
    make_requests(b);
    engine_config_t c = small_cfg(2, 64, 512);
    engine_t *e = NULL;
    engine_step_stats_t st;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, a, NREQ, 0, &st);
    /* the same prompts again: every full block but the last token's is cached */
    for (int i = 0; i < NREQ; i++) b[i].n_out = 0;
    run(e, b, NREQ, 0, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(b[i].n_cached, ((b[i].n_prompt - 1) / 16) * 16);
        assert_memory_equal(a[i].out, b[i].out, sizeof(int32_t) * MAXOUT);
    }
    bp_event_t evs[512];
    const size_t ne = engine_kv_events_drain(e, evs, 512);
    assert_true(ne > 0);
    for (size_t k = 1; k < ne; k++) assert_true(evs[k].id > evs[k - 1].id);
    engine_destroy(e);
}

static void test_small_pool_preempts_and_completes(void **state)
{
    (void)state;
    req_t r[NREQ], ref[NREQ];
    make_requests(r);
    make_requests(ref);
    engine_t *e = NULL;
    engine_step_stats_t st;
    engine_config_t big = small_cfg(4, 64, 64);
    assert_int_equal(engine_create(&big, &e), RT_OK);
    run(e, ref, NREQ, 0, &st);
    engine_destroy(e);
    /* 9 blocks of 16: the longest request alone needs 6 */
    engine_config_t c = small_cfg(4, 9, 64);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, r, NREQ, 0, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(r[i].n_out, MAXOUT);
        assert_int_equal(r[i].finished, ENGINE_FINISH_LENGTH);
        assert_memory_equal(r[i].out, ref[i].out, sizeof(int32_t) * MAXOUT); /* recompute, same tokens */
    }
    assert_true(st.n_preempted_total > 0);
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
}

static void test_random_cancels_return_every_block(void **state)
{
    (void)state;
    unsigned x = 99;
    for (int round = 0; round < 4; round++) {
        req_t r[NREQ];
        make_requests(r);
        engine_config_t c = small_cfg(3, 8 + 4 * round, 24 + 8 * round);
        engine_t *e = NULL;
        engine_step_stats_t st;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        for (int i = 0; i < NREQ; i++) add(e, &r[i], (uint64_t)i);
        engine_event_t ev[64];
        int live = NREQ;
        for (int step = 0; engine_has_work(e) && step < 2000; step++) {
            x = x * 1103515245u + 12345u;
            if ((x >> 16) % 5 == 0) (void)engine_cancel(e, (x >> 8) % NREQ);
            size_t n = 0;
            assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK);
            for (size_t k = 0; k < n; k++)
                if (ev[k].kind == ENGINE_EV_FINISH) live--;
        }
        assert_false(engine_has_work(e));
        assert_int_equal(live, 0);
        assert_int_equal(st.blocks_used, 0);
        assert_int_equal(engine_cancel(e, 0), RT_ERR_NOT_FOUND);
        engine_destroy(e);
    }
}

static void test_bad_requests(void **state)
{
    (void)state;
    engine_config_t c = small_cfg(2, 16, 64);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    int32_t p[2] = {1, 1 << 29};
    engine_request_t q = {.id = 1, .prompt = p, .n_prompt = 2, .sampling = sampler_params_default(), .max_tokens = 4};
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* token out of range */
    q.n_prompt = 0;
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* empty */
    q.n_prompt = 1;
    q.max_tokens = 0;
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID);
    q.max_tokens = 4;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* duplicate live id */
    engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_one_at_a_time),
        cmocka_unit_test(test_prefix_cache_hit),
        cmocka_unit_test(test_small_pool_preempts_and_completes),
        cmocka_unit_test(test_random_cancels_return_every_block),
        cmocka_unit_test(test_bad_requests),
    };
    return cmocka_run_group_tests_name("engine", tests, setup, teardown);
}
