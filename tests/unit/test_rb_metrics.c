/* test_rb_metrics.c - rotor-bench's metric arithmetic and response reader:
 * numpy-style percentiles, per-request TTFT/ITL/latency from synthetic
 * timelines, the run's duration, throughputs, goodput under each SLO, errors
 * by kind kept out of the distributions, warmup excluded; and the SSE reader
 * (chunks split anywhere, CRLF, role-only chunks, usage, [DONE], error
 * events, malformed data, a stream cut short, non-streaming bodies).
 *
 * bench/rb is not part of librotor: its pure files are compiled in here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../bench/rb/rb_metrics.c"
#include "../../bench/rb/rb_sse.c"

#define EPS 1e-9

/* ---- percentiles ------------------------------------------------------ */

static void test_percentiles(void **st)
{
    (void)st;
    double v[10] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
    rb_stats_t s;
    rb_stats_of(v, 10, &s);
    /* numpy.percentile([1..10], p): rank p/100*(n-1), linear between ranks */
    assert_float_equal(s.p50, 5.5, EPS);
    assert_float_equal(s.p90, 9.1, EPS);
    assert_float_equal(s.p95, 9.55, EPS);
    assert_float_equal(s.p99, 9.91, EPS);
    assert_float_equal(s.mean, 5.5, EPS);
    assert_float_equal(s.min, 1, EPS);
    assert_float_equal(s.max, 10, EPS);
    assert_int_equal(s.n, 10);

    double one[1] = {42};
    rb_stats_of(one, 1, &s);
    assert_float_equal(s.p50, 42, EPS);
    assert_float_equal(s.p99, 42, EPS);

    double two[2] = {3, 1};
    rb_stats_of(two, 2, &s);
    assert_float_equal(s.p50, 2, EPS);
    assert_float_equal(s.p90, 2.8, EPS);

    rb_stats_of(NULL, 0, &s);
    assert_int_equal(s.n, 0);
    assert_true(isnan(s.p50) && isnan(s.mean) && isnan(s.max));
}

/* ---- a run of synthetic timelines ------------------------------------- */

/* A streamed request sent at t_send whose content chunks arrived at tok[]
 * and whose stream ended ([DONE]) at t_end. */
static void add_stream(rb_records_t *rs, uint64_t idx, double t_send, const double *tok, size_t n, double t_end,
                       int32_t in, bool warmup)
{
    rb_req_t r = {.index = idx, .session = -1, .turn = -1, .warmup = warmup, .streamed = true,
                  .t_send = t_send, .t_first = n ? tok[0] : NAN, .t_end = t_end,
                  .input_tokens = in, .output_tokens = (int32_t)n, .http_status = 200};
    assert_int_equal(rb_records_add(rs, &r, tok, n), RT_OK);
}

static void add_failed(rb_records_t *rs, uint64_t idx, double t_send, double t_end, rb_err_kind_t k, int code)
{
    rb_req_t r = {.index = idx, .session = -1, .turn = -1, .streamed = true, .t_send = t_send,
                  .t_first = NAN, .t_end = t_end, .http_status = code, .err = k};
    assert_int_equal(rb_records_add(rs, &r, NULL, 0), RT_OK);
}

/*   W  warmup        send -1.0, tokens -0.9 -0.8, end -0.5       (excluded)
 *   A  send 0.00     tokens 0.10 0.12 0.14 0.16, end 0.17, in 10  TTFT 100 lat 170 ITL 70/3
 *   B  send 0.05     tokens 0.25 0.26, end 0.26, in 20            TTFT 200 lat 210 ITL 10
 *   C  send 0.10     HTTP 503 at 0.11
 *   D  send 0.20     token 0.30, end 0.31, in 5                   TTFT 100 lat 110 (no ITL)
 *   E  send 0.22     timeout at 0.29
 * duration 0.31 - 0.00 (C and E count for the window, not for the stats) */
static void make_run(rb_records_t *rs)
{
    memset(rs, 0, sizeof *rs);
    const double w[] = {-0.9, -0.8}, a[] = {0.10, 0.12, 0.14, 0.16}, b[] = {0.25, 0.26}, d[] = {0.30};
    add_stream(rs, 0, -1.0, w, 2, -0.5, 99, true);
    add_stream(rs, 1, 0.00, a, 4, 0.17, 10, false);
    add_stream(rs, 2, 0.05, b, 2, 0.26, 20, false);
    add_failed(rs, 3, 0.10, 0.11, RB_ERR_HTTP_5XX, 503);
    add_stream(rs, 4, 0.20, d, 1, 0.31, 5, false);
    add_failed(rs, 5, 0.22, 0.29, RB_ERR_TIMEOUT, 0);
}

static void test_per_request(void **st)
{
    (void)st;
    rb_records_t rs;
    make_run(&rs);
    assert_int_equal(rs.n_req, 6);
    assert_int_equal(rs.n_tok, 9);
    assert_int_equal(rs.req[2].tok_off, 6);
    assert_int_equal(rs.req[2].n_tok, 2);
    assert_float_equal(rs.tok[rs.req[2].tok_off + 1], 0.26, EPS);

    const rb_req_t *A = &rs.req[1], *B = &rs.req[2], *D = &rs.req[4];
    assert_float_equal(rb_req_ttft_ms(A), 100, 1e-6);
    assert_float_equal(rb_req_latency_ms(A), 170, 1e-6);
    assert_float_equal(rb_req_itl_ms(A), 70.0 / 3, 1e-6);
    assert_float_equal(rb_req_itl_ms(B), 10, 1e-6);
    assert_true(isnan(rb_req_itl_ms(D))); /* one token: no ITL */
    assert_true(isnan(rb_req_ttft_ms(&rs.req[3])));

    /* non-streamed: TTFT = latency, no ITL even with many tokens */
    rb_req_t ns = {.streamed = false, .t_send = 1.0, .t_first = 1.5, .t_end = 1.5, .output_tokens = 9};
    assert_float_equal(rb_req_ttft_ms(&ns), 500, 1e-6);
    assert_float_equal(rb_req_latency_ms(&ns), 500, 1e-6);
    assert_true(isnan(rb_req_itl_ms(&ns)));
    rb_records_free(&rs);
}

static void test_summary(void **st)
{
    (void)st;
    rb_records_t rs;
    make_run(&rs);
    rb_summary_t s;
    assert_int_equal(rb_summary_compute(&rs, NULL, &s), RT_OK);
    assert_int_equal(s.completed, 3);
    assert_int_equal(s.errors, 2);
    assert_int_equal(s.warmup, 1);
    assert_int_equal(s.err_by_kind[RB_ERR_HTTP_5XX], 1);
    assert_int_equal(s.err_by_kind[RB_ERR_TIMEOUT], 1);
    assert_int_equal(s.err_by_kind[RB_ERR_CONNECT], 0);
    assert_int_equal(s.n_http_codes, 1);
    assert_int_equal(s.http_codes[0].code, 503);
    assert_int_equal(s.http_codes[0].n, 1);

    assert_float_equal(s.t_first_send, 0.0, EPS);
    assert_float_equal(s.t_last_end, 0.31, EPS);
    assert_float_equal(s.duration_s, 0.31, EPS);

    /* TTFT {100, 200, 100} */
    assert_int_equal(s.ttft_ms.n, 3);
    assert_float_equal(s.ttft_ms.p50, 100, 1e-6);
    assert_float_equal(s.ttft_ms.p90, 180, 1e-6);
    assert_float_equal(s.ttft_ms.mean, 400.0 / 3, 1e-6);
    assert_float_equal(s.ttft_ms.min, 100, 1e-6);
    assert_float_equal(s.ttft_ms.max, 200, 1e-6);
    /* ITL {70/3, 10}: D has one token */
    assert_int_equal(s.itl_ms.n, 2);
    assert_float_equal(s.itl_ms.p50, (70.0 / 3 + 10) / 2, 1e-6);
    assert_float_equal(s.itl_ms.max, 70.0 / 3, 1e-6);
    /* per-token gaps: A 20 20 20, B 10 (warmup's 100 left out) */
    assert_int_equal(s.itl_token_ms.n, 4);
    assert_float_equal(s.itl_token_ms.p50, 20, 1e-6);
    assert_float_equal(s.itl_token_ms.mean, 17.5, 1e-6);
    assert_float_equal(s.itl_token_ms.min, 10, 1e-6);
    assert_float_equal(s.itl_token_ms.p95, 20, 1e-6);
    /* latency {170, 210, 110}: the 503 (10 ms) and the timeout are not in it */
    assert_int_equal(s.latency_ms.n, 3);
    assert_float_equal(s.latency_ms.p50, 170, 1e-6);
    assert_float_equal(s.latency_ms.p99, 170 + 0.98 * 40, 1e-6);
    assert_float_equal(s.latency_ms.min, 110, 1e-6);
    /* tokens {4, 2, 1} out, {10, 20, 5} in */
    assert_float_equal(s.output_tokens.mean, 7.0 / 3, 1e-9);
    assert_float_equal(s.output_tokens.p50, 2, 1e-9);
    assert_float_equal(s.input_tokens.max, 20, 1e-9);
    assert_float_equal(s.total_output_tokens, 7, EPS);
    assert_float_equal(s.total_input_tokens, 35, EPS);
    assert_float_equal(s.output_token_throughput, 7 / 0.31, 1e-6);
    assert_float_equal(s.input_token_throughput, 35 / 0.31, 1e-6);
    assert_float_equal(s.request_throughput, 3 / 0.31, 1e-6);
    /* no SLO: every completed request is good */
    assert_int_equal(s.good, 3);
    assert_float_equal(s.goodput_fraction, 3.0 / 5, EPS);
    rb_records_free(&rs);
}

static void test_goodput(void **st)
{
    (void)st;
    rb_records_t rs;
    make_run(&rs);
    rb_summary_t s;
    const struct {
        rb_slo_t slo;
        size_t good;
    } cases[] = {
        {{.ttft_ms = 150}, 2},                      /* A, D */
        {{.ttft_ms = 100}, 2},                      /* <= is met */
        {{.ttft_ms = 99.9}, 0},
        {{.itl_ms = 20}, 1},                        /* B; D has no ITL and fails it */
        {{.latency_ms = 200}, 2},                   /* A, D */
        {{.ttft_ms = 150, .latency_ms = 120}, 1},   /* D */
        {{.ttft_ms = 500, .itl_ms = 50, .latency_ms = 500}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(rb_summary_compute(&rs, &cases[i].slo, &s), RT_OK);
        assert_int_equal(s.good, cases[i].good);
        assert_float_equal(s.goodput_rps, (double)cases[i].good / 0.31, 1e-6);
        assert_float_equal(s.goodput_fraction, (double)cases[i].good / 5, EPS);
        assert_float_equal(s.slo.ttft_ms, cases[i].slo.ttft_ms, EPS);
    }
    rb_records_free(&rs);
}

static void test_empty_and_all_failed(void **st)
{
    (void)st;
    rb_records_t rs = {0};
    rb_summary_t s;
    assert_int_equal(rb_summary_compute(&rs, NULL, &s), RT_OK);
    assert_int_equal(s.completed + s.errors, 0);
    assert_float_equal(s.duration_s, 0, EPS);
    assert_float_equal(s.request_throughput, 0, EPS);
    assert_true(isnan(s.ttft_ms.p50));

    add_failed(&rs, 0, 1.0, 1.5, RB_ERR_CONNECT, 0);
    add_failed(&rs, 1, 1.2, 2.0, RB_ERR_INCOMPLETE, 200);
    assert_int_equal(rb_summary_compute(&rs, NULL, &s), RT_OK);
    assert_int_equal(s.completed, 0);
    assert_int_equal(s.errors, 2);
    assert_int_equal(s.err_by_kind[RB_ERR_CONNECT], 1);
    assert_int_equal(s.err_by_kind[RB_ERR_INCOMPLETE], 1);
    assert_int_equal(s.n_http_codes, 0); /* a 200 cut short is no HTTP error */
    assert_float_equal(s.duration_s, 1.0, EPS);
    assert_float_equal(s.output_token_throughput, 0, EPS);
    assert_int_equal(s.latency_ms.n, 0);
    assert_string_equal(rb_err_kind_name(RB_ERR_STREAM), "stream_error");
    assert_string_equal(rb_err_kind_name(RB_ERR_NONE), "");
    rb_records_free(&rs);
}

/* ---- the SSE reader --------------------------------------------------- */

static const char chat_stream[] =
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n"
    ": a comment\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n"
    "data: [DONE]\n\n";

static void test_sse_chat_split_anywhere(void **st)
{
    (void)st;
    const size_t n = sizeof chat_stream - 1;
    /* whole, byte by byte, and in chunks of 7 */
    const size_t steps[] = {n, 1, 7};
    for (size_t k = 0; k < 3; k++) {
        rb_sse_t s = {0};
        rb_sse_reset(&s, RB_API_CHAT);
        double t = 0;
        for (size_t off = 0; off < n; off += steps[k], t += 1) {
            size_t m = n - off < steps[k] ? n - off : steps[k];
            rb_sse_feed(&s, chat_stream + off, m, t);
        }
        rb_sse_finish(&s, t);
        assert_false(s.failed);
        assert_true(s.done);
        assert_int_equal(s.n_tok, 2); /* the role chunk's "" is no token */
        assert_string_equal(s.text, "Hello");
        assert_int_equal(s.usage_completion, 2);
        assert_int_equal(s.usage_prompt, 7);
        assert_true(s.tok[0] < s.tok[1] || steps[k] == n);
        assert_true(s.t_last >= s.tok[1]);
        rb_sse_free(&s);
    }
}

static void test_sse_times_and_reset(void **st)
{
    (void)st;
    rb_sse_t s = {0};
    rb_sse_reset(&s, RB_API_COMPLETIONS);
    const char *p1 = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choi";
    const char *p2 = "ces\":[{\"text\":\"b\"}]}\n\n";
    const char *p3 = "data: [DONE]"; /* last line without a newline */
    rb_sse_feed(&s, p1, strlen(p1), 1.5);
    rb_sse_feed(&s, p2, strlen(p2), 2.5);
    rb_sse_feed(&s, p3, strlen(p3), 3.0);
    assert_false(s.done);
    rb_sse_finish(&s, 3.25);
    assert_true(s.done);
    assert_int_equal(s.n_tok, 2);
    assert_float_equal(s.tok[0], 1.5, EPS);
    assert_float_equal(s.tok[1], 2.5, EPS); /* stamped when its line completed */
    assert_float_equal(s.t_last, 3.25, EPS);
    assert_string_equal(s.text, "ab");
    assert_int_equal(s.usage_completion, -1);
    /* reuse */
    rb_sse_reset(&s, RB_API_COMPLETIONS);
    assert_int_equal(s.n_tok, 0);
    assert_false(s.done);
    assert_string_equal(s.text, "");
    rb_sse_free(&s);
}

static void test_sse_failures(void **st)
{
    (void)st;
    rb_sse_t s = {0};
    /* an error object in the stream */
    rb_sse_reset(&s, RB_API_CHAT);
    const char *e1 = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
                     "data: {\"error\":{\"message\":\"engine died\",\"type\":\"server_error\"}}\n\n";
    rb_sse_feed(&s, e1, strlen(e1), 1);
    assert_true(s.failed);
    assert_non_null(strstr(s.err, "engine died"));
    /* event: error */
    rb_sse_reset(&s, RB_API_CHAT);
    const char *e2 = "event: error\ndata: {\"message\":\"overloaded\"}\n\n";
    rb_sse_feed(&s, e2, strlen(e2), 1);
    assert_true(s.failed);
    /* malformed data */
    rb_sse_reset(&s, RB_API_CHAT);
    const char *e3 = "data: {\"choices\":[{\"delta\":\n\n";
    rb_sse_feed(&s, e3, strlen(e3), 1);
    assert_true(s.failed);
    assert_non_null(strstr(s.err, "malformed"));
    /* a stream cut short: no failure, but no [DONE] */
    rb_sse_reset(&s, RB_API_CHAT);
    const char *e4 = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
    rb_sse_feed(&s, e4, strlen(e4), 1);
    rb_sse_finish(&s, 2);
    assert_false(s.failed);
    assert_false(s.done);
    assert_int_equal(s.n_tok, 1);
    rb_sse_free(&s);
}

static void test_full_bodies(void **st)
{
    (void)st;
    rb_sse_t s = {0};
    rb_sse_reset(&s, RB_API_CHAT);
    const char *b = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hi there\"}}],"
                    "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3}}";
    rb_sse_feed_raw(&s, b, 10, 1 << 20);
    rb_sse_feed_raw(&s, b + 10, strlen(b) - 10, 1 << 20);
    rb_sse_parse_full(&s);
    assert_false(s.failed);
    assert_string_equal(s.text, "hi there");
    assert_int_equal(s.usage_completion, 3);
    assert_int_equal(s.usage_prompt, 4);

    rb_sse_reset(&s, RB_API_COMPLETIONS);
    const char *c = "{\"choices\":[{\"text\":\"abc\"}]}";
    rb_sse_feed_raw(&s, c, strlen(c), 1 << 20);
    rb_sse_parse_full(&s);
    assert_false(s.failed);
    assert_string_equal(s.text, "abc");

    /* an OpenAI error body gives its message; the raw cap holds */
    rb_sse_reset(&s, RB_API_CHAT);
    const char *e = "{\"error\":{\"message\":\"model not found\",\"code\":404}}";
    rb_sse_feed_raw(&s, e, strlen(e), 1 << 20);
    char m[64];
    rb_sse_error_message(&s, m, sizeof m);
    assert_string_equal(m, "model not found");
    rb_sse_parse_full(&s);
    assert_true(s.failed);
    rb_sse_reset(&s, RB_API_CHAT);
    rb_sse_feed_raw(&s, "not json\nat all", 15, 8);
    assert_int_equal(s.raw_len, 8);
    rb_sse_error_message(&s, m, sizeof m);
    assert_string_equal(m, "not json");
    rb_sse_parse_full(&s);
    assert_true(s.failed);
    rb_sse_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_per_request),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_goodput),
        cmocka_unit_test(test_empty_and_all_failed),
        cmocka_unit_test(test_sse_chat_split_anywhere),
        cmocka_unit_test(test_sse_times_and_reset),
        cmocka_unit_test(test_sse_failures),
        cmocka_unit_test(test_full_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
