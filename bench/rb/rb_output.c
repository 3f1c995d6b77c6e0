/*
 * rb_output.c - the progress line, the summary table and the JSON summary
 * (text and cJSON only; the HDF5 file is rb_output_h5.c).
 */
#include "rb_output.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- progress --------------------------------------------------------- */

static void fmt_secs(char *b, size_t cap, double s)
{
    if (!isfinite(s) || s < 0) snprintf(b, cap, "?");
    else if (s < 60) snprintf(b, cap, "%.1fs", s);
    else if (s < 3600) snprintf(b, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(b, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

void rb_output_progress(FILE *f, const rb_progress_t *p)
{
    char el[32], rem[32], tot[32];
    const double rate = p->elapsed_s > 0 ? (double)p->done / p->elapsed_s : 0;
    double left = NAN;
    if (p->total >= 0) {
        snprintf(tot, sizeof tot, "/%lld", (long long)p->total);
        if (rate > 0) left = (double)(p->total - p->done) / rate;
        else if (p->total == p->done) left = 0;
    } else {
        tot[0] = 0;
        if (p->duration_s > 0) left = p->duration_s - p->elapsed_s;
        if (left < 0) left = 0;
    }
    fmt_secs(el, sizeof el, p->elapsed_s);
    fmt_secs(rem, sizeof rem, left);
    const bool tty = isatty(fileno(f));
    fprintf(f, "%s%s%lld%s done  %.1f req/s  %lld errors  %zu in flight  elapsed %s  remaining ~%s%s",
            tty ? "\r" : "", p->warmup ? "warmup " : "", (long long)p->done, tot, rate,
            (long long)p->errors, p->in_flight, el, rem, tty ? "\033[K" : "\n");
    fflush(f);
}

/* ---- table ------------------------------------------------------------ */

static void cell(FILE *f, double v, int prec)
{
    if (isfinite(v)) fprintf(f, " %11.*f", prec, v);
    else fprintf(f, " %11s", "-");
}

static void row(FILE *f, const char *name, const rb_stats_t *s, int prec)
{
    fprintf(f, "%-28s", name);
    const double v[6] = {s->p50, s->p90, s->p95, s->p99, s->mean, s->max};
    for (int i = 0; i < 6; i++) cell(f, v[i], prec);
    fputc('\n', f);
}

static void slo_text(const rb_slo_t *slo, char *b, size_t cap)
{
    int n = 0;
    b[0] = 0;
    if (slo->ttft_ms > 0) n += snprintf(b + n, cap - (size_t)n, "ttft<=%gms ", slo->ttft_ms);
    if (slo->itl_ms > 0 && (size_t)n < cap) n += snprintf(b + n, cap - (size_t)n, "itl<=%gms ", slo->itl_ms);
    if (slo->latency_ms > 0 && (size_t)n < cap)
        n += snprintf(b + n, cap - (size_t)n, "latency<=%gms ", slo->latency_ms);
    if (n > 0 && (size_t)n <= cap) b[n - 1] = 0;
}

static bool slo_set(const rb_slo_t *s) { return s->ttft_ms > 0 || s->itl_ms > 0 || s->latency_ms > 0; }

void rb_output_table(FILE *f, const rb_summary_t *s)
{
    fprintf(f, "\nrotor-bench: %zu requests completed, %zu failed, in %.3f s", s->completed, s->errors,
            s->duration_s);
    if (s->warmup) fprintf(f, " (%zu warmup requests excluded)", s->warmup);
    fprintf(f, "\n\n%-28s %11s %11s %11s %11s %11s %11s\n", "metric", "p50", "p90", "p95", "p99", "mean",
            "max");
    row(f, "TTFT (ms)", &s->ttft_ms, 2);
    row(f, "ITL (ms)", &s->itl_ms, 2);
    row(f, "per-token ITL (ms)", &s->itl_token_ms, 2);
    row(f, "request latency (ms)", &s->latency_ms, 2);
    row(f, "output tokens", &s->output_tokens, 1);
    row(f, "input tokens", &s->input_tokens, 1);
    fprintf(f, "\noutput token throughput  %12.2f tokens/s\n", s->output_token_throughput);
    fprintf(f, "input token throughput   %12.2f tokens/s\n", s->input_token_throughput);
    fprintf(f, "request throughput       %12.3f requests/s\n", s->request_throughput);
    if (slo_set(&s->slo)) {
        char t[128];
        slo_text(&s->slo, t, sizeof t);
        fprintf(f, "goodput (%s)  %.3f requests/s, %zu good = %.1f%% of requests\n", t, s->goodput_rps, s->good,
                100.0 * s->goodput_fraction);
    }
    if (s->errors == 0) {
        fprintf(f, "errors                   none\n");
    } else {
        fprintf(f, "errors                  ");
        for (int k = 1; k < RB_ERR_KIND_COUNT; k++)
            if (s->err_by_kind[k]) fprintf(f, " %s=%zu", rb_err_kind_name((rb_err_kind_t)k), s->err_by_kind[k]);
        for (int i = 0; i < s->n_http_codes; i++)
            fprintf(f, "%s%d:%zu", i ? " " : "  (HTTP ", s->http_codes[i].code, s->http_codes[i].n);
        fprintf(f, "%s\n", s->n_http_codes ? ")" : "");
        for (int k = 1; k < RB_ERR_KIND_COUNT; k++)
            if (s->err_by_kind[k] && s->err_example[k][0])
                fprintf(f, "  first %s: %s\n", rb_err_kind_name((rb_err_kind_t)k), s->err_example[k]);
    }
    fprintf(f, "client CPU per token: %.2f us (%.3f s CPU, %llu tokens received, max %zu in flight)\n",
            s->client_cpu_us_per_token, s->client_cpu_s, (unsigned long long)s->tokens_received,
            s->max_in_flight);
}

/* ---- JSON ------------------------------------------------------------- */

static void num(cJSON *o, const char *k, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static void stats(cJSON *o, const char *k, const rb_stats_t *s)
{
    cJSON *j = cJSON_AddObjectToObject(o, k);
    num(j, "p50", s->p50);
    num(j, "p90", s->p90);
    num(j, "p95", s->p95);
    num(j, "p99", s->p99);
    num(j, "mean", s->mean);
    num(j, "min", s->min);
    num(j, "max", s->max);
}

void rb_output_slo_json(cJSON *o, const rb_slo_t *slo)
{
    if (slo->ttft_ms > 0) cJSON_AddNumberToObject(o, "ttft_ms", slo->ttft_ms);
    if (slo->itl_ms > 0) cJSON_AddNumberToObject(o, "itl_ms", slo->itl_ms);
    if (slo->latency_ms > 0) cJSON_AddNumberToObject(o, "latency_ms", slo->latency_ms);
}

cJSON *rb_output_summary_json(const rb_summary_t *s, const cJSON *params)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "rotor_bench_version", RB_VERSION);
    cJSON_AddItemToObject(j, "params", params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject());
    cJSON *rq = cJSON_AddObjectToObject(j, "requests");
    cJSON_AddNumberToObject(rq, "completed", (double)s->completed);
    cJSON_AddNumberToObject(rq, "errors", (double)s->errors);
    cJSON_AddNumberToObject(rq, "warmup", (double)s->warmup);
    cJSON *ek = cJSON_AddObjectToObject(rq, "errors_by_kind");
    for (int k = 1; k < RB_ERR_KIND_COUNT; k++)
        cJSON_AddNumberToObject(ek, rb_err_kind_name((rb_err_kind_t)k), (double)s->err_by_kind[k]);
    cJSON *eh = cJSON_AddObjectToObject(rq, "errors_by_http_status");
    for (int i = 0; i < s->n_http_codes; i++) {
        char c[16];
        snprintf(c, sizeof c, "%d", s->http_codes[i].code);
        cJSON_AddNumberToObject(eh, c, (double)s->http_codes[i].n);
    }
    cJSON *ex = cJSON_AddObjectToObject(rq, "error_examples");
    for (int k = 1; k < RB_ERR_KIND_COUNT; k++)
        if (s->err_by_kind[k] && s->err_example[k][0])
            cJSON_AddStringToObject(ex, rb_err_kind_name((rb_err_kind_t)k), s->err_example[k]);
    cJSON_AddNumberToObject(j, "duration_s", s->duration_s);
    stats(j, "ttft_ms", &s->ttft_ms);
    stats(j, "itl_ms", &s->itl_ms);
    stats(j, "itl_token_ms", &s->itl_token_ms);
    stats(j, "latency_ms", &s->latency_ms);
    stats(j, "output_tokens", &s->output_tokens);
    stats(j, "input_tokens", &s->input_tokens);
    cJSON_AddNumberToObject(j, "total_output_tokens", s->total_output_tokens);
    cJSON_AddNumberToObject(j, "total_input_tokens", s->total_input_tokens);
    cJSON_AddNumberToObject(j, "output_token_throughput", s->output_token_throughput);
    cJSON_AddNumberToObject(j, "input_token_throughput", s->input_token_throughput);
    cJSON_AddNumberToObject(j, "request_throughput", s->request_throughput);
    if (slo_set(&s->slo)) {
        cJSON *g = cJSON_AddObjectToObject(j, "goodput");
        rb_output_slo_json(cJSON_AddObjectToObject(g, "slo"), &s->slo);
        cJSON_AddNumberToObject(g, "good_requests", (double)s->good);
        cJSON_AddNumberToObject(g, "requests_per_s", s->goodput_rps);
        cJSON_AddNumberToObject(g, "fraction", s->goodput_fraction);
    } else {
        cJSON_AddNullToObject(j, "goodput");
    }
    cJSON_AddNumberToObject(j, "client_cpu_us_per_token", s->client_cpu_us_per_token);
    cJSON_AddNumberToObject(j, "client_cpu_s", s->client_cpu_s);
    cJSON_AddNumberToObject(j, "tokens_received", (double)s->tokens_received);
    cJSON_AddNumberToObject(j, "max_in_flight", (double)s->max_in_flight);
    return j;
}
