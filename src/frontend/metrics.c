/*
 * metrics.c - Prometheus metrics of the front end (see metrics.h).
 *
 * Histograms keep one non-cumulative count per bucket (the last is +Inf),
 * the sum and the count; render turns them into the cumulative _bucket
 * series of the exposition format. Bucket boundaries are vLLM's
 * (vllm/v1/metrics: TTFT, inter-token and request-latency families; the
 * token-count histograms use its 1-2-5 series, here up to 10^6 tokens since
 * the front end does not know max_model_len). Counters render as NAME_total
 * with the TYPE line on that name, as prometheus_client does for vLLM.
 * Numbers are written the way prometheus_client writes them (shortest
 * round-trip decimal, "1.0" not "1"), so le labels match vLLM's exactly.
 * The text is assembled in a libevent evbuffer and copied out once.
 */
#include "frontend/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#define FM_MAX_BUCKETS 24
#define FM_MAX_REASONS 32
#define FM_HTTP_MIN 100
#define FM_HTTP_MAX 599

static const double fm_ttft_le[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                    0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                    20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double fm_itl_le[] = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,
                                   0.3,  0.4,   0.5,  0.75,  1.0,  2.5,  5.0,
                                   7.5,  10.0,  20.0, 40.0,  80.0};
static const double fm_latency_le[] = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,
                                       5.0,  10.0, 15.0, 20.0, 30.0,  40.0,  50.0,
                                       60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double fm_tokens_le[] = {1,     2,     5,      10,     20,     50,     100,
                                      200,   500,   1000,   2000,   5000,   10000,  20000,
                                      50000, 100000, 200000, 500000, 1000000};

#define FM_N(a) ((int)(sizeof(a) / sizeof *(a)))

typedef struct {
    const double *le;              /* (n) upper bounds, increasing */
    int n;
    int64_t bucket[FM_MAX_BUCKETS]; /* (n + 1) non-cumulative; [n] is +Inf */
    double sum;
    int64_t count;
} fm_hist_t;

typedef struct {
    char *reason; /* owned, raw (escaped at render) */
    int64_t n;
} fm_reason_t;

struct fe_metrics {
    char *model_label; /* owned: model_name="..." escaped */
    fm_hist_t ttft, itl, e2e, queue, prompt, gen;
    int64_t prompt_tokens, gen_tokens, cached_tokens;
    fm_reason_t reasons[FM_MAX_REASONS + 1]; /* the last slot is "other" */
    int n_reasons;
    int64_t http[FM_HTTP_MAX + 1]; /* by status code */
};

/* ------------------------------------------------------------ observe */

static void hist_init(fm_hist_t *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->le = le;
    h->n = n;
}

/* Prometheus buckets are "less than or equal": v lands in the first le >= v */
static void hist_observe(fm_hist_t *h, double v)
{
    if (isnan(v))
        return;
    int i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    h->bucket[i]++;
    h->sum += v;
    h->count++;
}

void fe_metrics_observe_ttft(fe_metrics_t *m, double seconds) { hist_observe(&m->ttft, seconds); }

void fe_metrics_observe_itl(fe_metrics_t *m, double seconds) { hist_observe(&m->itl, seconds); }

/* the series of a finish reason; "other" (the slot past FM_MAX_REASONS,
 * made at create) takes the overflow; NULL only while creating */
static fm_reason_t *reason_slot(fe_metrics_t *m, const char *reason)
{
    fm_reason_t *other = &m->reasons[FM_MAX_REASONS];
    if (strcmp(reason, "other") == 0)
        return other->reason ? other : NULL;
    for (int i = 0; i < m->n_reasons; i++)
        if (strcmp(m->reasons[i].reason, reason) == 0)
            return &m->reasons[i];
    char *copy = m->n_reasons < FM_MAX_REASONS ? strdup(reason) : NULL;
    if (!copy)
        return other->reason ? other : NULL;
    m->reasons[m->n_reasons] = (fm_reason_t){.reason = copy};
    return &m->reasons[m->n_reasons++];
}

void fe_metrics_observe_request(fe_metrics_t *m, double e2e_s, double queue_s,
                                const char *finish_reason, int prompt_tokens,
                                int generation_tokens, int cached_tokens)
{
    hist_observe(&m->e2e, e2e_s);
    hist_observe(&m->queue, queue_s);
    hist_observe(&m->prompt, prompt_tokens);
    hist_observe(&m->gen, generation_tokens);
    if (prompt_tokens > 0)
        m->prompt_tokens += prompt_tokens;
    if (generation_tokens > 0)
        m->gen_tokens += generation_tokens;
    if (cached_tokens > 0)
        m->cached_tokens += cached_tokens;
    fm_reason_t *r = reason_slot(m, finish_reason ? finish_reason : "error");
    if (r)
        r->n++;
}

void fe_metrics_observe_http(fe_metrics_t *m, int status)
{
    if (status >= FM_HTTP_MIN && status <= FM_HTTP_MAX)
        m->http[status]++;
}

/* ---------------------------------------------------------- lifecycle */

/* label value escaping of the exposition format: \ " and newline */
static size_t escape_label(char *dst, const char *src)
{
    size_t n = 0;
    for (const char *p = src; *p; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = *p == '\n' ? 'n' : *p;
            }
            n += 2;
        } else {
            if (dst)
                dst[n] = *p;
            n++;
        }
    }
    if (dst)
        dst[n] = '\0';
    return n;
}

void fe_metrics_destroy(fe_metrics_t *m)
{
    if (!m)
        return;
    for (int i = 0; i <= FM_MAX_REASONS; i++)
        free(m->reasons[i].reason);
    free(m->model_label);
    free(m);
}

rt_status_t fe_metrics_create(const char *model_name, fe_metrics_t **out)
{
    if (!model_name || !out)
        return rt_error_set(RT_ERR_INVALID, "fe_metrics_create: NULL argument");
    fe_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return rt_error_set(RT_ERR_NOMEM, "fe_metrics_create: out of memory");
    static const char pre[] = "model_name=\"";
    const size_t n = escape_label(NULL, model_name);
    m->model_label = malloc(sizeof pre + n + 1);
    if (!m->model_label)
        goto nomem;
    memcpy(m->model_label, pre, sizeof pre - 1);
    escape_label(m->model_label + sizeof pre - 1, model_name);
    strcat(m->model_label, "\"");
    hist_init(&m->ttft, fm_ttft_le, FM_N(fm_ttft_le));
    hist_init(&m->itl, fm_itl_le, FM_N(fm_itl_le));
    hist_init(&m->e2e, fm_latency_le, FM_N(fm_latency_le));
    hist_init(&m->queue, fm_latency_le, FM_N(fm_latency_le));
    hist_init(&m->prompt, fm_tokens_le, FM_N(fm_tokens_le));
    hist_init(&m->gen, fm_tokens_le, FM_N(fm_tokens_le));
    /* vLLM shows every finish reason from the start, at 0 */
    static const char *const initial[] = {"stop", "length", "abort"};
    for (size_t i = 0; i < sizeof initial / sizeof *initial; i++)
        if (!reason_slot(m, initial[i]))
            goto nomem;
    /* the overflow slot, made last so that reason_slot above fails on ENOMEM */
    m->reasons[FM_MAX_REASONS].reason = strdup("other");
    if (!m->reasons[FM_MAX_REASONS].reason)
        goto nomem;
    *out = m;
    return RT_OK;
nomem:
    fe_metrics_destroy(m);
    return rt_error_set(RT_ERR_NOMEM, "fe_metrics_create: out of memory");
}

/* ------------------------------------------------------------- render */

typedef struct {
    struct evbuffer *b;
    const char *label; /* model_name="..." */
    bool failed;
} fm_out_t;

static void put(fm_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(fm_out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(o->b, fmt, ap) < 0)
        o->failed = true;
    va_end(ap);
}

/* a float as prometheus_client writes it: shortest round-trip decimal, with
 * ".0" on integral values; +Inf, -Inf, NaN */
static const char *fmt_num(char buf[40], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, 40, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".e"))
        strcat(buf, ".0");
    return buf;
}

static void head(fm_out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_escaped(fm_out_t *o, const char *s)
{
    const size_t n = escape_label(NULL, s);
    char small[256];
    char *e = n < sizeof small ? small : malloc(n + 1);
    if (!e) {
        o->failed = true;
        return;
    }
    escape_label(e, s);
    put(o, "%s", e);
    if (e != small)
        free(e);
}

static void render_hist(fm_out_t *o, const char *name, const char *help, const fm_hist_t *h)
{
    char nb[40];
    head(o, name, "histogram", help);
    int64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->bucket[i];
        put(o, "%s_bucket{%s,le=\"%s\"} %lld\n", name, o->label, fmt_num(nb, h->le[i]),
            (long long)cum);
    }
    cum += h->bucket[h->n];
    put(o, "%s_bucket{%s,le=\"+Inf\"} %lld\n", name, o->label, (long long)cum);
    put(o, "%s_sum{%s} %s\n", name, o->label, fmt_num(nb, h->sum));
    put(o, "%s_count{%s} %lld\n", name, o->label, (long long)h->count);
}

static void render_counter(fm_out_t *o, const char *name, const char *help, int64_t v)
{
    head(o, name, "counter", help);
    put(o, "%s{%s} %lld\n", name, o->label, (long long)v);
}

static void render_gauge(fm_out_t *o, const char *name, const char *help, double v)
{
    char nb[40];
    head(o, name, "gauge", help);
    put(o, "%s{%s} %s\n", name, o->label, fmt_num(nb, v));
}

char *fe_metrics_render(const fe_metrics_t *m, const dispatch_status_t *st, int n_active_http)
{
    const dispatch_status_t zero = {0};
    if (!st)
        st = &zero;
    fm_out_t o = {.b = evbuffer_new(), .label = m->model_label};
    if (!o.b)
        return NULL;

    /* engine state, from the dispatcher */
    render_gauge(&o, "vllm:num_requests_running", "Number of requests in model execution batches.",
                 st->n_running);
    render_gauge(&o, "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                 st->n_waiting);
    render_gauge(&o, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                 st->kv_usage);
    render_gauge(&o, "vllm:gpu_cache_usage_perc",
                 "KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use "
                 "vllm:kv_cache_usage_perc instead.",
                 st->kv_usage);
    render_counter(&o, "vllm:prefix_cache_queries_total",
                   "Prefix cache queries, in terms of number of queried tokens.",
                   st->prefix_query_tokens_total);
    render_counter(&o, "vllm:prefix_cache_hits_total",
                   "Prefix cache hits, in terms of number of cached tokens.",
                   st->prefix_hit_tokens_total);
    render_counter(&o, "vllm:num_preemptions_total",
                   "Cumulative number of preemption from the engine.", st->preemptions_total);
    render_counter(&o, "vllm:spec_decode_num_draft_tokens_total", "Number of draft tokens.",
                   st->spec_draft_tokens_total);
    render_counter(&o, "vllm:spec_decode_num_accepted_tokens_total", "Number of accepted tokens.",
                   st->spec_accepted_tokens_total);

    /* per request, from the front end's observations */
    render_counter(&o, "vllm:prompt_tokens_total", "Number of prefill tokens processed.",
                   m->prompt_tokens);
    render_counter(&o, "vllm:generation_tokens_total", "Number of generation tokens processed.",
                   m->gen_tokens);
    head(&o, "vllm:request_success_total", "counter",
         "Count of successfully processed requests.");
    for (int i = 0; i <= FM_MAX_REASONS; i++) {
        const fm_reason_t *r = &m->reasons[i];
        if (!r->reason || (i == FM_MAX_REASONS && r->n == 0))
            continue;
        put(&o, "vllm:request_success_total{%s,finished_reason=\"", o.label);
        put_escaped(&o, r->reason);
        put(&o, "\"} %lld\n", (long long)r->n);
    }
    render_hist(&o, "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.", &m->ttft);
    render_hist(&o, "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.", &m->itl);
    render_hist(&o, "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.", &m->itl);
    render_hist(&o, "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.", &m->e2e);
    render_hist(&o, "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.", &m->queue);
    render_hist(&o, "vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                &m->prompt);
    render_hist(&o, "vllm:request_generation_tokens", "Number of generation tokens processed.",
                &m->gen);

    /* rotor's own */
    head(&o, "rotor_workers", "gauge",
         "Engine workers: configured in the job, and up (answering heartbeats).");
    put(&o, "rotor_workers{%s,state=\"up\"} %d\n", o.label, st->n_up);
    put(&o, "rotor_workers{%s,state=\"configured\"} %d\n", o.label, st->n_workers);
    render_counter(&o, "rotor_engine_steps_total", "Engine steps run, all workers.",
                   st->steps_total);
    render_counter(&o, "rotor_kvbm_offloaded_blocks_total",
                   "KV blocks copied to the host tier (G2) when evicted from the KV pool, all workers.",
                   st->kvbm_offloaded_total);
    render_counter(&o, "rotor_kvbm_onboarded_blocks_total",
                   "KV blocks copied back from the host tier for a prefix hit instead of prefilled, all workers.",
                   st->kvbm_onboarded_total);
    head(&o, "rotor_kvbm_host_blocks", "gauge", "Host tier (G2) blocks: held now, and its capacity (all workers).");
    put(&o, "rotor_kvbm_host_blocks{%s,state=\"held\"} %lld\n", o.label, (long long)st->kvbm_blocks);
    put(&o, "rotor_kvbm_host_blocks{%s,state=\"capacity\"} %lld\n", o.label, (long long)st->kvbm_capacity);
    head(&o, "rotor_kvbm_disk_blocks", "gauge",
         "Disk tier (G3, HDF5 on node-local disk) blocks: held now, and its capacity (all workers).");
    put(&o, "rotor_kvbm_disk_blocks{%s,state=\"held\"} %lld\n", o.label, (long long)st->kvbm_disk_blocks);
    put(&o, "rotor_kvbm_disk_blocks{%s,state=\"capacity\"} %lld\n", o.label, (long long)st->kvbm_disk_capacity);
    render_counter(&o, "rotor_router_request_blocks_total",
                   "Full prompt blocks of the requests the KV-aware router placed.",
                   st->route_request_blocks_total);
    render_counter(&o, "rotor_router_overlap_blocks_total",
                   "Of those, blocks the chosen worker held, as the router's index knew it.",
                   st->route_overlap_blocks_total);
    render_gauge(&o, "rotor_router_kv_index_blocks",
                 "Distinct KV blocks in the router's index (learnt from the workers' KV events).",
                 (double)st->kv_index_blocks);
    render_gauge(&o, "rotor_disagg_prefill_workers", "Engine workers in the prefill pool now (the SLO planner moves them).",
                 (double)st->n_prefill_workers);
    render_counter(&o, "rotor_planner_moves_total", "Ranks the SLO planner moved between the prefill and decode pools.",
                   st->planner_moves_total);
    render_counter(&o, "rotor_disagg_remote_prefills_total",
                   "Requests whose prompt a prefill worker computed (disaggregated serving).",
                   st->remote_prefills_total);
    render_counter(&o, "rotor_disagg_kv_transfers_total",
                   "KV hand-offs from prefill to decode workers that arrived.", st->kv_transfers_total);
    render_counter(&o, "rotor_disagg_kv_transfer_blocks_total", "KV blocks those hand-offs carried.",
                   st->kv_transfer_blocks_total);
    render_counter(&o, "rotor_disagg_kv_transfer_bytes_total", "KV bytes those hand-offs carried.",
                   st->kv_transfer_bytes_total);
    head(&o, "rotor_disagg_kv_transfer_seconds_total", "counter",
         "Seconds from a prefill worker's send to the decode worker's receipt, summed over hand-offs.");
    put(&o, "rotor_disagg_kv_transfer_seconds_total{%s} %.6f\n", o.label, st->kv_transfer_seconds_total);
    render_counter(&o, "rotor_prompt_cached_tokens_total",
                   "Prompt tokens of finished requests served from the prefix cache.",
                   m->cached_tokens);
    head(&o, "rotor_http_requests_total", "counter", "HTTP responses sent, by status code.");
    for (int c = FM_HTTP_MIN; c <= FM_HTTP_MAX; c++)
        if (m->http[c])
            put(&o, "rotor_http_requests_total{%s,code=\"%d\"} %lld\n", o.label, c,
                (long long)m->http[c]);
    head(&o, "rotor_http_active_requests", "gauge", "HTTP requests in flight.");
    put(&o, "rotor_http_active_requests{%s} %d\n", o.label, n_active_http);

    char *text = NULL;
    const size_t len = evbuffer_get_length(o.b);
    if (!o.failed && (text = malloc(len + 1))) {
        evbuffer_copyout(o.b, text, len);
        text[len] = '\0';
    }
    evbuffer_free(o.b);
    return text;
}
