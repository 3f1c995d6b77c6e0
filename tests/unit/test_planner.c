/*
 * test_planner.c - the SLO planner's rule (include/rotor/planner.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "rotor/planner.h"

static const planner_config_t CFG = {.ttft_slo_s = 1.0, .itl_slo_s = 0.05, .headroom = 0.8, .kv_high = 0.9,
                                     .cooldown_s = 10,
                                     .min_samples = 4, .min_prefill = 1, .min_decode = 1};

static planner_obs_t obs(double t, int n_prefill, int n_decode, double ttft, double itl)
{
    return (planner_obs_t){.t = t, .n_prefill = n_prefill, .n_decode = n_decode, .n_ttft = 10,
                           .ttft_mean_s = ttft, .n_itl = 100, .itl_mean_s = itl, .prefill_queue = 3};
}

static void test_prompts_wait_decode_gives_a_rank(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &CFG);
    char why[192];
    planner_obs_t o = obs(100, 1, 3, 2.5, 0.02);
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_TO_PREFILL);
    assert_non_null(strstr(why, "TTFT 2.50x"));
    /* the same the next interval: cooling down */
    o.t = 105;
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "cooling down"));
    /* after the cooldown, again; then the last decode rank stays */
    o = obs(111, 2, 2, 2.0, 0.02);
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_PREFILL);
    o = obs(200, 3, 1, 2.0, 0.02);
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_int_equal(p.moves, 2);
}

static void test_tokens_slow_prefill_gives_a_rank(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &CFG);
    planner_obs_t o = obs(1, 2, 1, 0.5, 0.08);
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_DECODE);
    o = obs(20, 1, 2, 0.5, 0.08); /* one prefill rank left: it stays */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
}

/* decode ranks short of KV memory: none leaves, and a prefill rank joins
 * when prompts are quick */
static void test_decode_kv_pressure(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &CFG);
    char why[192];
    planner_obs_t o = obs(1, 2, 2, 2.0, 0.01); /* prompts wait, tokens quick ... */
    o.decode_kv_usage = 0.95;                  /* ... but decode is about to preempt */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "more ranks"));
    o = obs(2, 2, 2, 0.2, 0.01);
    o.decode_kv_usage = 0.95;
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_TO_DECODE);
    assert_non_null(strstr(why, "decode KV 95%"));
    planner_t q; /* the same with KV use ignored: nothing to do */
    planner_config_t c = CFG;
    c.kv_high = 0;
    planner_init(&q, &c);
    assert_int_equal(planner_decide(&q, &o, NULL, 0), PLANNER_HOLD);
}

static void test_holds(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &CFG);
    char why[192];
    planner_obs_t o = obs(1, 2, 2, 3.0, 0.2); /* both over: more ranks needed */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "more ranks"));
    o = obs(2, 2, 2, 0.5, 0.01); /* both within */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    o = obs(3, 2, 2, 2.0, 0.045); /* decode within its target but not under the headroom */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    o = obs(4, 2, 2, 2.0, 0.01);
    o.n_ttft = 3; /* too few samples */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "too few samples"));
    o.n_ttft = 4;
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_PREFILL);
    assert_string_equal(planner_action_name(PLANNER_TO_PREFILL), "to_prefill");
    assert_string_equal(planner_action_name(PLANNER_TO_DECODE), "to_decode");
    assert_string_equal(planner_action_name(PLANNER_HOLD), "hold");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompts_wait_decode_gives_a_rank),
        cmocka_unit_test(test_tokens_slow_prefill_gives_a_rank),
        cmocka_unit_test(test_decode_kv_pressure),
        cmocka_unit_test(test_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
