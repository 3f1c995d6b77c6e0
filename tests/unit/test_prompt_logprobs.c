/* test_prompt_logprobs.c - the engine's prompt logprobs (OpenAI's echo
 * with logprobs): a PROMPT_LOGPROB per prompt token after the first, in
 * order, before the first TOKEN; each equal to the logprob the engine
 * reported when it generated that token (the logits are batch-invariant),
 * whatever the chunking (prompts longer than the rows a step keeps for
 * them), the company in the step, a prefix cache that holds the prompt, or
 * preemption; top alternatives against the sampler's. */
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

#define NREQ 4
#define GEN 120 /* generated, then scored: more than ENGINE_PROMPT_LOGPROB_ROWS */

static char q_path[512];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(q_path, sizeof q_path, "plp",
                          "--type q4_1 --embd-type q8_0 --tokenizer bpe --seed 31 --n-ctx 512 --n-embd 128 "
                          "--n-head 2 --n-head-kv 1 --n-ff 256 --n-layer 2");
}

static int teardown(void **state)
{
    (void)state;
    unlink(q_path);
    return 0;
}

typedef struct {
    int32_t tokens[8 + GEN];   /* prompt, then what was generated */
    float gen_lp[8 + GEN];     /* the generated tokens' logprobs, by position */
    int32_t gen_top[8 + GEN];  /* their best alternative */
    int n_prompt, n;
    /* scored */
    float lp[8 + GEN];
    int32_t top[8 + GEN];
    bool seen[8 + GEN];
    int n_lp, n_tok, last_pos;
    bool token_before_lp;
} req_t;

static engine_config_t cfg_for(int max_seqs, int kv_blocks, int budget)
{
    engine_config_t c = engine_config_default();
    c.model_path = q_path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    c.kv_type = RT_TYPE_F16;
    return c;
}

static void drain(engine_t *e, req_t *r)
{
    const size_t cap = engine_events_min(e) + 64;
    engine_event_t *ev = calloc(cap, sizeof *ev);
    assert_non_null(ev);
    for (int step = 0; engine_has_work(e); step++) {
        size_t n = 0;
        assert_int_equal(engine_step(e, ev, cap, &n, NULL), RT_OK);
        for (size_t k = 0; k < n; k++) {
            req_t *q = &r[ev[k].request_id];
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                if (q->n < (int)(sizeof q->tokens / sizeof *q->tokens)) {
                    q->gen_lp[q->n] = ev[k].logprob;
                    q->gen_top[q->n] = ev[k].top_ids[0];
                    q->tokens[q->n++] = ev[k].token;
                }
                q->n_tok++;
            } else if (ev[k].kind == ENGINE_EV_PROMPT_LOGPROB) {
                const int p = ev[k].position;
                assert_int_equal(p, q->last_pos + 1); /* in order, each once */
                q->last_pos = p;
                assert_int_equal(ev[k].token, q->tokens[p]);
                q->token_before_lp |= q->n_tok > 0;
                q->lp[p] = ev[k].logprob;
                q->top[p] = ev[k].top_ids[0];
                q->seen[p] = true;
                q->n_lp++;
            } else
                assert_int_equal(ev[k].kind, ENGINE_EV_FINISH);
        }
        assert_true(step < 5000);
    }
    free(ev);
}

static void add(engine_t *e, req_t *r, uint64_t id, int n_prompt, int max_tokens, bool prompt_lp)
{
    engine_request_t q = {.id = id, .prompt = r->tokens, .n_prompt = (size_t)n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = max_tokens, .ignore_eos = true,
                          .logprobs = true, .top_logprobs = 1, .prompt_logprobs = prompt_lp};
    q.sampling.temperature = 0.0f;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
}

/* generate GEN tokens after an 8-token prompt, alone */
static void generate(req_t *r)
{
    for (int i = 0; i < NREQ; i++) {
        memset(&r[i], 0, sizeof r[i]);
        for (int j = 0; j < 8; j++) r[i].tokens[j] = 20 + 31 * i + 7 * j;
        r[i].n_prompt = r[i].n = 8;
        engine_config_t c = cfg_for(1, 64, 64);
        engine_t *e = NULL;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        add(e, &r[i], (uint64_t)i, 8, GEN, false);
        drain(e, r);
        engine_destroy(e);
        assert_int_equal(r[i].n, 8 + GEN);
    }
}

/* score every request's whole sequence as a prompt (one more token), all
 * at once in e; each generated token's prompt logprob must be the logprob
 * it was generated with */
static void score_and_check(engine_t *e, req_t *r, int max_tokens)
{
    for (int i = 0; i < NREQ; i++) {
        r[i].n = r[i].n_prompt = 8 + GEN;
        r[i].n_lp = r[i].n_tok = r[i].last_pos = 0;
        r[i].token_before_lp = false;
        memset(r[i].seen, 0, sizeof r[i].seen);
    }
    for (int i = 0; i < NREQ; i++) add(e, &r[i], (uint64_t)i, 8 + GEN, max_tokens, true);
    drain(e, r);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(r[i].n_lp, 8 + GEN - 1); /* every prompt token but the first */
        assert_false(r[i].token_before_lp);
        assert_int_equal(r[i].n_tok, max_tokens);
        for (int p = 8; p < 8 + GEN; p++) {
            assert_true(r[i].seen[p]);
            assert_memory_equal(&r[i].lp[p], &r[i].gen_lp[p], sizeof(float)); /* to the bit */
            assert_int_equal(r[i].top[p], r[i].gen_top[p]);
        }
        for (int p = 1; p < 8 + GEN; p++) assert_true(r[i].lp[p] <= 0.0f);
    }
}

static void test_prompt_logprobs_equal_generation_logprobs(void **state)
{
    (void)state;
    req_t r[NREQ];
    generate(r);
    /* together, a 48-token budget: chunked, rows shared between requests */
    engine_config_t c = cfg_for(NREQ, 96, 48);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    score_and_check(e, r, 1);
    /* again in the same engine: the prompts are in the prefix cache now,
     * which a prompt-logprob request must not skip */
    engine_step_stats_t before, after;
    engine_stats(e, &before);
    score_and_check(e, r, 1);
    engine_stats(e, &after);
    assert_true(after.blocks_cached > 0);
    assert_int_equal(after.prefix_hit_tokens_total, before.prefix_hit_tokens_total);
    engine_destroy(e);
    /* a pool of 12 blocks for four 8-block prompts that then decode 40
     * tokens: a decode preempts a request mid-prompt; no prompt logprob is
     * given twice or skipped */
    c = cfg_for(NREQ, 12, 48);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    score_and_check(e, r, 40);
    engine_stats(e, &after);
    assert_true(after.n_preempted_total > 0);
    assert_int_equal(after.blocks_used, 0);
    engine_destroy(e);
}

/* without prompt_logprobs, none; a one-token prompt has none to give */
static void test_no_prompt_logprobs_unless_asked(void **state)
{
    (void)state;
    req_t r[NREQ];
    memset(r, 0, sizeof r);
    for (int j = 0; j < 8; j++) r[0].tokens[j] = 40 + j;
    r[0].n = r[0].n_prompt = 8;
    r[1].tokens[0] = 50;
    r[1].n = r[1].n_prompt = 1;
    engine_config_t c = cfg_for(2, 32, 64);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    add(e, &r[0], 0, 8, 2, false);
    add(e, &r[1], 1, 1, 2, true);
    drain(e, r);
    assert_int_equal(r[0].n_lp, 0);
    assert_int_equal(r[1].n_lp, 0);
    assert_int_equal(r[0].n_tok, 2);
    assert_int_equal(r[1].n_tok, 2);
    engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_logprobs_equal_generation_logprobs),
        cmocka_unit_test(test_no_prompt_logprobs_unless_asked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
