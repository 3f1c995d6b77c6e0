/* test_metrics.c - the front end's Prometheus metrics: observations land in
 * the right buckets (le is inclusive), buckets are cumulative, _sum/_count,
 * counters and gauges, label escaping, and the whole render is valid text
 * exposition format 0.0.4 line by line (checked with PCRE2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "frontend/metrics.h"

#define M "model_name=\"m\""

/* value of the sample line "series value"; NAN if there is none */
static double sample(const char *text, const char *series)
{
    const size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static pcre2_code *re_compile(const char *pat)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    assert_non_null(re);
    return re;
}

static bool re_match(pcre2_code *re, const char *s, size_t len, char *name, size_t cap)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    const int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    if (rc > 1 && name) {
        PCRE2_SIZE nl = cap;
        pcre2_substring_copy_bynumber(md, 1, (PCRE2_UCHAR *)name, &nl);
    }
    pcre2_match_data_free(md);
    return rc > 0;
}

/* Every line is a HELP, a TYPE or a sample `name{l="v",...} value`; every
 * sample belongs to the family of the latest TYPE line (histograms: _bucket,
 * _sum, _count), no family is declared twice, and within a histogram the
 * buckets never decrease and +Inf equals _count. Returns the number of
 * samples, or -1 (and prints the line) on the first violation. */
static int exposition_samples(const char *text)
{
    pcre2_code *help = re_compile("^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\\n]*$");
    pcre2_code *type = re_compile(
        "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$");
    pcre2_code *smp = re_compile(
        "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
        "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\""
        "(,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\")*\\})?"
        " ([-+]?[0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)$");
    char family[256] = "", families[64][256], line[2048] = "";
    int n_families = 0, n_samples = 0;
    bool is_hist = false, ok = text[0] && text[strlen(text) - 1] == '\n';
    double last_bucket = -1;
    for (const char *p = text; ok && *p;) {
        const char *nl = strchr(p, '\n');
        const size_t len = (size_t)(nl - p);
        char name[256] = "";
        ok = len < sizeof line;
        if (!ok)
            break;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (re_match(help, line, len, name, sizeof name))
            continue;
        if (re_match(type, line, len, name, sizeof name)) {
            for (int i = 0; i < n_families; i++)
                ok = ok && strcmp(families[i], name) != 0;
            ok = ok && n_families < 64;
            if (ok)
                strcpy(families[n_families++], name);
            strcpy(family, name);
            is_hist = strstr(line, " histogram") != NULL;
            last_bucket = -1;
            continue;
        }
        ok = re_match(smp, line, len, name, sizeof name) && family[0];
        if (!ok)
            break;
        n_samples++;
        const double v = strtod(strrchr(line, ' ') + 1, NULL);
        const size_t fl = strlen(family);
        if (!is_hist) {
            ok = strcmp(name, family) == 0;
        } else if (strncmp(name, family, fl) != 0) {
            ok = false;
        } else if (strcmp(name + fl, "_bucket") == 0) {
            ok = strstr(line, "le=\"") && v >= last_bucket;
            last_bucket = v;
        } else if (strcmp(name + fl, "_count") == 0) {
            ok = v == last_bucket; /* the +Inf bucket came last and equals _count */
        } else {
            ok = strcmp(name + fl, "_sum") == 0;
        }
    }
    if (!ok)
        print_message("not valid exposition format at: '%s'\n", line);
    pcre2_code_free(help);
    pcre2_code_free(type);
    pcre2_code_free(smp);
    return ok ? n_samples : -1;
}

static int check_exposition(const char *text)
{
    const int n = exposition_samples(text);
    assert_true(n > 0);
    return n;
}

/* the checker itself rejects what it should */
static void test_checker_rejects(void **state)
{
    (void)state;
    const char *good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\\\"\"} 1\n"
                       "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                       "h_sum 3.5\nh_count 2\n";
    assert_int_equal(exposition_samples(good), 5);
    const char *bad[] = {
        "# TYPE a counter\na 1", /* no final newline */
        "# TYPE a counter\na{l=\"v\"\"} 1\n",          /* unescaped quote */
        "# TYPE a counter\na{l=v} 1\n",                /* unquoted value */
        "# TYPE a counter\na one\n",                   /* not a number */
        "# TYPE a counter\nb 1\n",                     /* sample outside its family */
        "a 1\n",                                       /* no TYPE */
        "# TYPE a counter\n# TYPE a counter\na 1\n",   /* family declared twice */
        "# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(exposition_samples(bad[i]), -1);
}

static void test_buckets_cumulative(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("m", &m), RT_OK);
    fe_metrics_observe_ttft(m, 0.001); /* on a boundary: le is inclusive */
    fe_metrics_observe_ttft(m, 0.003);
    fe_metrics_observe_ttft(m, 0.3);
    fe_metrics_observe_ttft(m, 3000.0); /* past the last bound: +Inf only */
    fe_metrics_observe_ttft(m, NAN);    /* ignored */
    char *t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    check_exposition(t);
    const char *b = "vllm:time_to_first_token_seconds_bucket{" M ",le=\"%s\"}";
    char s[256];
    const struct {
        const char *le;
        double n;
    } want[] = {{"0.001", 1}, {"0.005", 2}, {"0.25", 2}, {"0.5", 3},
                {"1.0", 3},   {"2560.0", 3}, {"+Inf", 4}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        snprintf(s, sizeof s, b, want[i].le);
        assert_true(sample(t, s) == want[i].n);
    }
    assert_true(sample(t, "vllm:time_to_first_token_seconds_count{" M "}") == 4);
    assert_true(fabs(sample(t, "vllm:time_to_first_token_seconds_sum{" M "}") - 3000.304) < 1e-9);
    /* nothing else observed */
    assert_true(sample(t, "vllm:inter_token_latency_seconds_count{" M "}") == 0);
    assert_true(sample(t, "vllm:inter_token_latency_seconds_bucket{" M ",le=\"+Inf\"}") == 0);
    free(t);
    fe_metrics_destroy(m);
}

static void test_itl_feeds_both_names(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("m", &m), RT_OK);
    for (int i = 0; i < 10; i++)
        fe_metrics_observe_itl(m, 0.02); /* le 0.025 */
    fe_metrics_observe_itl(m, 0.2);      /* le 0.2 */
    char *t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    check_exposition(t);
    const char *names[] = {"vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"};
    char s[256];
    for (int k = 0; k < 2; k++) {
        snprintf(s, sizeof s, "%s_bucket{" M ",le=\"0.01\"}", names[k]);
        assert_true(sample(t, s) == 0);
        snprintf(s, sizeof s, "%s_bucket{" M ",le=\"0.025\"}", names[k]);
        assert_true(sample(t, s) == 10);
        snprintf(s, sizeof s, "%s_bucket{" M ",le=\"0.15\"}", names[k]);
        assert_true(sample(t, s) == 10);
        snprintf(s, sizeof s, "%s_bucket{" M ",le=\"0.2\"}", names[k]);
        assert_true(sample(t, s) == 11);
        snprintf(s, sizeof s, "%s_count{" M "}", names[k]);
        assert_true(sample(t, s) == 11);
        snprintf(s, sizeof s, "%s_sum{" M "}", names[k]);
        assert_true(fabs(sample(t, s) - 0.4) < 1e-12);
    }
    free(t);
    fe_metrics_destroy(m);
}

static void test_requests_and_counters(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("m", &m), RT_OK);
    fe_metrics_observe_request(m, 0.4, 0.01, "stop", 7, 3, 0);
    fe_metrics_observe_request(m, 12.0, 0.6, "length", 150, 16, 128);
    fe_metrics_observe_request(m, 0.1, 0.0, "abort", 5, 0, 0);
    fe_metrics_observe_request(m, 0.2, 0.0, NULL, 4, 0, 0); /* error */
    dispatch_status_t st = {.n_workers = 2, .n_up = 1, .n_running = 3, .n_waiting = 4,
                            .kv_usage = 0.25, .prefix_query_tokens_total = 1000,
                            .prefix_hit_tokens_total = 640, .preemptions_total = 2,
                            .steps_total = 77};
    char *t = fe_metrics_render(m, &st, 5);
    assert_non_null(t);
    check_exposition(t);
    assert_true(sample(t, "vllm:prompt_tokens_total{" M "}") == 166);
    assert_true(sample(t, "vllm:generation_tokens_total{" M "}") == 19);
    assert_true(sample(t, "rotor_prompt_cached_tokens_total{" M "}") == 128);
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"stop\"}") == 1);
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"length\"}") == 1);
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"abort\"}") == 1);
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"error\"}") == 1);
    /* e2e: 0.1 0.2 0.4 | 12.0 */
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{" M ",le=\"0.3\"}") == 2);
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{" M ",le=\"0.5\"}") == 3);
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{" M ",le=\"10.0\"}") == 3);
    assert_true(sample(t, "vllm:e2e_request_latency_seconds_bucket{" M ",le=\"15.0\"}") == 4);
    assert_true(fabs(sample(t, "vllm:e2e_request_latency_seconds_sum{" M "}") - 12.7) < 1e-9);
    assert_true(sample(t, "vllm:request_queue_time_seconds_bucket{" M ",le=\"0.5\"}") == 3);
    assert_true(sample(t, "vllm:request_queue_time_seconds_bucket{" M ",le=\"0.8\"}") == 4);
    /* prompt tokens 4 5 7 150 on the 1-2-5 series */
    assert_true(sample(t, "vllm:request_prompt_tokens_bucket{" M ",le=\"2.0\"}") == 0);
    assert_true(sample(t, "vllm:request_prompt_tokens_bucket{" M ",le=\"5.0\"}") == 2);
    assert_true(sample(t, "vllm:request_prompt_tokens_bucket{" M ",le=\"10.0\"}") == 3);
    assert_true(sample(t, "vllm:request_prompt_tokens_bucket{" M ",le=\"100.0\"}") == 3);
    assert_true(sample(t, "vllm:request_prompt_tokens_bucket{" M ",le=\"200.0\"}") == 4);
    assert_true(sample(t, "vllm:request_prompt_tokens_sum{" M "}") == 166);
    /* generation tokens 0 0 3 16: 0 lands in the first bucket */
    assert_true(sample(t, "vllm:request_generation_tokens_bucket{" M ",le=\"1.0\"}") == 2);
    assert_true(sample(t, "vllm:request_generation_tokens_bucket{" M ",le=\"5.0\"}") == 3);
    assert_true(sample(t, "vllm:request_generation_tokens_bucket{" M ",le=\"20.0\"}") == 4);
    /* gauges and engine counters from the dispatcher */
    assert_true(sample(t, "vllm:num_requests_running{" M "}") == 3);
    assert_true(sample(t, "vllm:num_requests_waiting{" M "}") == 4);
    assert_true(sample(t, "vllm:kv_cache_usage_perc{" M "}") == 0.25);
    assert_true(sample(t, "vllm:gpu_cache_usage_perc{" M "}") == 0.25);
    assert_true(sample(t, "vllm:prefix_cache_queries_total{" M "}") == 1000);
    assert_true(sample(t, "vllm:prefix_cache_hits_total{" M "}") == 640);
    assert_true(sample(t, "vllm:num_preemptions_total{" M "}") == 2);
    assert_true(sample(t, "rotor_workers{" M ",state=\"up\"}") == 1);
    assert_true(sample(t, "rotor_workers{" M ",state=\"configured\"}") == 2);
    assert_true(sample(t, "rotor_engine_steps_total{" M "}") == 77);
    assert_true(sample(t, "rotor_http_active_requests{" M "}") == 5);
    /* counters declare their TYPE on the _total name, as prometheus_client does */
    assert_non_null(strstr(t, "# TYPE vllm:prompt_tokens_total counter\n"));
    assert_non_null(strstr(t, "# TYPE vllm:time_to_first_token_seconds histogram\n"));
    assert_non_null(strstr(t, "# TYPE vllm:num_requests_running gauge\n"));
    free(t);
    fe_metrics_destroy(m);
}

static void test_http_codes(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("m", &m), RT_OK);
    char *t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    check_exposition(t);
    assert_null(strstr(t, "rotor_http_requests_total{")); /* no code seen yet */
    free(t);
    for (int i = 0; i < 3; i++)
        fe_metrics_observe_http(m, 200);
    fe_metrics_observe_http(m, 404);
    fe_metrics_observe_http(m, 429);
    fe_metrics_observe_http(m, 999); /* ignored */
    fe_metrics_observe_http(m, -1);  /* ignored */
    t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    check_exposition(t);
    assert_true(sample(t, "rotor_http_requests_total{" M ",code=\"200\"}") == 3);
    assert_true(sample(t, "rotor_http_requests_total{" M ",code=\"404\"}") == 1);
    assert_true(sample(t, "rotor_http_requests_total{" M ",code=\"429\"}") == 1);
    assert_null(strstr(t, "code=\"999\""));
    assert_null(strstr(t, "code=\"-1\""));
    /* gauges without a status render as 0 */
    assert_true(sample(t, "vllm:num_requests_running{" M "}") == 0);
    assert_true(sample(t, "rotor_workers{" M ",state=\"up\"}") == 0);
    free(t);
    fe_metrics_destroy(m);
}

static void test_label_escaping(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("a\"b\\c\nd/é", &m), RT_OK);
    fe_metrics_observe_request(m, 1.0, 0.0, "we\"ird\\\n", 1, 1, 0);
    char *t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    const int n = check_exposition(t);
    assert_true(n > 100);
    const char *lab = "model_name=\"a\\\"b\\\\c\\nd/é\"";
    char s[256];
    snprintf(s, sizeof s, "vllm:num_requests_running{%s}", lab);
    assert_true(sample(t, s) == 0);
    snprintf(s, sizeof s, "vllm:request_success_total{%s,finished_reason=\"we\\\"ird\\\\\\n\"}", lab);
    assert_true(sample(t, s) == 1);
    /* every sample line carries the escaped model label */
    for (const char *p = t; *p; p = strchr(p, '\n') + 1)
        if (*p != '#')
            assert_true(strncmp(strchr(p, '{') + 1, lab, strlen(lab)) == 0);
    free(t);
    fe_metrics_destroy(m);
}

static void test_reason_overflow(void **state)
{
    (void)state;
    fe_metrics_t *m = NULL;
    assert_int_equal(fe_metrics_create("m", &m), RT_OK);
    char r[32];
    for (int i = 0; i < 40; i++) {
        snprintf(r, sizeof r, "r%d", i);
        fe_metrics_observe_request(m, 1.0, 0.0, r, 1, 1, 0);
    }
    fe_metrics_observe_request(m, 1.0, 0.0, "other", 1, 1, 0);
    fe_metrics_observe_request(m, 1.0, 0.0, "stop", 1, 1, 0);
    char *t = fe_metrics_render(m, NULL, 0);
    assert_non_null(t);
    check_exposition(t);
    /* stop, length, abort and 29 more reasons have a series; the other 11 and
     * "other" itself share "other" */
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"stop\"}") == 1);
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"r28\"}") == 1);
    assert_true(isnan(sample(t, "vllm:request_success_total{" M ",finished_reason=\"r29\"}")));
    assert_true(sample(t, "vllm:request_success_total{" M ",finished_reason=\"other\"}") == 12);
    free(t);
    fe_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects), cmocka_unit_test(test_buckets_cumulative), cmocka_unit_test(test_itl_feeds_both_names),
        cmocka_unit_test(test_requests_and_counters), cmocka_unit_test(test_http_codes),
        cmocka_unit_test(test_label_escaping), cmocka_unit_test(test_reason_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
