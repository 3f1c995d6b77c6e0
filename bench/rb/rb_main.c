/*
 * rb_main.c - the rotor-bench command line (docs/rotor-bench.md):
 *
 *   rotor-bench profile --url URL --model NAME [options]   load an endpoint
 *   rotor-bench compare A.h5 B.h5                          two runs as ratios
 *
 * profile parses every option into the workload's options
 * (rb_workload_opts_t) and the engine's (rb_run_opts_t), runs, computes the
 * summary, prints the table and writes --json / --out. Options take their
 * value as the next word or after "="; --goodput takes one or more
 * METRIC:MS words.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rb_metrics.h"
#include "rb_output.h"
#include "rb_run.h"
#include "rb_workload.h"

typedef struct {
    rb_workload_opts_t wl;
    rb_run_opts_t run;
    const char *url, *model, *endpoint, *arrival;
    bool have_conc, have_rate, have_requests, have_duration, have_sessions;
    rb_slo_t slo;
    const char *out_h5, *out_json;
    int progress; /* -1 auto (stderr is a TTY), 0, 1 */
} cli_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rotor-bench profile --url http://HOST:PORT --model NAME [options]\n"
            "       rotor-bench compare A.h5 B.h5\n"
            "\n"
            "endpoint:  --endpoint chat|completions (chat)  --api-key KEY  --no-stream\n"
            "           --timeout S (600, per request)  --max-conns N (10000)\n"
            "load:      --concurrency N (1) | --rate R [--arrival poisson|constant]\n"
            "           --requests N (100) | --duration S   --warmup N (0)  --seed S (0)\n"
            "lengths:   --input-tokens MEAN[:STDDEV] (128)  --output-tokens MEAN[:STDDEV] (128)\n"
            "           --tokenizer-gguf FILE  --no-ignore-eos\n"
            "prefixes:  --shared-prefixes N --prefix-tokens L\n"
            "           --system-prompt-tokens L --user-context-tokens M --users U\n"
            "sessions:  --sessions N --turns T --think-time S\n"
            "trace:     --trace FILE.jsonl [--speed X (1)] [--block-tokens N (512)]\n"
            "SLOs:      --goodput ttft:MS [itl:MS] [latency:MS]\n"
            "outputs:   --out RUN.h5  --json RUN.json  --no-progress | --progress\n");
}

/* ---- value parsing ---------------------------------------------------- */

static int bad(const char *opt, const char *v, const char *why)
{
    fprintf(stderr, "rotor-bench: %s %s: %s\n", opt, v ? v : "(missing)", why);
    return -1;
}

static int p_double(const char *opt, const char *v, double lo, double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : NAN;
    if (!v || errno || end == v || *end || !isfinite(d) || d < lo) return bad(opt, v, "not a valid number");
    *out = d;
    return 0;
}

static int p_int(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long n = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || n < lo || n > hi) return bad(opt, v, "not a valid integer");
    *out = n;
    return 0;
}

static int p_i32(const char *opt, const char *v, int lo, int *out)
{
    long long n;
    if (p_int(opt, v, lo, 1 << 30, &n)) return -1;
    *out = (int)n;
    return 0;
}

/* MEAN[:STDDEV] */
static int p_len(const char *opt, const char *v, double *mean, double *sd)
{
    char buf[64];
    if (!v || strlen(v) >= sizeof buf) return bad(opt, v, "expected MEAN[:STDDEV]");
    strcpy(buf, v);
    char *c = strchr(buf, ':');
    if (c) *c = 0;
    *sd = 0;
    if (p_double(opt, buf, 1, mean)) return -1;
    return c ? p_double(opt, c + 1, 0, sd) : 0;
}

/* METRIC:MS */
static int p_slo(const char *w, rb_slo_t *s)
{
    const char *c = strchr(w, ':');
    double v;
    if (!c || p_double("--goodput", c + 1, 0, &v) || !(v > 0)) return bad("--goodput", w, "expected ttft:MS, itl:MS or latency:MS");
    const size_t n = (size_t)(c - w);
    if (n == 4 && !strncmp(w, "ttft", 4)) s->ttft_ms = v;
    else if ((n == 3 && !strncmp(w, "itl", 3)) || (n == 18 && !strncmp(w, "inter_token_latency", 18))) s->itl_ms = v;
    else if ((n == 7 && !strncmp(w, "latency", 7)) || (n == 15 && !strncmp(w, "request_latency", 15)))
        s->latency_ms = v;
    else return bad("--goodput", w, "unknown metric (ttft, itl, latency)");
    return 0;
}

/* ---- profile ---------------------------------------------------------- */

static int parse_profile(int argc, char **argv, cli_t *c)
{
    rb_workload_opts_default(&c->wl);
    c->wl.n_requests = 100;
    c->wl.input_mean = c->wl.output_mean = 128;
    c->wl.input_stddev = c->wl.output_stddev = 0;
    c->endpoint = "chat";
    c->arrival = "poisson";
    c->progress = -1;
    c->run.timeout_s = 600;
    c->run.max_conns = 10000;
    c->run.concurrency = 1;
    c->run.stream = true;
    long long n;
    for (int i = 0; i < argc; i++) {
        char name[64];
        const char *a = argv[i], *v = NULL;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "rotor-bench: unexpected argument %s\n", a);
            return -1;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a, nl);
        name[nl] = 0;
/* the option's value: after '=' or the next word */
#define VAL() (v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL))
#define IS(s) (strcmp(name, s) == 0)
        if (IS("--help") || IS("-h")) {
            usage(stdout);
            exit(0);
        } else if (IS("--url")) {
            if (!(c->url = VAL())) return bad(name, v, "missing");
        } else if (IS("--model")) {
            if (!(c->model = VAL())) return bad(name, v, "missing");
        } else if (IS("--endpoint")) {
            c->endpoint = VAL();
            if (!v || (strcmp(v, "chat") && strcmp(v, "completions"))) return bad(name, v, "chat or completions");
        } else if (IS("--api-key")) {
            if (!(c->run.api_key = VAL())) return bad(name, v, "missing");
        } else if (IS("--concurrency")) {
            if (p_i32(name, VAL(), 1, &c->run.concurrency)) return -1;
            c->have_conc = true;
        } else if (IS("--rate")) {
            if (p_double(name, VAL(), 0, &c->run.rate) || !(c->run.rate > 0)) return bad(name, v, "must be > 0");
            c->have_rate = true;
        } else if (IS("--arrival")) {
            c->arrival = VAL();
            if (!v || (strcmp(v, "poisson") && strcmp(v, "constant"))) return bad(name, v, "poisson or constant");
        } else if (IS("--requests")) {
            if (p_int(name, VAL(), 1, INT64_MAX / 2, &n)) return -1;
            c->wl.n_requests = n;
            c->have_requests = true;
        } else if (IS("--duration")) {
            if (p_double(name, VAL(), 0, &c->run.duration_s) || !(c->run.duration_s > 0))
                return bad(name, v, "must be > 0");
            c->have_duration = true;
        } else if (IS("--warmup")) {
            if (p_int(name, VAL(), 0, INT64_MAX / 2, &n)) return -1;
            c->wl.n_warmup = n;
        } else if (IS("--seed")) {
            if (p_int(name, VAL(), 0, INT64_MAX, &n)) return -1;
            c->wl.seed = (uint64_t)n;
        } else if (IS("--input-tokens")) {
            if (p_len(name, VAL(), &c->wl.input_mean, &c->wl.input_stddev)) return -1;
        } else if (IS("--output-tokens")) {
            if (p_len(name, VAL(), &c->wl.output_mean, &c->wl.output_stddev)) return -1;
        } else if (IS("--tokenizer-gguf")) {
            if (!(c->wl.tokenizer_gguf = VAL())) return bad(name, v, "missing");
        } else if (IS("--no-ignore-eos")) {
            c->wl.ignore_eos = false;
        } else if (IS("--no-stream")) {
            c->wl.stream = false;
        } else if (IS("--shared-prefixes")) {
            if (p_i32(name, VAL(), 1, &c->wl.n_prefixes)) return -1;
        } else if (IS("--prefix-tokens")) {
            if (p_i32(name, VAL(), 1, &c->wl.prefix_tokens)) return -1;
        } else if (IS("--system-prompt-tokens")) {
            if (p_i32(name, VAL(), 1, &c->wl.system_prompt_tokens)) return -1;
        } else if (IS("--user-context-tokens")) {
            if (p_i32(name, VAL(), 0, &c->wl.user_context_tokens)) return -1;
        } else if (IS("--users")) {
            if (p_i32(name, VAL(), 1, &c->wl.n_users)) return -1;
        } else if (IS("--sessions")) {
            if (p_i32(name, VAL(), 1, &c->wl.n_sessions)) return -1;
            c->have_sessions = true;
        } else if (IS("--turns")) {
            if (p_i32(name, VAL(), 1, &c->wl.turns)) return -1;
        } else if (IS("--think-time")) {
            if (p_double(name, VAL(), 0, &c->wl.think_time_s)) return -1;
        } else if (IS("--trace")) {
            if (!(c->wl.trace_path = VAL())) return bad(name, v, "missing");
        } else if (IS("--speed")) {
            if (p_double(name, VAL(), 0, &c->wl.speed) || !(c->wl.speed > 0)) return bad(name, v, "must be > 0");
        } else if (IS("--block-tokens")) {
            if (p_i32(name, VAL(), 1, &c->wl.block_tokens)) return -1;
        } else if (IS("--goodput")) {
            /* one or more METRIC:MS words (like aiperf) */
            if (eq) {
                if (p_slo(eq + 1, &c->slo)) return -1;
            } else {
                int k = 0;
                while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                    if (p_slo(argv[++i], &c->slo)) return -1;
                    k++;
                }
                if (!k) return bad(name, NULL, "expected ttft:MS [itl:MS] [latency:MS]");
            }
        } else if (IS("--out")) {
            if (!(c->out_h5 = VAL())) return bad(name, v, "missing");
        } else if (IS("--json")) {
            if (!(c->out_json = VAL())) return bad(name, v, "missing");
        } else if (IS("--no-progress")) {
            c->progress = 0;
        } else if (IS("--progress")) {
            c->progress = 1;
        } else if (IS("--timeout")) {
            if (p_double(name, VAL(), 0, &c->run.timeout_s) || !(c->run.timeout_s > 0)) return bad(name, v, "must be > 0");
        } else if (IS("--max-conns")) {
            if (p_i32(name, VAL(), 1, &c->run.max_conns)) return -1;
        } else {
            fprintf(stderr, "rotor-bench: unknown option %s (see --help)\n", a);
            return -1;
        }
#undef VAL
#undef IS
    }
    if (!c->url || !c->model) {
        fprintf(stderr, "rotor-bench: --url and --model are required\n");
        return -1;
    }
    if (c->have_conc && c->have_rate) {
        fprintf(stderr, "rotor-bench: --concurrency and --rate exclude each other\n");
        return -1;
    }

    /* the workload kind */
    rb_workload_opts_t *w = &c->wl;
    w->model = c->model;
    w->api = strcmp(c->endpoint, "chat") ? RB_API_COMPLETIONS : RB_API_CHAT;
    if (w->trace_path) w->kind = RB_WL_TRACE;
    else if (c->have_sessions) w->kind = RB_WL_SESSIONS;
    else if (w->n_prefixes > 0 || w->system_prompt_tokens > 0) w->kind = RB_WL_PREFIX;
    else w->kind = RB_WL_SYNTHETIC;
    if (w->n_prefixes > 0 && w->prefix_tokens <= 0) {
        fprintf(stderr, "rotor-bench: --shared-prefixes needs --prefix-tokens\n");
        return -1;
    }
    /* how many: --requests, else until --duration, else the trace's or the
     * sessions' own end, else 100 */
    if (!c->have_requests && (c->have_duration || w->kind == RB_WL_TRACE || w->kind == RB_WL_SESSIONS))
        w->n_requests = 0;

    /* the engine */
    rb_run_opts_t *r = &c->run;
    r->url = c->url;
    r->api = w->api;
    r->stream = w->stream;
    r->seed = w->seed;
    r->n_warmup = w->n_warmup;
    r->poisson = !strcmp(c->arrival, "poisson");
    if (c->have_rate) r->mode = RB_MODE_RATE;
    else if (c->have_conc) r->mode = RB_MODE_CONCURRENCY;
    else if (w->kind == RB_WL_TRACE) r->mode = RB_MODE_SCHEDULE;
    else if (w->kind == RB_WL_SESSIONS) {
        r->mode = RB_MODE_CONCURRENCY; /* every session may have a turn in flight */
        r->concurrency = w->n_sessions;
    } else r->mode = RB_MODE_CONCURRENCY;
    r->progress = c->progress < 0 ? isatty(STDERR_FILENO) : c->progress;
    return 0;
}

static const char *const kind_names[] = {"synthetic", "prefix", "sessions", "trace"};
static const char *const mode_names[] = {"concurrency", "rate", "schedule"};

static cJSON *params_json(const cli_t *c)
{
    const rb_workload_opts_t *w = &c->wl;
    const rb_run_opts_t *r = &c->run;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "url", c->url);
    cJSON_AddStringToObject(p, "model", c->model);
    cJSON_AddStringToObject(p, "endpoint", c->endpoint);
    cJSON_AddBoolToObject(p, "api_key", r->api_key != NULL); /* never the key itself */
    cJSON_AddStringToObject(p, "workload", kind_names[w->kind]);
    cJSON_AddStringToObject(p, "mode", mode_names[r->mode]);
    if (r->mode == RB_MODE_CONCURRENCY) cJSON_AddNumberToObject(p, "concurrency", r->concurrency);
    else cJSON_AddNullToObject(p, "concurrency");
    if (r->mode == RB_MODE_RATE) {
        cJSON_AddNumberToObject(p, "rate", r->rate);
        cJSON_AddStringToObject(p, "arrival", c->arrival);
    } else {
        cJSON_AddNullToObject(p, "rate");
        cJSON_AddNullToObject(p, "arrival");
    }
    cJSON_AddNumberToObject(p, "requests", (double)w->n_requests);
    cJSON_AddNumberToObject(p, "duration_s", r->duration_s);
    cJSON_AddNumberToObject(p, "warmup", (double)w->n_warmup);
    cJSON_AddNumberToObject(p, "seed", (double)w->seed);
    cJSON *it = cJSON_AddObjectToObject(p, "input_tokens");
    cJSON_AddNumberToObject(it, "mean", w->input_mean);
    cJSON_AddNumberToObject(it, "stddev", w->input_stddev);
    cJSON *ot = cJSON_AddObjectToObject(p, "output_tokens");
    cJSON_AddNumberToObject(ot, "mean", w->output_mean);
    cJSON_AddNumberToObject(ot, "stddev", w->output_stddev);
    if (w->tokenizer_gguf) cJSON_AddStringToObject(p, "tokenizer_gguf", w->tokenizer_gguf);
    else cJSON_AddNullToObject(p, "tokenizer_gguf");
    cJSON_AddBoolToObject(p, "ignore_eos", w->ignore_eos);
    cJSON_AddBoolToObject(p, "stream", w->stream);
    cJSON_AddNumberToObject(p, "shared_prefixes", w->n_prefixes);
    cJSON_AddNumberToObject(p, "prefix_tokens", w->prefix_tokens);
    cJSON_AddNumberToObject(p, "system_prompt_tokens", w->system_prompt_tokens);
    cJSON_AddNumberToObject(p, "user_context_tokens", w->user_context_tokens);
    cJSON_AddNumberToObject(p, "users", w->n_users);
    cJSON_AddNumberToObject(p, "sessions", w->n_sessions);
    cJSON_AddNumberToObject(p, "turns", w->turns);
    cJSON_AddNumberToObject(p, "think_time_s", w->think_time_s);
    if (w->trace_path) cJSON_AddStringToObject(p, "trace", w->trace_path);
    else cJSON_AddNullToObject(p, "trace");
    cJSON_AddNumberToObject(p, "speed", w->speed);
    cJSON_AddNumberToObject(p, "block_tokens", w->block_tokens);
    rb_output_slo_json(cJSON_AddObjectToObject(p, "goodput"), &c->slo);
    if (c->out_h5) cJSON_AddStringToObject(p, "out", c->out_h5);
    else cJSON_AddNullToObject(p, "out");
    if (c->out_json) cJSON_AddStringToObject(p, "json", c->out_json);
    else cJSON_AddNullToObject(p, "json");
    cJSON_AddNumberToObject(p, "timeout_s", r->timeout_s);
    cJSON_AddNumberToObject(p, "max_conns", r->max_conns);
    return p;
}

/* argv joined by spaces, words with spaces or quotes single-quoted, the
 * API key replaced by "***". */
static char *command_line(int argc, char **argv)
{
    size_t n = 1;
    for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0 && !strcmp(argv[i - 1], "--api-key")) a = "***";
        else if (!strncmp(a, "--api-key=", 10)) a = "--api-key=***";
        const bool q = !a[0] || strpbrk(a, " \t\n'\"\\$`*?;&|<>()");
        if (i) *p++ = ' ';
        if (q) *p++ = '\'';
        for (; *a; a++) {
            if (q && *a == '\'') {
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *a;
            }
        }
        if (q) *p++ = '\'';
    }
    *p = 0;
    return s;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "rotor-bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    fputc('\n', f);
    if (fclose(f) != 0) {
        fprintf(stderr, "rotor-bench: writing %s failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int cmd_profile(int argc, char **argv, int full_argc, char **full_argv)
{
    cli_t c;
    memset(&c, 0, sizeof c);
    if (parse_profile(argc, argv, &c)) return 2;

    rb_workload_t *w = NULL;
    rt_status_t st = rb_workload_create(&c.wl, &w);
    if (st) {
        fprintf(stderr, "rotor-bench: workload: %s\n", rt_error_msg());
        return 1;
    }
    const int64_t total = rb_workload_total(w); /* items, warmup included */
    c.run.total = total < 0 ? -1 : total > c.wl.n_warmup ? total - c.wl.n_warmup : 0;

    fprintf(stderr, "rotor-bench: %s workload, %s mode, %s %s against %s\n", kind_names[c.wl.kind],
            mode_names[c.run.mode], c.run.stream ? "streaming" : "non-streaming", c.endpoint, c.url);
    rb_run_result_t res;
    st = rb_run(&c.run, w, &res);
    const char *wl_msg = rb_workload_error(w);
    const bool wl_err = wl_msg != NULL;
    if (wl_msg) fprintf(stderr, "rotor-bench: the workload stopped early: %s\n", wl_msg);
    const bool exact = rb_workload_exact_tokens(w);
    rb_workload_destroy(w);
    if (st) {
        fprintf(stderr, "rotor-bench: %s\n", rt_error_msg());
        return 1;
    }

    rb_summary_t s;
    int rc = 0;
    st = rb_summary_compute(&res.rec, &c.slo, &s);
    if (st) {
        fprintf(stderr, "rotor-bench: %s\n", rt_error_msg());
        rb_run_result_free(&res);
        return 1;
    }
    s.client_cpu_s = res.cpu_s;
    s.tokens_received = res.tokens_received;
    s.client_cpu_us_per_token = res.tokens_received ? res.cpu_s * 1e6 / (double)res.tokens_received : 0;
    s.max_in_flight = res.max_in_flight;
    memcpy(s.err_example, res.err_example, sizeof s.err_example);

    rb_output_table(stdout, &s);
    if (!exact)
        printf("prompt lengths are approximate (words counted as tokens; --tokenizer-gguf makes them exact);"
               " input tokens come from the endpoint's usage where it reports them\n");
    fflush(stdout);

    cJSON *params = params_json(&c);
    cJSON_AddBoolToObject(params, "exact_prompt_tokens", exact);
    cJSON *sj = rb_output_summary_json(&s, params);
    char *stext = sj ? cJSON_Print(sj) : NULL;
    char *ptext = params ? cJSON_PrintUnformatted(params) : NULL;
    char *cmd = command_line(full_argc, full_argv);
    if (!stext || !ptext || !cmd) {
        fprintf(stderr, "rotor-bench: out of memory for the summary\n");
        rc = 1;
    }
    if (!rc && c.out_json && write_text(c.out_json, stext)) rc = 1;
    if (!rc && c.out_h5) {
        rb_h5_meta_t m = {.url = c.url,
                          .model = c.model,
                          .endpoint = c.endpoint,
                          .command_line = cmd,
                          .params_json = ptext,
                          .summary_json = stext,
                          .start_wall_time = res.start_wall,
                          .duration_s = s.duration_s};
        if (rb_output_h5(c.out_h5, &m, &res.rec)) {
            fprintf(stderr, "rotor-bench: %s\n", rt_error_msg());
            rc = 1;
        }
    }
    free(cmd);
    free(ptext);
    free(stext);
    cJSON_Delete(sj);
    cJSON_Delete(params);
    const bool res_interrupted = res.interrupted;
    rb_run_result_free(&res);
    if (!rc && wl_err) rc = 1;
    if (!rc && res_interrupted) rc = 130;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("rotor-bench %s\n", RB_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "profile")) return cmd_profile(argc - 2, argv + 2, argc, argv);
    if (!strcmp(argv[1], "compare")) {
        if (argc != 4) {
            fprintf(stderr, "usage: rotor-bench compare A.h5 B.h5\n");
            return 2;
        }
        return rb_compare_main(argv[2], argv[3], stdout);
    }
    fprintf(stderr, "rotor-bench: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
