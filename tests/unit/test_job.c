/* test_job.c - the job's pieces that need no MPI: rank lists, role maps
 * (every refusal names its key), control-plane message packing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rotor/ctrl.h"
#include "rotor/job.h"

static void test_rank_lists(void **state)
{
    (void)state;
    bool in[8];
    assert_int_equal(job_rank_list_parse("0", 8, in), RT_OK);
    assert_true(in[0] && !in[1]);
    assert_int_equal(job_rank_list_parse("1-3, 6", 8, in), RT_OK);
    bool want[8] = {false, true, true, true, false, false, true, false};
    assert_memory_equal(in, want, sizeof in);
    assert_int_equal(job_rank_list_parse("2-", 4, in), RT_OK);
    assert_true(!in[1] && in[2] && in[3]);
    assert_int_equal(job_rank_list_parse("1-", 1, in), RT_OK); /* one-rank job: no workers */
    assert_false(in[0]);
    assert_int_equal(job_rank_list_parse("", 4, in), RT_OK);
    for (int i = 0; i < 4; i++) assert_false(in[i]);
    assert_int_equal(job_rank_list_parse("3-1", 4, in), RT_ERR_INVALID);
    assert_int_equal(job_rank_list_parse("a", 4, in), RT_ERR_INVALID);
    assert_int_equal(job_rank_list_parse("1;2", 4, in), RT_ERR_INVALID);
    assert_int_equal(job_rank_list_parse("-1", 4, in), RT_ERR_INVALID);
    assert_int_equal(job_rank_list_parse("5", 4, in), RT_ERR_RANGE);
    assert_non_null(strstr(rt_error_msg(), "rank 5"));
}

static cfg_t *cfg_with(const char *router, const char *worker, const char *prefill, const char *decode,
                       const char *planner)
{
    cfg_t *c = NULL;
    assert_int_equal(cfg_load(NULL, &c), RT_OK);
    assert_int_equal(cfg_set(c, "roles:router", router), RT_OK);
    assert_int_equal(cfg_set(c, "roles:worker", worker), RT_OK);
    assert_int_equal(cfg_set(c, "roles:prefill", prefill), RT_OK);
    assert_int_equal(cfg_set(c, "roles:decode", decode), RT_OK);
    assert_int_equal(cfg_set(c, "roles:planner", planner), RT_OK);
    return c;
}

static void expect_refusal(const char *router, const char *worker, const char *prefill, const char *decode,
                           const char *planner, int n, const char *key)
{
    cfg_t *c = cfg_with(router, worker, prefill, decode, planner);
    job_role_t roles[16];
    assert_int_not_equal(job_roles_parse(c, n, roles), RT_OK);
    if (!strstr(rt_error_msg(), key)) fail_msg("message '%s' does not name %s", rt_error_msg(), key);
    cfg_destroy(c);
}

static void test_role_maps(void **state)
{
    (void)state;
    job_role_t roles[16];
    cfg_t *c = cfg_with("0", "1-", "", "", "");
    assert_int_equal(job_roles_parse(c, 3, roles), RT_OK);
    assert_int_equal(roles[0], JOB_ROLE_ROUTER);
    assert_int_equal(roles[1], JOB_ROLE_WORKER);
    assert_int_equal(roles[2], JOB_ROLE_WORKER);
    assert_int_equal(job_roles_parse(c, 1, roles), RT_OK); /* one rank: router only */
    cfg_destroy(c);
    c = cfg_with("0", "", "1-2", "3-4", "5");
    assert_int_equal(job_roles_parse(c, 6, roles), RT_OK);
    assert_int_equal(roles[2], JOB_ROLE_PREFILL);
    assert_int_equal(roles[4], JOB_ROLE_DECODE);
    assert_int_equal(roles[5], JOB_ROLE_PLANNER);
    assert_string_equal(job_role_name(roles[5]), "planner");
    cfg_destroy(c);
    /* the worker key's default, 1-, takes the ranks the other roles leave */
    c = cfg_with("0", "1-", "1", "2", "");
    assert_int_equal(job_roles_parse(c, 4, roles), RT_OK);
    assert_int_equal(roles[1], JOB_ROLE_PREFILL);
    assert_int_equal(roles[2], JOB_ROLE_DECODE);
    assert_int_equal(roles[3], JOB_ROLE_WORKER);
    cfg_destroy(c);

    expect_refusal("0", "1-2", "", "", "", 4, "rank 3");           /* a rank without a role */
    expect_refusal("0", "1-3", "", "", "", 3, "roles:worker");     /* past the job's size */
    expect_refusal("0", "0-2", "", "", "", 3, "roles:worker");     /* overlap with the router */
    expect_refusal("0", "1-2", "2", "3", "", 4, "roles:worker");   /* overlap */
    expect_refusal("0", "", "1-2", "2", "", 3, "roles:decode");    /* overlap */
    expect_refusal("1", "0,2", "", "", "", 3, "roles:router");     /* router must be rank 0 */
    expect_refusal("0-1", "2", "", "", "", 3, "roles:router");     /* one router */
    expect_refusal("0", "1", "", "", "2-3", 4, "roles:planner");   /* one planner */
    expect_refusal("0", "1", "2", "", "", 3, "roles:decode");      /* prefill without decode */
    expect_refusal("0", "x", "", "", "", 3, "roles:worker");       /* syntax */
}

static void test_request_pack(void **state)
{
    (void)state;
    int32_t prompt[5] = {1, 2, 3, 4, 5}, stops[2] = {7, 9}, bias_ids[3] = {11, 12, 13};
    float bias[3] = {-100.0f, 0.5f, 100.0f};
    engine_request_t r = {.id = 0x1234567890ull, .prompt = prompt, .n_prompt = 5, .max_tokens = 17, .min_tokens = 7,
                          .prompt_logprobs = true,
                          .ignore_eos = true, .stop_tokens = stops, .n_stop_tokens = 2, .top_logprobs = 3,
                          .logprobs = true, .logit_bias_ids = bias_ids, .logit_bias = bias, .n_logit_bias = 3};
    r.sampling = sampler_params_default();
    r.sampling.seed = 99;
    r.sampling.temperature = 0.5f;
    void *buf;
    size_t len;
    assert_int_equal(ctrl_request_pack(&r, 42, &buf, &len), RT_OK);
    engine_request_t u;
    int32_t peer = 0;
    assert_int_equal(ctrl_request_unpack(buf, len, &u, &peer), RT_OK);
    assert_int_equal(peer, 42);
    assert_true(u.id == r.id);
    assert_int_equal(u.n_prompt, 5);
    assert_memory_equal(u.prompt, prompt, sizeof prompt);
    assert_int_equal(u.n_stop_tokens, 2);
    assert_memory_equal(u.stop_tokens, stops, sizeof stops);
    assert_int_equal(u.n_logit_bias, 3);
    assert_memory_equal(u.logit_bias_ids, bias_ids, sizeof bias_ids);
    assert_memory_equal(u.logit_bias, bias, sizeof bias);
    assert_int_equal(u.max_tokens, 17);
    assert_int_equal(u.min_tokens, 7);
    assert_true(u.prompt_logprobs);
    assert_true(u.ignore_eos);
    assert_int_equal(u.top_logprobs, 3);
    assert_true(u.logprobs);
    assert_true(u.sampling.seed == 99 && u.sampling.temperature == 0.5f);
    /* truncated or padded messages are refused */
    assert_int_equal(ctrl_request_unpack(buf, len - 4, &u, NULL), RT_ERR_FORMAT);
    assert_int_equal(ctrl_request_unpack(buf, 8, &u, NULL), RT_ERR_FORMAT);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_lists),
        cmocka_unit_test(test_role_maps),
        cmocka_unit_test(test_request_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
