/*
 * test_planner.c - the SLO planner's rule (include/rotor/planner.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

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

/* ---------------------------------------------------------- predictive */

static void test_forecasters(void **state)
{
    (void)state;
    planner_forecast_t c, t;
    planner_forecast_init(&c, PLANNER_PREDICT_CONSTANT);
    planner_forecast_init(&t, PLANNER_PREDICT_TREND);
    assert_true(planner_forecast_next(&c) == 0 && planner_forecast_next(&t) == 0);
    for (int k = 0; k < 40; k++) { /* a line: 10 + 5 k */
        planner_forecast_add(&c, 10 + 5.0 * k);
        planner_forecast_add(&t, 10 + 5.0 * k);
    }
    assert_true(planner_forecast_next(&c) == 10 + 5.0 * 39); /* the last value */
    assert_true(fabs(planner_forecast_next(&t) - (10 + 5.0 * 40)) < 1e-3); /* the next point of the line */
    planner_forecast_init(&t, PLANNER_PREDICT_TREND);
    for (int k = 0; k < 10; k++) planner_forecast_add(&t, 100 - 30.0 * k); /* falling below 0 */
    assert_true(planner_forecast_next(&t) == 0);
}

static const planner_config_t PCFG = {.mode = PLANNER_PREDICTIVE, .predictor = PLANNER_PREDICT_CONSTANT,
                                      .max_num_seqs = 64, .ttft_slo_s = 1.0, .itl_slo_s = 0.05,
                                      .headroom = 0.8, .kv_high = 0.9, .cooldown_s = 10, .min_samples = 4,
                                      .min_prefill = 1, .min_decode = 1};

/* An interval of 1 s: prompts for remote prefill at prefill_in tokens/s,
 * decode at decode_tps, prefill ranks at 10,000 tokens per busy second, and
 * decode steps on the line t = 10 ms + 2 ms per sequence at batches 1..8. */
static planner_obs_t pobs(double t, int n_prefill, int n_decode, double prefill_in, double decode_tps)
{
    planner_obs_t o = {.t = t, .n_prefill = n_prefill, .n_decode = n_decode, .n_ttft = 10, .ttft_mean_s = 0.5,
                       .n_itl = 100, .itl_mean_s = 0.02, .interval_s = 1.0,
                       .prefill_tokens_in = prefill_in, .decode_tokens = decode_tps,
                       .prefill_tokens_done = 20000, .prefill_busy_s = 2.0};
    for (int b = 1; b <= 8; b++) {
        const double st = 0.010 + 0.002 * b;
        o.fit_n += 1;
        o.fit_b += b;
        o.fit_t += st;
        o.fit_bb += (double)b * b;
        o.fit_bt += b * st;
    }
    return o;
}

static void test_predictive_capacities(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &PCFG);
    planner_obs_t o = pobs(1, 1, 3, 0, 0);
    planner_decide(&p, &o, NULL, 0);
    /* the line's batch at the 50 ms target: (50 - 10) / 2 = 20, 20 / 0.05 s */
    assert_true(fabs(p.last.decode_cap_tps - 400.0) < 1e-6);
    assert_true(fabs(p.last.prefill_cap_tps - 10000.0) < 1e-9);
    planner_config_t c = PCFG; /* a batch limit under 20: 16 sequences, 42 ms */
    c.max_num_seqs = 16;
    planner_init(&p, &c);
    planner_decide(&p, &o, NULL, 0);
    assert_true(fabs(p.last.decode_cap_tps - 16 / 0.042) < 1e-6);
    c.prefill_capacity_tps = 1234; /* configured: not learnt */
    c.decode_capacity_tps = 99;
    planner_init(&p, &c);
    planner_decide(&p, &o, NULL, 0);
    assert_true(p.last.prefill_cap_tps == 1234 && p.last.decode_cap_tps == 99);
    /* one batch size only: what it gave (4 / 18 ms) */
    planner_init(&p, &PCFG);
    o.fit_n = 3, o.fit_b = 12, o.fit_t = 3 * 0.018, o.fit_bb = 48, o.fit_bt = 12 * 0.018;
    planner_decide(&p, &o, NULL, 0);
    assert_true(fabs(p.last.decode_cap_tps - 4 / 0.018) < 1e-6);
}

static void test_predictive_split(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &PCFG);
    char why[192];
    /* 30,000 prompt tokens/s = 3 prefill ranks, 400 output tokens/s = 1 decode
     * rank: of 4 ranks, 3 prefill; two move at once */
    planner_obs_t o = pobs(1, 1, 3, 30000, 400);
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_TO_PREFILL);
    assert_int_equal(p.last.n_moves, 2);
    assert_int_equal(p.last.target_prefill, 3);
    assert_non_null(strstr(why, "3 prefill of 4"));
    o = pobs(5, 3, 1, 30000, 400); /* cooling down */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "cooling down"));
    o = pobs(20, 3, 1, 30000, 400); /* the split holds */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "split holds"));
    /* the load turns to decode: 5,000 prompt tokens/s (0.5 ranks), 1,200
     * output tokens/s (3 ranks): 4 * 0.5 / 3.5 = 0.57 -> the minimum, 1 */
    o = pobs(40, 3, 1, 5000, 1200);
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_DECODE);
    assert_int_equal(p.last.n_moves, 2);
    assert_int_equal(p.ranks_moved, 4);
    assert_int_equal(p.moves, 2);
}

static void test_predictive_holds(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &PCFG);
    char why[192];
    planner_obs_t o = pobs(1, 1, 3, 30000, 400);
    o.fit_n = o.fit_b = o.fit_t = o.fit_bb = o.fit_bt = 0; /* no decode step seen yet */
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "learning"));
    planner_init(&p, &PCFG);
    o = pobs(1, 2, 2, 0, 0);
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "no load"));
    /* ideal 4 * 1.5 / 3 = 2.0 against 2: holds; 1.45 against 1 is within the margin (0.75) */
    o = pobs(2, 2, 2, 15000, 600);
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    o = pobs(3, 1, 3, 7250, 510); /* P = 0.725, D = 1.275: ideal 1.45 */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    /* decode KV at its limit: no decode rank leaves */
    o = pobs(4, 1, 3, 30000, 400);
    o.decode_kv_usage = 0.95;
    assert_int_equal(planner_decide(&p, &o, why, sizeof why), PLANNER_HOLD);
    assert_non_null(strstr(why, "decode KV is at 95%"));
}

/* prompts queued count as demand (drained within an interval); ITL over
 * its target scales decode's demand (at most 2x) */
static void test_predictive_backlog_and_itl(void **state)
{
    (void)state;
    planner_t p;
    planner_init(&p, &PCFG);
    planner_obs_t o = pobs(1, 2, 2, 10000, 1200); /* P 1, D 3: ideal 1 against 2 */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_DECODE);
    planner_init(&p, &PCFG);
    o.prefill_backlog_tokens = 10000; /* P 2: ideal 1.6, within the margin */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    planner_init(&p, &PCFG);
    o = pobs(1, 2, 2, 30000, 400); /* P 3, D 1: ideal 3 */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_TO_PREFILL);
    planner_init(&p, &PCFG);
    o.itl_mean_s = 0.1; /* ITL 2x its target: D 2, ideal 2.4 */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    planner_init(&p, &PCFG);
    o.itl_mean_s = 0.5; /* 10x: still 2x at most */
    assert_int_equal(planner_decide(&p, &o, NULL, 0), PLANNER_HOLD);
    assert_true(fabs(p.last.decode_tps - 400) < 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompts_wait_decode_gives_a_rank),
        cmocka_unit_test(test_tokens_slow_prefill_gives_a_rank),
        cmocka_unit_test(test_decode_kv_pressure),
        cmocka_unit_test(test_holds),
        cmocka_unit_test(test_forecasters),
        cmocka_unit_test(test_predictive_capacities),
        cmocka_unit_test(test_predictive_split),
        cmocka_unit_test(test_predictive_holds),
        cmocka_unit_test(test_predictive_backlog_and_itl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
