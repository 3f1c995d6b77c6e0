/*
 * rb_metrics.c - per-request records and the run's AIPerf metrics (see
 * rb_metrics.h for the definitions). Pure arithmetic: no clock, no I/O.
 */
#include "rb_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const err_names[RB_ERR_KIND_COUNT] = {
    [RB_ERR_NONE] = "",           [RB_ERR_CONNECT] = "connect",
    [RB_ERR_TIMEOUT] = "timeout", [RB_ERR_HTTP_4XX] = "http_4xx",
    [RB_ERR_HTTP_5XX] = "http_5xx", [RB_ERR_STREAM] = "stream_error",
    [RB_ERR_INCOMPLETE] = "incomplete",
};

const char *rb_err_kind_name(rb_err_kind_t k)
{
    return (unsigned)k < RB_ERR_KIND_COUNT ? err_names[k] : "?";
}

/* ---- records ---------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

rt_status_t rb_records_add(rb_records_t *rs, const rb_req_t *r, const double *tok, size_t n_tok)
{
    if (grow((void **)&rs->req, &rs->cap_req, rs->n_req + 1, sizeof *rs->req) ||
        grow((void **)&rs->tok, &rs->cap_tok, rs->n_tok + n_tok, sizeof *rs->tok))
        return rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory for the records");
    rb_req_t *d = &rs->req[rs->n_req++];
    *d = *r;
    d->tok_off = rs->n_tok;
    d->n_tok = (uint32_t)n_tok;
    if (n_tok) memcpy(rs->tok + rs->n_tok, tok, n_tok * sizeof *tok);
    rs->n_tok += n_tok;
    return RT_OK;
}

void rb_records_free(rb_records_t *rs)
{
    free(rs->req);
    free(rs->tok);
    memset(rs, 0, sizeof *rs);
}

/* ---- per request ------------------------------------------------------ */

double rb_req_ttft_ms(const rb_req_t *r)
{
    return isfinite(r->t_first) ? (r->t_first - r->t_send) * 1e3 : NAN;
}

double rb_req_latency_ms(const rb_req_t *r) { return (r->t_end - r->t_send) * 1e3; }

double rb_req_itl_ms(const rb_req_t *r)
{
    if (!r->streamed || r->output_tokens < 2 || !isfinite(r->t_first)) return NAN;
    return (rb_req_latency_ms(r) - rb_req_ttft_ms(r)) / (double)(r->output_tokens - 1);
}

bool rb_req_good(const rb_req_t *r, const rb_slo_t *slo)
{
    if (r->err != RB_ERR_NONE || r->warmup) return false;
    if (!slo) return true;
    /* a NAN value compares false: a request without the metric fails it */
    if (slo->ttft_ms > 0 && !(rb_req_ttft_ms(r) <= slo->ttft_ms)) return false;
    if (slo->itl_ms > 0 && !(rb_req_itl_ms(r) <= slo->itl_ms)) return false;
    if (slo->latency_ms > 0 && !(rb_req_latency_ms(r) <= slo->latency_ms)) return false;
    return true;
}

/* ---- statistics ------------------------------------------------------- */

double rb_percentile_sorted(const double *v, size_t n, double p)
{
    if (n == 0) return NAN;
    const double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    if (lo >= n - 1) return v[n - 1];
    const double frac = rank - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void rb_stats_of(double *v, size_t n, rb_stats_t *out)
{
    rb_stats_t s = {.n = n, .p50 = NAN, .p90 = NAN, .p95 = NAN, .p99 = NAN,
                    .mean = NAN, .min = NAN, .max = NAN};
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += v[i];
        s.mean = sum / (double)n;
        s.min = v[0];
        s.max = v[n - 1];
        s.p50 = rb_percentile_sorted(v, n, 50);
        s.p90 = rb_percentile_sorted(v, n, 90);
        s.p95 = rb_percentile_sorted(v, n, 95);
        s.p99 = rb_percentile_sorted(v, n, 99);
    }
    *out = s;
}

/* ---- the run ---------------------------------------------------------- */

static void count_http(rb_summary_t *s, int code)
{
    for (int i = 0; i < s->n_http_codes; i++)
        if (s->http_codes[i].code == code) {
            s->http_codes[i].n++;
            return;
        }
    if (s->n_http_codes < RB_MAX_HTTP_CODES) {
        s->http_codes[s->n_http_codes].code = code;
        s->http_codes[s->n_http_codes++].n = 1;
    }
}

rt_status_t rb_summary_compute(const rb_records_t *rs, const rb_slo_t *slo, rb_summary_t *out)
{
    rb_summary_t s;
    memset(&s, 0, sizeof s);
    if (slo) s.slo = *slo;
    const size_t n = rs->n_req;
    /* scratch: one array per request metric, one for the token gaps */
    double *a = malloc((5 * n + rs->n_tok + 1) * sizeof *a);
    if (!a) return rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory for the summary");
    double *ttft = a, *itl = a + n, *lat = a + 2 * n, *otok = a + 3 * n, *itok = a + 4 * n,
           *gap = a + 5 * n;
    size_t n_ttft = 0, n_itl = 0, n_ok = 0, n_gap = 0;
    double t0 = INFINITY, t1 = -INFINITY;

    for (size_t i = 0; i < n; i++) {
        const rb_req_t *r = &rs->req[i];
        if (r->warmup) {
            s.warmup++;
            continue;
        }
        if (r->t_send < t0) t0 = r->t_send;
        if (r->t_end > t1) t1 = r->t_end;
        if (r->err != RB_ERR_NONE) {
            s.errors++;
            s.err_by_kind[r->err]++;
            if (r->http_status >= 400) count_http(&s, r->http_status);
            continue;
        }
        s.completed++;
        const double tt = rb_req_ttft_ms(r), il = rb_req_itl_ms(r);
        if (isfinite(tt)) ttft[n_ttft++] = tt;
        if (isfinite(il)) itl[n_itl++] = il;
        lat[n_ok] = rb_req_latency_ms(r);
        otok[n_ok] = r->output_tokens;
        itok[n_ok] = r->input_tokens;
        n_ok++;
        s.total_output_tokens += r->output_tokens;
        s.total_input_tokens += r->input_tokens;
        if (r->streamed)
            for (uint32_t k = 1; k < r->n_tok; k++)
                gap[n_gap++] = (rs->tok[r->tok_off + k] - rs->tok[r->tok_off + k - 1]) * 1e3;
        if (rb_req_good(r, slo)) s.good++;
    }
    rb_stats_of(ttft, n_ttft, &s.ttft_ms);
    rb_stats_of(itl, n_itl, &s.itl_ms);
    rb_stats_of(gap, n_gap, &s.itl_token_ms);
    rb_stats_of(lat, n_ok, &s.latency_ms);
    rb_stats_of(otok, n_ok, &s.output_tokens);
    rb_stats_of(itok, n_ok, &s.input_tokens);
    free(a);

    if (s.completed + s.errors > 0) {
        s.t_first_send = t0;
        s.t_last_end = t1;
        s.duration_s = t1 > t0 ? t1 - t0 : 0;
    }
    if (s.duration_s > 0) {
        s.output_token_throughput = s.total_output_tokens / s.duration_s;
        s.input_token_throughput = s.total_input_tokens / s.duration_s;
        s.request_throughput = (double)s.completed / s.duration_s;
        s.goodput_rps = (double)s.good / s.duration_s;
    }
    if (s.completed + s.errors > 0) s.goodput_fraction = (double)s.good / (double)(s.completed + s.errors);
    *out = s;
    return RT_OK;
}
