/* test_spec.c - speculative decoding by n-gram lookup: the proposer's
 * matches, and the engine's outputs with drafts equal to its outputs
 * without them, token for token and logprob for logprob (greedy and seeded
 * sampling with penalties, batched and alone, a pool small enough to
 * preempt, max_tokens and stop tokens landing inside a draft), with drafts
 * actually accepted and every block back in the pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/engine.h"
#include "rotor/spec_ngram.h"

#define NREQ 6
#define MAXOUT 48

/* f32 and q4_1 (the packed int8 GEMM, as SmolLM2 runs) */
static char f32_path[512], q_path[512];

static int setup(void **state)
{
    (void)state;
    if (test_gen_model(f32_path, sizeof f32_path, "spec", "--type f32 --tokenizer bpe --seed 21 --n-ctx 512"))
        return -1;
    return test_gen_model(q_path, sizeof q_path, "spec-q",
                          "--type q4_1 --embd-type q8_0 --tokenizer bpe --seed 22 --n-ctx 512 --n-embd 128 "
                          "--n-head 2 --n-head-kv 1 --n-ff 256 --n-layer 2");
}

static int teardown(void **state)
{
    (void)state;
    unlink(f32_path);
    unlink(q_path);
    return 0;
}

/* ---------------------------------------------------------- the proposer */

static void test_ngram_propose(void **state)
{
    (void)state;
    int32_t d[8];
    /* the longest suffix wins: "3 4" occurs twice; "2 3 4" once, followed by 9 */
    const int32_t a[] = {1, 2, 3, 4, 9, 8, 7, 3, 4, 5, 6, 2, 3, 4};
    assert_int_equal(spec_ngram_propose(a, 14, 1, 3, d, 3), 3);
    assert_int_equal(d[0], 9);
    assert_int_equal(d[1], 8);
    assert_int_equal(d[2], 7);
    /* only n = 2: the most recent earlier "3 4" is followed by 5 6 */
    assert_int_equal(spec_ngram_propose(a, 14, 2, 2, d, 2), 2);
    assert_int_equal(d[0], 5);
    assert_int_equal(d[1], 6);
    /* nothing matches */
    const int32_t b[] = {1, 2, 3, 4, 5};
    assert_int_equal(spec_ngram_propose(b, 5, 1, 3, d, 4), 0);
    /* a loop: the period repeats past the end */
    const int32_t c[] = {5, 1, 2, 3, 1, 2, 3};
    assert_int_equal(spec_ngram_propose(c, 7, 2, 2, d, 7), 7);
    const int32_t want[] = {1, 2, 3, 1, 2, 3, 1};
    assert_memory_equal(d, want, sizeof want);
    /* a run of one token, the match overlapping the suffix */
    const int32_t r[] = {4, 7, 7, 7};
    assert_int_equal(spec_ngram_propose(r, 4, 2, 2, d, 3), 3);
    assert_true(d[0] == 7 && d[1] == 7 && d[2] == 7);
    /* n_max longer than the sequence; nothing asked; bad lengths */
    assert_int_equal(spec_ngram_propose(r, 4, 1, 50, d, 2), 2);
    assert_int_equal(spec_ngram_propose(r, 4, 1, 3, d, 0), 0);
    assert_int_equal(spec_ngram_propose(r, 4, 0, 3, d, 2), 0);
    assert_int_equal(spec_ngram_propose(r, 1, 1, 3, d, 2), 0);
}

/* ------------------------------------------------------------ the engine */

typedef struct {
    int32_t prompt[64];
    int n_prompt, max_tokens;
    float temperature;
    int32_t stop; /* -1: none */
    int32_t out[MAXOUT];
    float logprob[MAXOUT];
    int n_out, finished;
    bool ended_in_batch; /* its FINISH came in a step that gave it 2+ tokens */
} req_t;

/* prompts that repeat themselves (what the n-gram lookup feeds on), a few
 * sampled at temperature 0.9 with penalties, one short max_tokens */
static void make_requests(req_t *r)
{
    unsigned x = 3;
    for (int i = 0; i < NREQ; i++) {
        memset(&r[i], 0, sizeof r[i]);
        const int period = 3 + i;
        r[i].n_prompt = 20 + 7 * i;
        for (int j = 0; j < r[i].n_prompt; j++) {
            if (j < period) {
                x = x * 1103515245u + 12345u;
                r[i].prompt[j] = (int32_t)(10 + (x >> 8) % 300);
            } else
                r[i].prompt[j] = r[i].prompt[j - period];
        }
        r[i].max_tokens = i == 5 ? 5 : MAXOUT;
        r[i].temperature = i % 3 == 2 ? 0.9f : 0.0f;
        r[i].stop = -1;
    }
}

static engine_config_t cfg_for(const char *path, int max_seqs, int kv_blocks, int spec_tokens)
{
    engine_config_t c = engine_config_default();
    c.model_path = path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = 64;
    c.kv_type = RT_TYPE_F16;
    c.spec.tokens = spec_tokens;
    c.spec.ngram_min = 1;
    c.spec.ngram_max = 3;
    c.spec.max_running = 64;
    return c;
}

static void add(engine_t *e, const req_t *r, uint64_t id)
{
    engine_request_t q = {.id = id, .prompt = r->prompt, .n_prompt = (size_t)r->n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = r->max_tokens, .ignore_eos = true,
                          .logprobs = true, .stop_tokens = r->stop >= 0 ? &r->stop : NULL,
                          .n_stop_tokens = r->stop >= 0 ? 1 : 0};
    q.sampling.temperature = r->temperature;
    q.sampling.top_k = 40;
    q.sampling.seed = 1000 + id;
    q.sampling.frequency_penalty = 0.3f;
    q.sampling.penalty_last_n = -1;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
}

/* run r[lo, hi) through e together until idle; the last step's stats */
static void run(engine_t *e, req_t *r, int lo, int hi, engine_step_stats_t *st)
{
    const size_t cap = engine_events_min(e) + 64;
    engine_event_t *ev = calloc(cap, sizeof *ev);
    assert_non_null(ev);
    for (int i = lo; i < hi; i++) add(e, &r[i], (uint64_t)i);
    for (int step = 0; engine_has_work(e); step++) {
        size_t n = 0;
        int got[NREQ] = {0};
        assert_int_equal(engine_step(e, ev, cap, &n, st), RT_OK);
        for (size_t k = 0; k < n; k++) {
            req_t *q = &r[ev[k].request_id];
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                got[ev[k].request_id]++;
                assert_int_equal(q->finished, 0); /* nothing after FINISH */
                assert_true(q->n_out < MAXOUT);
                q->logprob[q->n_out] = ev[k].logprob;
                q->out[q->n_out++] = ev[k].token;
            } else if (ev[k].kind == ENGINE_EV_FINISH) {
                assert_int_equal(ev[k].n_generated, q->n_out);
                q->finished = ev[k].finish;
                q->ended_in_batch = got[ev[k].request_id] > 1;
            } else
                fail_msg("error event");
        }
        assert_true(step < 20000);
    }
    free(ev);
}

static void assert_same(const req_t *a, const req_t *b)
{
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(a[i].n_out, b[i].n_out);
        assert_int_equal(a[i].finished, b[i].finished);
        assert_memory_equal(a[i].out, b[i].out, (size_t)a[i].n_out * sizeof *a[i].out);
        assert_memory_equal(a[i].logprob, b[i].logprob, (size_t)a[i].n_out * sizeof *a[i].logprob);
    }
}

/* the reference: one request at a time, no speculation */
static void reference(const char *path, req_t *r)
{
    for (int i = 0; i < NREQ; i++) {
        engine_config_t c = cfg_for(path, 1, 64, 0);
        engine_t *e = NULL;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        run(e, r, i, i + 1, NULL);
        engine_destroy(e);
        assert_int_equal(r[i].n_out, r[i].max_tokens);
        assert_int_equal(r[i].finished, ENGINE_FINISH_LENGTH);
    }
}

static void same_with_drafts(const char *path)
{
    req_t ref[NREQ], alone[NREQ], batched[NREQ], small[NREQ];
    make_requests(ref);
    reference(path, ref);
    engine_step_stats_t st;

    /* alone, with drafts: the same tokens, and drafts accepted */
    make_requests(alone);
    int64_t accepted = 0, drafted = 0;
    for (int i = 0; i < NREQ; i++) {
        engine_config_t c = cfg_for(path, 1, 64, 4);
        engine_t *e = NULL;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        run(e, alone, i, i + 1, &st);
        drafted += st.spec_draft_tokens_total;
        accepted += st.spec_accepted_tokens_total;
        assert_int_equal(st.blocks_used, 0);
        engine_destroy(e);
    }
    assert_same(ref, alone);
    assert_true(drafted > 0);
    assert_true(accepted > 0);
    assert_true(accepted <= drafted);

    /* batched, with drafts */
    make_requests(batched);
    engine_config_t c = cfg_for(path, NREQ, 64, 4);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, batched, 0, NREQ, &st);
    assert_true(st.spec_accepted_tokens_total > 0);
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
    assert_same(ref, batched);

    /* a pool of 12 blocks for 6 sequences of up to 6 blocks: preemption,
     * and drafts that find no free block (they never preempt) */
    make_requests(small);
    c = cfg_for(path, NREQ, 12, 6);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, small, 0, NREQ, &st);
    assert_true(st.n_preempted_total > 0);
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
    assert_same(ref, small);
}

static void test_same_tokens_f32(void **state)
{
    (void)state;
    same_with_drafts(f32_path);
}

static void test_same_tokens_q4_1(void **state)
{
    (void)state;
    same_with_drafts(q_path);
}

/* a stop token and max_tokens that fall inside an accepted draft: the
 * output ends exactly where plain decoding ends it. Every token of the
 * greedy reference's output in turn is the stop token: the output must be
 * the reference's up to its first occurrence, finished STOP; some of them
 * must end in a step that gave 2+ tokens (inside the drafts). */
static void test_stop_inside_draft(void **state)
{
    (void)state;
    req_t ref[NREQ], spec[NREQ];
    make_requests(ref);
    reference(f32_path, ref);
    int r = 0;
    while (ref[r].temperature > 0) r++;
    engine_config_t c = cfg_for(f32_path, NREQ, 64, 8);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    engine_step_stats_t st;
    int in_batch = 0;
    for (int j = 0; j < ref[r].n_out; j++) {
        int first = 0;
        while (ref[r].out[first] != ref[r].out[j]) first++;
        if (first != j) continue; /* each distinct token once */
        make_requests(spec);
        spec[r].stop = ref[r].out[j];
        run(e, spec, r, r + 1, &st);
        assert_int_equal(spec[r].n_out, j + 1);
        assert_memory_equal(spec[r].out, ref[r].out, (size_t)(j + 1) * sizeof *ref[r].out);
        assert_int_equal(spec[r].finished, ENGINE_FINISH_STOP);
        in_batch += spec[r].ended_in_batch;
    }
    assert_true(in_batch > 0);
    assert_true(st.spec_accepted_tokens_total > 0);
    /* max_tokens 5 with 8 drafts allowed: never more than 5 */
    make_requests(spec);
    run(e, spec, 5, 6, &st);
    assert_int_equal(spec[5].n_out, 5);
    assert_memory_equal(spec[5].out, ref[5].out, 5 * sizeof *ref[5].out);
    assert_int_equal(spec[5].finished, ENGINE_FINISH_LENGTH);
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
}

/* Churn: drafting sequences, prompt-logprob requests and plain ones with
 * random cancellations in pools from too small to enough: each request
 * ends exactly once, no prompt position is scored twice, no token follows a
 * FINISH, and every block is back in the pool (refcounts at zero). */
static void test_churn_with_drafts_and_prompt_logprobs(void **state)
{
    (void)state;
    unsigned x = 12345;
    for (int round = 0; round < 6; round++) {
        req_t r[NREQ];
        make_requests(r);
        engine_config_t c = cfg_for(q_path, 3 + round % 3, 8 + 6 * round, 3 + round);
        c.max_num_batched_tokens = 16 + 16 * (round % 3);
        c.spec.max_running = 2 + round % 3;
        engine_t *e = NULL;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        const size_t cap = engine_events_min(e) + 8 * (size_t)round; /* round 0: no room for prompt logprobs */
        engine_event_t *ev = calloc(cap, sizeof *ev);
        assert_non_null(ev);
        int ends[NREQ] = {0}, last_pos[NREQ] = {0};
        for (int i = 0; i < NREQ; i++) {
            engine_request_t q = {.id = (uint64_t)i, .prompt = r[i].prompt, .n_prompt = (size_t)r[i].n_prompt,
                                  .sampling = sampler_params_default(), .max_tokens = r[i].max_tokens,
                                  .ignore_eos = true, .logprobs = i % 2 == 0, .top_logprobs = i % 3,
                                  .prompt_logprobs = i % 2 == 1};
            q.sampling.temperature = r[i].temperature;
            q.sampling.seed = (uint64_t)i;
            assert_int_equal(engine_add_request(e, &q), RT_OK);
        }
        engine_step_stats_t st;
        for (int step = 0; engine_has_work(e); step++) {
            x = x * 1103515245u + 12345u;
            if ((x >> 16) % 9 == 0) (void)engine_cancel(e, (x >> 8) % NREQ);
            size_t n = 0;
            assert_int_equal(engine_step(e, ev, cap, &n, &st), RT_OK);
            for (size_t k = 0; k < n; k++) {
                const int id = (int)ev[k].request_id;
                assert_int_equal(ends[id], 0);
                if (ev[k].kind == ENGINE_EV_FINISH) ends[id]++;
                if (ev[k].kind == ENGINE_EV_PROMPT_LOGPROB) {
                    assert_int_equal(ev[k].position, last_pos[id] + 1);
                    last_pos[id] = ev[k].position;
                }
                assert_true(ev[k].kind != ENGINE_EV_ERROR);
            }
            assert_true(step < 20000);
        }
        for (int i = 0; i < NREQ; i++) assert_int_equal(ends[i], 1);
        assert_int_equal(st.blocks_used, 0);
        free(ev);
        engine_destroy(e);
    }
}

/* drafts only while at most spec.max_running sequences run; an event
 * buffer under engine_events_min is refused */
static void test_max_running_and_events_min(void **state)
{
    (void)state;
    req_t r[NREQ];
    make_requests(r);
    for (int i = 0; i < NREQ; i++) r[i].max_tokens = 8 + 8 * i; /* the last ones run on alone */
    engine_config_t c = cfg_for(f32_path, NREQ, 64, 4);
    c.spec.max_running = 2;
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    assert_int_equal(engine_events_min(e), (size_t)NREQ * 6);
    engine_event_t ev[8];
    size_t n = 0;
    assert_int_equal(engine_step(e, ev, 8, &n, NULL), RT_ERR_INVALID);
    const size_t cap = engine_events_min(e);
    engine_event_t *big = calloc(cap, sizeof *big);
    assert_non_null(big);
    for (int i = 0; i < NREQ; i++) add(e, &r[i], (uint64_t)i);
    engine_step_stats_t st, before;
    int64_t drafted_few = 0;
    while (engine_has_work(e)) {
        engine_stats(e, &before);
        assert_int_equal(engine_step(e, big, cap, &n, &st), RT_OK);
        if (before.n_running > 2) assert_int_equal(st.n_spec_draft_tokens, 0);
        else drafted_few += st.n_spec_draft_tokens;
    }
    assert_true(drafted_few > 0); /* the last two ran alone and drafted */
    free(big);
    engine_destroy(e);
    /* bad configurations */
    c.spec.tokens = ENGINE_MAX_SPEC_TOKENS + 1;
    assert_int_equal(engine_create(&c, &e), RT_ERR_INVALID);
    c.spec.tokens = 2;
    c.spec.ngram_min = 3;
    c.spec.ngram_max = 2;
    assert_int_equal(engine_create(&c, &e), RT_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ngram_propose),
        cmocka_unit_test(test_same_tokens_f32),
        cmocka_unit_test(test_same_tokens_q4_1),
        cmocka_unit_test(test_stop_inside_draft),
        cmocka_unit_test(test_max_running_and_events_min),
        cmocka_unit_test(test_churn_with_drafts_and_prompt_logprobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
