/*
 * rb_run.c - the load engine (see rb_run.h): one thread drives every
 * request through one curl multi handle, with libevent watching the sockets.
 *
 * Each request is an xfer_t: an easy handle (kept for reuse after the
 * request ends, so its options are set once), the workload item whose body
 * curl sends, and the response reader (rb_sse_t). curl's socket interface
 * is used (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION driving libevent events,
 * curl_multi_socket_action on each ready socket), so a wakeup costs in
 * proportion to the sockets that are ready, not to the requests in flight:
 * 2,000 open streams cost no more per token than 20. The loop: start what
 * may start (issue), run one round of ready events (the write callback
 * stamps and parses each chunk), record what ended (finish). A libevent
 * timer wakes the loop when an item falls due or the progress line is due.
 * Times are kept as absolute CLOCK_MONOTONIC seconds while running and made
 * relative to the measured phase's start at the end.
 */
#include "rb_run.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rb_output.h"
#include "rb_sse.h"
#include "rotor/hlog.h" /* hlog_now: CLOCK_REALTIME s */
#include "sampling/rng.h"

#define RB_MAX_BODY ((size_t)64 << 20) /* non-streaming body kept */
#define RB_MAX_ERR_BODY ((size_t)4096) /* error body kept */
#define RB_PROGRESS_S 0.25

typedef struct run run_t;

typedef struct xfer {
    run_t *run;
    CURL *easy;
    bool active;         /* in the multi handle */
    rb_item_t item;      /* owned while active */
    double t_send;       /* CLOCK_MONOTONIC s */
    double t_last_write; /* last bytes of the body; 0 if none */
    long code;           /* HTTP status once known */
    rb_sse_t sse;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *next_free;
} xfer_t;

struct run {
    const rb_run_opts_t *o;
    rb_workload_t *w;
    rb_run_result_t *res;
    CURLM *multi;
    struct event_base *base;
    struct event *curl_timer; /* curl's timeout (TIMERFUNCTION) */
    struct event *wake_timer; /* the next item / progress line */
    struct curl_slist *hdrs;
    char url[1024];
    xfer_t **all; /* every xfer made, for cleanup */
    size_t n_all, cap_all;
    xfer_t *free_list;
    size_t in_flight, limit;
    /* phases */
    bool warmup;        /* in the warmup phase */
    double t_phase;     /* start of the current phase (CLOCK_MONOTONIC s) */
    int64_t warm_issued, warm_done;
    bool have_held;     /* a measured item came during warmup: sent after it */
    rb_item_t held;
    bool stop;          /* no more requests start */
    double rate_next;   /* RB_MODE_RATE: phase time of the next start */
    rt_rng_t rng;
    int64_t done, errors; /* measured phase */
    rt_status_t st;
};

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) { g_interrupted = sig; }

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

bool rb_run_endpoint_url(const char *base, rb_api_t api, char *buf, size_t cap)
{
    size_t n = strlen(base);
    while (n && base[n - 1] == '/') n--;
    const bool has_v1 = n >= 3 && memcmp(base + n - 3, "/v1", 3) == 0;
    const char *path = api == RB_API_CHAT ? "/chat/completions" : "/completions";
    int w = snprintf(buf, cap, "%.*s%s%s", (int)n, base, has_v1 ? "" : "/v1", path);
    return w >= 0 && (size_t)w < cap;
}

/* ---- curl <-> libevent ------------------------------------------------ */

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    run_t *r = arg;
    const int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(r->multi, fd, action, &running);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl wants (one event a socket,
 * assigned to it with curl_multi_assign, freed on CURL_POLL_REMOVE). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    run_t *r = userp;
    struct event *ev = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ev) event_free(ev);
        curl_multi_assign(r->multi, s, NULL);
        return 0;
    }
    const short flags = (short)((what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    if (ev) {
        event_del(ev);
        event_assign(ev, r->base, s, flags, on_sock_event, r);
    } else {
        ev = event_new(r->base, s, flags, on_sock_event, r);
        if (!ev) return -1;
        curl_multi_assign(r->multi, s, ev);
    }
    return event_add(ev, NULL);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    run_t *r = arg;
    int running;
    curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* CURLMOPT_TIMERFUNCTION: curl wants on_curl_timer in timeout_ms (-1: never). */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    run_t *r = userp;
    if (timeout_ms < 0) return evtimer_del(r->curl_timer);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(r->curl_timer, &tv);
}

static void on_wake(evutil_socket_t fd, short what, void *arg) { (void)fd, (void)what, (void)arg; }

/* ---- one request ------------------------------------------------------ */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    const size_t n = size * nmemb;
    const double now = mono_s();
    x->t_last_write = now;
    if (!x->code) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->code);
    if (x->code >= 400) rb_sse_feed_raw(&x->sse, p, n, RB_MAX_ERR_BODY);
    else if (x->run->o->stream) rb_sse_feed(&x->sse, p, n, now);
    else rb_sse_feed_raw(&x->sse, p, n, RB_MAX_BODY);
    return n;
}

static xfer_t *xfer_get(run_t *r)
{
    if (r->free_list) {
        xfer_t *x = r->free_list;
        r->free_list = x->next_free;
        return x;
    }
    if (r->n_all == r->cap_all) {
        size_t c = r->cap_all ? 2 * r->cap_all : 256;
        xfer_t **a = realloc(r->all, c * sizeof *a);
        if (!a) return NULL;
        r->all = a;
        r->cap_all = c;
    }
    xfer_t *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    x->run = r;
    CURL *e = x->easy;
    const long timeout_ms = (long)(r->o->timeout_s * 1e3);
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    }
    r->all[r->n_all++] = x;
    return x;
}

/* Start it (takes the item). */
static void xfer_start(run_t *r, rb_item_t *it)
{
    xfer_t *x = xfer_get(r);
    if (!x) {
        rb_item_free(it);
        r->st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory for a request");
        return;
    }
    x->item = *it;
    memset(it, 0, sizeof *it);
    rb_sse_reset(&x->sse, r->o->api);
    x->code = 0;
    x->t_last_write = 0;
    x->errbuf[0] = 0;
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->item.body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->item.body_len);
    x->t_send = mono_s();
    CURLMcode mc = curl_multi_add_handle(r->multi, x->easy);
    if (mc != CURLM_OK) {
        rb_item_free(&x->item);
        x->next_free = r->free_list;
        r->free_list = x;
        r->st = rt_error_set(RT_ERR_INTERNAL, "rotor-bench: curl_multi_add_handle: %s",
                             curl_multi_strerror(mc));
        return;
    }
    x->active = true;
    if (x->item.warmup) r->warm_issued++;
    if (++r->in_flight > r->res->max_in_flight) r->res->max_in_flight = r->in_flight;
}

/* The request ended with curl's result cc: classify, record, recycle. */
static void xfer_finish(run_t *r, xfer_t *x, CURLcode cc)
{
    const double now = mono_s();
    const rb_run_opts_t *o = r->o;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    rb_err_kind_t err = RB_ERR_NONE;
    char msg[128] = "";
    if (cc != CURLE_OK) {
        if (cc == CURLE_OPERATION_TIMEDOUT) err = RB_ERR_TIMEOUT;
        else if (code == 0) err = RB_ERR_CONNECT;
        else if (code >= 500) err = RB_ERR_HTTP_5XX;
        else if (code >= 400) err = RB_ERR_HTTP_4XX;
        else err = RB_ERR_INCOMPLETE;
        snprintf(msg, sizeof msg, "%.127s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
    } else if (code >= 400) {
        err = code >= 500 ? RB_ERR_HTTP_5XX : RB_ERR_HTTP_4XX;
        char m[100];
        rb_sse_error_message(&x->sse, m, sizeof m);
        snprintf(msg, sizeof msg, "HTTP %ld: %s", code, m);
    } else if (code < 200 || code >= 300) {
        err = RB_ERR_STREAM;
        snprintf(msg, sizeof msg, "unexpected HTTP status %ld", code);
    } else if (o->stream) {
        rb_sse_finish(&x->sse, now);
        if (x->sse.failed) err = RB_ERR_STREAM;
        else if (!x->sse.done) err = RB_ERR_INCOMPLETE;
        snprintf(msg, sizeof msg, "%.127s", x->sse.failed ? x->sse.err : "stream ended without [DONE]");
    } else {
        rb_sse_parse_full(&x->sse);
        if (x->sse.failed) err = RB_ERR_STREAM;
        snprintf(msg, sizeof msg, "%.127s", x->sse.err);
    }

    const bool ok = err == RB_ERR_NONE;
    rb_req_t q = {
        .index = x->item.index,
        .session = x->item.session,
        .turn = x->item.turn,
        .warmup = x->item.warmup,
        .streamed = o->stream,
        .t_send = x->t_send,
        .t_first = NAN,
        .t_end = now,
        .input_tokens = x->sse.usage_prompt >= 0 ? x->sse.usage_prompt : x->item.input_tokens,
        .output_tokens = x->sse.usage_completion >= 0 ? x->sse.usage_completion : (int32_t)x->sse.n_tok,
        .http_status = (int32_t)code,
        .err = err,
    };
    if (o->stream) {
        if (x->sse.n_tok) q.t_first = x->sse.tok[0];
        if (x->sse.t_last > 0) q.t_end = x->sse.t_last;
    } else if (ok) {
        if (x->t_last_write > 0) q.t_end = x->t_last_write;
        q.t_first = q.t_end; /* one response: TTFT = latency */
    }
    if (!ok && !r->res->err_example[err][0]) snprintf(r->res->err_example[err], sizeof r->res->err_example[err], "%.127s", msg);
    if (q.output_tokens > 0) r->res->tokens_received += (uint64_t)q.output_tokens;
    rt_status_t st = rb_records_add(&r->res->rec, &q, x->sse.tok, o->stream ? x->sse.n_tok : 0);
    if (st && !r->st) r->st = st;

    if (x->item.warmup) r->warm_done++;
    else if (!r->warmup) {
        r->done++;
        if (!ok) r->errors++;
    }
    rb_workload_complete(r->w, &x->item, ok, ok ? (x->sse.text ? x->sse.text : "") : NULL, now - r->t_phase);

    curl_multi_remove_handle(r->multi, x->easy);
    x->active = false;
    rb_item_free(&x->item);
    x->next_free = r->free_list;
    r->free_list = x;
    r->in_flight--;
}

/* ---- scheduling ------------------------------------------------------- */

static double next_gap(run_t *r)
{
    const rb_run_opts_t *o = r->o;
    if (!o->poisson) return 1.0 / o->rate;
    return -log(1.0 - rt_rng_uniform(&r->rng)) / o->rate;
}

static void start_measured_phase(run_t *r, double now)
{
    r->warmup = false;
    r->t_phase = now;
    r->res->start_wall = hlog_now();
    r->rate_next = 0;
}

/* Start every request that may start now; *wake is set to the next time
 * something falls due (INFINITY: only a completion can change things). */
static void issue(run_t *r, double now, double *wake)
{
    const rb_run_opts_t *o = r->o;
    *wake = INFINITY;
    while (!r->st && !r->stop) {
        if (g_interrupted) {
            r->stop = true;
            break;
        }
        if (r->warmup && (r->warm_issued >= o->n_warmup || r->have_held)) {
            if (r->in_flight > 0) return; /* the measured phase waits for the warmup */
            start_measured_phase(r, now);
        }
        if (!r->warmup && o->duration_s > 0 && now - r->t_phase >= o->duration_s) {
            r->stop = true;
            break;
        }
        if (r->in_flight >= r->limit) return;
        if (o->mode == RB_MODE_RATE && now - r->t_phase < r->rate_next) {
            *wake = r->t_phase + r->rate_next;
            return;
        }
        rb_item_t it;
        if (r->have_held) {
            it = r->held;
            r->have_held = false;
        } else {
            double next_at = INFINITY;
            if (!rb_workload_next(r->w, now - r->t_phase, &it, &next_at)) {
                *wake = r->t_phase + next_at;
                return;
            }
            if (r->warmup && !it.warmup) { /* fewer warmup items than asked */
                r->held = it;
                r->have_held = true;
                continue;
            }
        }
        xfer_start(r, &it);
        if (o->mode == RB_MODE_RATE) r->rate_next += next_gap(r);
    }
}

static void show_progress(run_t *r, double now)
{
    const rb_run_opts_t *o = r->o;
    rb_progress_t p = {
        .warmup = r->warmup,
        .done = r->warmup ? r->warm_done : r->done,
        .total = r->warmup ? o->n_warmup : o->total,
        .errors = r->errors,
        .in_flight = r->in_flight,
        .elapsed_s = now - r->t_phase,
        .duration_s = r->warmup ? 0 : o->duration_s,
    };
    rb_output_progress(stderr, &p);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "rotor-bench: warning: could not raise the open-file limit\n");
    }
}

/* ---- the run ---------------------------------------------------------- */

static void to_phase_time(rb_run_result_t *res, double t0)
{
    for (size_t i = 0; i < res->rec.n_req; i++) {
        rb_req_t *q = &res->rec.req[i];
        q->t_send -= t0;
        q->t_first -= t0; /* NAN stays NAN */
        q->t_end -= t0;
    }
    for (size_t i = 0; i < res->rec.n_tok; i++) res->rec.tok[i] -= t0;
}

rt_status_t rb_run(const rb_run_opts_t *o, rb_workload_t *w, rb_run_result_t *out)
{
    memset(out, 0, sizeof *out);
    run_t r = {.o = o, .w = w, .res = out, .warmup = o->n_warmup > 0};
    rt_rng_seed(&r.rng, o->seed ^ 0x72622d6172726976ull); /* "rb-arriv" */
    switch (o->mode) {
    case RB_MODE_CONCURRENCY: r.limit = (size_t)(o->concurrency > 0 ? o->concurrency : 1); break;
    default: r.limit = (size_t)(o->max_conns > 0 ? o->max_conns : 1); break;
    }
    if (o->mode == RB_MODE_RATE && !(o->rate > 0))
        return rt_error_set(RT_ERR_INVALID, "rotor-bench: --rate must be > 0");
    if (!rb_run_endpoint_url(o->url, o->api, r.url, sizeof r.url))
        return rt_error_set(RT_ERR_INVALID, "rotor-bench: URL too long");
    raise_nofile();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return rt_error_set(RT_ERR_INTERNAL, "rotor-bench: curl_global_init failed");

    rt_status_t st = RT_OK;
    r.multi = curl_multi_init();
    r.hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    r.hdrs = r.hdrs ? curl_slist_append(r.hdrs, "Expect:") : NULL;
    if (r.hdrs && o->stream) r.hdrs = curl_slist_append(r.hdrs, "Accept: text/event-stream");
    if (r.hdrs && o->api_key && o->api_key[0]) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        r.hdrs = curl_slist_append(r.hdrs, auth);
    }
    /* timerfd-backed timers: epoll_wait's millisecond timeout would send a
     * scheduled request up to 1 ms late (trace replay keeps the trace's times) */
    struct event_config *ecfg = event_config_new();
    if (ecfg) event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    r.base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    if (ecfg) event_config_free(ecfg);
    r.curl_timer = r.base ? evtimer_new(r.base, on_curl_timer, &r) : NULL;
    r.wake_timer = r.base ? evtimer_new(r.base, on_wake, &r) : NULL;
    if (!r.multi || !r.hdrs || !r.curl_timer || !r.wake_timer) {
        st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: curl or libevent setup failed");
        goto out;
    }
    curl_multi_setopt(r.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(r.multi, CURLMOPT_SOCKETDATA, &r);
    curl_multi_setopt(r.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(r.multi, CURLMOPT_TIMERDATA, &r);
    const long conns = (long)((int)r.limit > o->max_conns ? (int)r.limit : o->max_conns);
    curl_multi_setopt(r.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, conns);
    curl_multi_setopt(r.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second ^C kills */
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);

    const double cpu0 = cpu_s();
    r.t_phase = mono_s();
    out->start_wall = hlog_now();
    double t_progress = r.t_phase;
    for (;;) {
        double now = mono_s(), wake;
        issue(&r, now, &wake);
        if (r.st) break;
        if (r.in_flight == 0) {
            if (r.stop || (rb_workload_exhausted(w) && !r.have_held)) break;
            if (!isfinite(wake)) {
                fprintf(stderr, "\nrotor-bench: warning: the workload waits on nothing; stopping\n");
                break;
            }
        }
        /* sleep until a socket is ready, curl's timer fires, or wake */
        double until = wake - now;
        if (o->progress && t_progress - now < until) until = t_progress - now;
        /* at most 0.5 s, so that a ^C is seen while nothing happens */
        if (until > 0.5) until = 0.5;
        if (until < 0) until = 0;
        const long us = (long)ceil(until * 1e6);
        struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
        evtimer_add(r.wake_timer, &tv); /* re-adding reschedules it */
        if (event_base_loop(r.base, EVLOOP_ONCE) < 0) {
            r.st = rt_error_set(RT_ERR_INTERNAL, "rotor-bench: event_base_loop failed");
            break;
        }
        int left = 0;
        CURLMsg *m;
        while ((m = curl_multi_info_read(r.multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            xfer_t *x = NULL;
            CURL *e = m->easy_handle;
            CURLcode cc = m->data.result;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
            xfer_finish(&r, x, cc);
        }
        now = mono_s();
        if (o->progress && now >= t_progress) {
            show_progress(&r, now);
            t_progress = now + RB_PROGRESS_S;
        }
    }
    out->cpu_s = cpu_s() - cpu0;
    if (o->progress) {
        show_progress(&r, mono_s());
        if (isatty(STDERR_FILENO)) fputc('\n', stderr);
    }
    sigaction(SIGINT, &old_sa, NULL);
    out->interrupted = g_interrupted != 0;
    if (g_interrupted) fprintf(stderr, "rotor-bench: interrupted: results cover the requests that ended\n");
    /* a run that never left warmup keeps the clock it started with */
    to_phase_time(out, r.t_phase);
    st = r.st;
out:
    if (r.have_held) rb_item_free(&r.held);
    for (size_t i = 0; i < r.n_all; i++) {
        xfer_t *x = r.all[i];
        if (x->active) {
            curl_multi_remove_handle(r.multi, x->easy);
            rb_item_free(&x->item);
        }
        curl_easy_cleanup(x->easy);
        rb_sse_free(&x->sse);
        free(x);
    }
    free(r.all);
    curl_slist_free_all(r.hdrs);
    if (r.multi) curl_multi_cleanup(r.multi); /* removes the sockets' events */
    if (r.curl_timer) event_free(r.curl_timer);
    if (r.wake_timer) event_free(r.wake_timer);
    if (r.base) event_base_free(r.base);
    curl_global_cleanup();
    if (st) rb_run_result_free(out);
    return st;
}

void rb_run_result_free(rb_run_result_t *r) { rb_records_free(&r->rec); }
