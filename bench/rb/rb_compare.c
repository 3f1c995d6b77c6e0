/*
 * rb_compare.c - `rotor-bench compare A.h5 B.h5`: the two runs' JSON
 * summaries (the /summary summary_json attribute of each file) side by
 * side, one metric a row: A, B and B/A ("-" where either is missing or A
 * is 0).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rb_output.h"

/* j[k1][k2] (k2 may be NULL) as a number; NAN if missing or null */
static double get(const cJSON *j, const char *k1, const char *k2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k1);
    if (k2) v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, k2) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void val(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, " %14.4g", v);
    else fprintf(f, " %14s", "-");
}

static void line(FILE *f, const char *name, double a, double b)
{
    fprintf(f, "%-34s", name);
    val(f, a);
    val(f, b);
    if (isfinite(a) && isfinite(b) && a != 0) fprintf(f, " %10.2f\n", b / a);
    else fprintf(f, " %10s\n", "-");
}

static void describe(FILE *f, const char *tag, const char *path, const cJSON *j)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "params");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(p, "url");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(p, "model");
    const cJSON *wl = cJSON_GetObjectItemCaseSensitive(p, "workload");
    fprintf(f, "%s: %s  (%s at %s, %s workload)\n", tag, path,
            cJSON_IsString(model) ? model->valuestring : "?", cJSON_IsString(url) ? url->valuestring : "?",
            cJSON_IsString(wl) ? wl->valuestring : "?");
}

int rb_compare_main(const char *pa, const char *pb, FILE *f)
{
    char *ta = NULL, *tb = NULL;
    rt_status_t st = rb_output_h5_read_summary(pa, &ta);
    if (!st) st = rb_output_h5_read_summary(pb, &tb);
    cJSON *a = ta ? cJSON_Parse(ta) : NULL, *b = tb ? cJSON_Parse(tb) : NULL;
    free(ta);
    free(tb);
    if (st || !a || !b) {
        fprintf(stderr, "rotor-bench compare: %s\n", st ? rt_error_msg() : "summary_json is not JSON");
        cJSON_Delete(a);
        cJSON_Delete(b);
        return 1;
    }
    describe(f, "A", pa, a);
    describe(f, "B", pb, b);
    fprintf(f, "\n%-34s %14s %14s %10s\n", "metric", "A", "B", "B/A");
    static const struct {
        const char *key, *label;
    } dist[] = {{"ttft_ms", "TTFT (ms)"},
                {"itl_ms", "ITL (ms)"},
                {"itl_token_ms", "per-token ITL (ms)"},
                {"latency_ms", "request latency (ms)"},
                {"output_tokens", "output tokens"},
                {"input_tokens", "input tokens"}};
    static const char *const stat[] = {"p50", "p90", "p95", "p99", "mean", "max"};
    for (size_t i = 0; i < sizeof dist / sizeof *dist; i++)
        for (size_t k = 0; k < sizeof stat / sizeof *stat; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s %s", dist[i].label, stat[k]);
            line(f, name, get(a, dist[i].key, stat[k]), get(b, dist[i].key, stat[k]));
        }
    line(f, "output token throughput (tok/s)", get(a, "output_token_throughput", NULL),
         get(b, "output_token_throughput", NULL));
    line(f, "input token throughput (tok/s)", get(a, "input_token_throughput", NULL),
         get(b, "input_token_throughput", NULL));
    line(f, "request throughput (req/s)", get(a, "request_throughput", NULL), get(b, "request_throughput", NULL));
    line(f, "goodput (req/s)", get(a, "goodput", "requests_per_s"), get(b, "goodput", "requests_per_s"));
    line(f, "goodput fraction", get(a, "goodput", "fraction"), get(b, "goodput", "fraction"));
    line(f, "completed requests", get(a, "requests", "completed"), get(b, "requests", "completed"));
    line(f, "failed requests", get(a, "requests", "errors"), get(b, "requests", "errors"));
    line(f, "duration (s)", get(a, "duration_s", NULL), get(b, "duration_s", NULL));
    line(f, "client CPU per token (us)", get(a, "client_cpu_us_per_token", NULL),
         get(b, "client_cpu_us_per_token", NULL));
    cJSON_Delete(a);
    cJSON_Delete(b);
    return 0;
}
