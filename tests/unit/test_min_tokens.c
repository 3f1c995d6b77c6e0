/* test_min_tokens.c - vLLM's min_tokens in the engine: stop tokens (and
 * end-of-generation ones) cannot end a request before min_tokens tokens;
 * the token chosen instead is the next best, with its raw logprob; after
 * min_tokens they stop it again; the sampler's suppression list alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/engine.h"

static char path[512];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(path, sizeof path, "mint", "--type f32 --tokenizer bpe --seed 51 --n-ctx 256");
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

typedef struct {
    int32_t out[32], top1[32];
    float lp[32], top1_lp[32];
    int n, finish;
} run_t;

static run_t run(int32_t stop, int min_tokens)
{
    engine_config_t c = engine_config_default();
    c.model_path = path;
    c.threads = 2;
    c.kv_blocks = 16;
    c.max_num_seqs = 2;
    c.kv_type = RT_TYPE_F32;
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    const int32_t prompt[6] = {11, 22, 33, 44, 55, 66};
    engine_request_t q = {.id = 1, .prompt = prompt, .n_prompt = 6, .sampling = sampler_params_default(),
                          .max_tokens = 24, .min_tokens = min_tokens, .ignore_eos = true, .logprobs = true,
                          .top_logprobs = 2, .stop_tokens = stop >= 0 ? &stop : NULL, .n_stop_tokens = stop >= 0};
    q.sampling.temperature = 0.0f;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
    run_t r = {0};
    engine_event_t ev[16];
    while (engine_has_work(e)) {
        size_t n = 0;
        assert_int_equal(engine_step(e, ev, 16, &n, NULL), RT_OK);
        for (size_t k = 0; k < n; k++) {
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                r.lp[r.n] = ev[k].logprob;
                r.top1[r.n] = ev[k].top_ids[1];
                r.top1_lp[r.n] = ev[k].top_logprobs[1];
                r.out[r.n++] = ev[k].token;
            } else if (ev[k].kind == ENGINE_EV_FINISH)
                r.finish = ev[k].finish;
        }
    }
    engine_destroy(e);
    return r;
}

static void test_min_tokens_holds_stop_tokens_back(void **state)
{
    (void)state;
    const run_t ref = run(-1, 0);
    assert_int_equal(ref.n, 24);
    /* the first token as a stop token: plain decoding ends at once */
    const int j = 0;
    const int32_t stop = ref.out[j];
    const run_t early = run(stop, 0);
    assert_int_equal(early.n, j + 1);
    assert_int_equal(early.finish, ENGINE_FINISH_STOP);
    const run_t held = run(stop, 8);
    assert_true(held.n >= 8);
    for (int i = 0; i < 8; i++) assert_true(held.out[i] != stop);
    /* where the stop token was the best, the next best is chosen, reported
     * with its raw logprob (the reference's second alternative) */
    assert_int_equal(held.out[j], ref.top1[j]);
    assert_memory_equal(&held.lp[j], &ref.top1_lp[j], sizeof(float));
    /* from the 8th token on the stop token ends it again */
    for (int i = 8; i < held.n - 1; i++) assert_true(held.out[i] != stop);
    if (held.finish == ENGINE_FINISH_STOP) assert_int_equal(held.out[held.n - 1], stop);
    /* more than max_tokens: refused */
    engine_config_t c = engine_config_default();
    c.model_path = path;
    c.kv_blocks = 16;
    c.max_num_seqs = 2;
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    const int32_t prompt[2] = {5, 6};
    engine_request_t q = {.id = 1, .prompt = prompt, .n_prompt = 2, .sampling = sampler_params_default(),
                          .max_tokens = 4, .min_tokens = 5};
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID);
    engine_destroy(e);
}

static void test_sampler_suppression(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    sampler_t *s = NULL;
    assert_int_equal(sampler_create(&p, 4, &s), RT_OK);
    const int32_t ids[2] = {1, 3};
    assert_int_equal(sampler_set_suppressed(s, ids, 2), RT_OK);
    float l[4] = {0.5f, 3.0f, 1.0f, 2.0f};
    float c[4];
    memcpy(c, l, sizeof l);
    assert_int_equal(sampler_sample(s, c, NULL), 1); /* not in force yet */
    sampler_suppress(s, true);
    memcpy(c, l, sizeof l);
    float lp = 0;
    assert_int_equal(sampler_sample(s, c, &lp), 2);
    const double lse = 3.0 + log(exp(0.5 - 3.0) + 1.0 + exp(1.0 - 3.0) + exp(2.0 - 3.0));
    assert_float_equal(lp, (float)(1.0 - lse), 1e-6f); /* over the raw logits */
    sampler_suppress(s, false);
    memcpy(c, l, sizeof l);
    assert_int_equal(sampler_sample(s, c, NULL), 1);
    const int32_t bad[1] = {4};
    assert_int_equal(sampler_set_suppressed(s, bad, 1), RT_ERR_INVALID);
    sampler_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_min_tokens_holds_stop_tokens_back),
        cmocka_unit_test(test_sampler_suppression),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
