/*
 * hlog.c - the job log's queue and writer thread (API in rotor/hlog.h, file
 * layout in hlog_h5.c).
 *
 * The append calls copy records into per-kind growable arrays under one
 * mutex and return: no I/O, and no allocation once the arrays have grown to
 * their working size. The queue holds at most cfg->queue_records records of
 * all kinds together; a record (or a token batch, all or nothing) that does
 * not fit is dropped and counted. The writer thread sleeps on a condition
 * variable until the queue is half full (capped at HLOG_WAKE_MAX records),
 * the flush timer fires or the log is closed; then it swaps the producer's
 * arrays with its own empty ones, appends them to the file outside the lock
 * and, when the flush interval has passed, calls H5Fflush. So a record is in
 * the file at most one flush interval (plus the time to write it) after it
 * was queued, idle or not. The writer thread is the only thread that calls
 * HDF5: it creates the file (hlog_open waits for the result) and closes it.
 */
#include "rotor/hlog.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hlog/hlog_h5.h"
#include "rotor/log.h"

#define HLOG_DEFAULT_FLUSH_S 1.0
#define HLOG_DEFAULT_QUEUE ((size_t)1 << 20)
#define HLOG_WAKE_MAX ((size_t)65536)

/* A growable array of records of one kind; n and cap count records. */
typedef struct {
    char *data;
    size_t n, cap;
} hlog_buf_t;

struct hlog {
    pthread_mutex_t mu;
    pthread_cond_t wake;   /* writer: queue over wake_at, stop, or timer */
    pthread_cond_t opened; /* hlog_open: the writer created the file (or failed) */
    pthread_t thread;

    /* under mu */
    hlog_buf_t q[HLOG_KIND_COUNT]; /* queued records, producer side */
    size_t queued;                 /* records in q, all kinds */
    bool stop;                     /* hlog_close: drain and exit */
    bool open_done;
    rt_status_t open_st;

    /* set at open, read-only afterwards */
    size_t capacity, wake_at;
    double flush_interval_s;
    char *path; /* owned copies, freed at close */
    char *model, *config_text, *roles;
    double start_time;

    _Atomic uint64_t dropped;

    /* the writer's; read by hlog_open / hlog_close after open_done / join */
    rt_status_t write_st;
    char err[512]; /* message of open_st or write_st */
};

double hlog_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct timespec mono_ts(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- producer side --------------------------------------------------- */

/* Room for n records of kind k at the end of the queue, or NULL (dropped
 * and counted). Called with mu held. */
static void *reserve(hlog_t *h, hlog_kind_t k, size_t n)
{
    if (h->stop || n > h->capacity - h->queued) goto drop;
    hlog_buf_t *b = &h->q[k];
    size_t size = hlog_kind_size(k);
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->data, cap * size);
        if (!p) goto drop;
        b->data = p;
        b->cap = cap;
    }
    void *at = b->data + b->n * size;
    b->n += n;
    size_t before = h->queued;
    h->queued += n;
    if (before < h->wake_at && h->queued >= h->wake_at) pthread_cond_signal(&h->wake);
    return at;
drop:
    atomic_fetch_add(&h->dropped, n);
    return NULL;
}

/* NUL-terminate a fixed-length string field and clear the bytes after it. */
static void fix_str(char *s, size_t n)
{
    size_t len = strnlen(s, n - 1);
    memset(s + len, 0, n - len);
}

void hlog_request(hlog_t *h, const hlog_request_t *r)
{
    pthread_mutex_lock(&h->mu);
    hlog_request_t *d = reserve(h, HLOG_KIND_REQUEST, 1);
    if (d) {
        *d = *r;
        fix_str(d->finish_reason, sizeof d->finish_reason);
        fix_str(d->error, sizeof d->error);
    }
    pthread_mutex_unlock(&h->mu);
}

void hlog_tokens(hlog_t *h, uint64_t request_id, int32_t first_index, const double *t, size_t n)
{
    if (n == 0) return;
    pthread_mutex_lock(&h->mu);
    hlog_token_rec_t *d = reserve(h, HLOG_KIND_TOKEN, n);
    for (size_t i = 0; d && i < n; i++)
        d[i] = (hlog_token_rec_t){
            .request_id = request_id, .index = first_index + (int32_t)i, .t = t[i]};
    pthread_mutex_unlock(&h->mu);
}

void hlog_step(hlog_t *h, const hlog_step_t *s)
{
    pthread_mutex_lock(&h->mu);
    hlog_step_t *d = reserve(h, HLOG_KIND_STEP, 1);
    if (d) *d = *s;
    pthread_mutex_unlock(&h->mu);
}

void hlog_worker(hlog_t *h, const hlog_worker_t *w)
{
    pthread_mutex_lock(&h->mu);
    hlog_worker_t *d = reserve(h, HLOG_KIND_WORKER, 1);
    if (d) {
        *d = *w;
        fix_str(d->kind, sizeof d->kind);
        fix_str(d->role, sizeof d->role);
        fix_str(d->detail, sizeof d->detail);
    }
    pthread_mutex_unlock(&h->mu);
}

void hlog_kv_events(hlog_t *h, const hlog_kv_event_t *e, size_t n)
{
    if (n == 0) return;
    pthread_mutex_lock(&h->mu);
    hlog_kv_event_t *d = reserve(h, HLOG_KIND_KV_EVENT, n);
    for (size_t i = 0; d && i < n; i++) {
        d[i] = e[i];
        fix_str(d[i].kind, sizeof d[i].kind);
    }
    pthread_mutex_unlock(&h->mu);
}

void hlog_transfer(hlog_t *h, const hlog_transfer_t *t)
{
    pthread_mutex_lock(&h->mu);
    hlog_transfer_t *d = reserve(h, HLOG_KIND_TRANSFER, 1);
    if (d) *d = *t;
    pthread_mutex_unlock(&h->mu);
}

void hlog_planner(hlog_t *h, const hlog_planner_t *p)
{
    pthread_mutex_lock(&h->mu);
    hlog_planner_t *d = reserve(h, HLOG_KIND_PLANNER, 1);
    if (d) {
        *d = *p;
        fix_str(d->action, sizeof d->action);
        fix_str(d->why, sizeof d->why);
    }
    pthread_mutex_unlock(&h->mu);
}

uint64_t hlog_dropped(const hlog_t *h) { return atomic_load(&h->dropped); }

/* ---- writer thread --------------------------------------------------- */

/* Keep the first write error (message from this thread's rt_error_msg). */
static void write_failed(hlog_t *h, rt_status_t st)
{
    if (h->write_st) return;
    h->write_st = st;
    snprintf(h->err, sizeof h->err, "%s", rt_error_msg());
    RT_LOG_ERROR("%s; the HDF5 log stops here, later records are dropped", h->err);
}

static void *writer_main(void *arg)
{
    hlog_t *h = arg;
    hlog_h5_meta_t meta = {.model = h->model,
                           .config_text = h->config_text,
                           .roles = h->roles,
                           .start_time = h->start_time};
    hlog_h5_t *f = NULL;
    rt_status_t st = hlog_h5_create(h->path, &meta, &f);
    pthread_mutex_lock(&h->mu);
    h->open_st = st;
    if (st) snprintf(h->err, sizeof h->err, "%s", rt_error_msg());
    h->open_done = true;
    pthread_cond_signal(&h->opened);
    if (st) {
        pthread_mutex_unlock(&h->mu);
        return NULL;
    }

    hlog_buf_t mine[HLOG_KIND_COUNT] = {{0}};
    double next_flush = mono_now() + h->flush_interval_s;
    bool dirty = false;
    uint64_t dropped_seen = 0;
    for (;;) { /* mu held here */
        while (!h->stop && h->queued < h->wake_at && mono_now() < next_flush) {
            struct timespec ts = mono_ts(next_flush);
            pthread_cond_timedwait(&h->wake, &h->mu, &ts);
        }
        bool stopping = h->stop;
        for (int k = 0; k < HLOG_KIND_COUNT; k++) {
            hlog_buf_t t = h->q[k];
            h->q[k] = mine[k]; /* empty, keeps its capacity */
            mine[k] = t;
        }
        h->queued = 0;
        pthread_mutex_unlock(&h->mu);

        for (int k = 0; k < HLOG_KIND_COUNT; k++) {
            if (!mine[k].n) continue;
            if (!h->write_st) {
                st = hlog_h5_append(f, (hlog_kind_t)k, mine[k].data, mine[k].n);
                if (st) write_failed(h, st);
                dirty = true;
            }
            if (h->write_st) atomic_fetch_add(&h->dropped, mine[k].n);
            mine[k].n = 0;
        }
        double now = mono_now();
        if (now >= next_flush || stopping) {
            if (dirty && !h->write_st && (st = hlog_h5_flush(f))) write_failed(h, st);
            dirty = false;
            next_flush = now + h->flush_interval_s;
            uint64_t d = atomic_load(&h->dropped);
            if (d != dropped_seen && !h->write_st)
                RT_LOG_WARN("hlog: queue full (%zu records), %llu records dropped so far",
                            h->capacity, (unsigned long long)d);
            dropped_seen = d;
        }
        if (stopping) break;
        pthread_mutex_lock(&h->mu);
    }
    for (int k = 0; k < HLOG_KIND_COUNT; k++) free(mine[k].data);
    st = hlog_h5_close(f, atomic_load(&h->dropped), hlog_now());
    if (st && !h->write_st) {
        h->write_st = st;
        snprintf(h->err, sizeof h->err, "%s", rt_error_msg());
    }
    return NULL;
}

/* ---- open / close ---------------------------------------------------- */

static char *dup_or_null(const char *s, bool *fail)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *fail = true;
    return d;
}

static void free_handle(hlog_t *h)
{
    for (int k = 0; k < HLOG_KIND_COUNT; k++) free(h->q[k].data);
    free(h->path);
    free(h->model);
    free(h->config_text);
    free(h->roles);
    pthread_cond_destroy(&h->opened);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

rt_status_t hlog_open(const char *path, const hlog_config_t *cfg, const char *meta_model,
                      const char *meta_config_text, const char *meta_roles, hlog_t **out)
{
    if (!path || !*path || !out) return rt_error_set(RT_ERR_INVALID, "hlog_open: no path");
    double flush_s = cfg ? cfg->flush_interval_s : 0;
    size_t cap = cfg ? cfg->queue_records : 0;
    if (!(flush_s >= 0) || !isfinite(flush_s))
        return rt_error_set(RT_ERR_RANGE, "hlog: flush interval %g s is not >= 0", flush_s);
    if (flush_s == 0) flush_s = HLOG_DEFAULT_FLUSH_S;
    if (cap == 0) cap = HLOG_DEFAULT_QUEUE;

    hlog_t *h = calloc(1, sizeof *h);
    if (!h) return rt_error_set(RT_ERR_NOMEM, "hlog: out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->wake, &ca);
    pthread_cond_init(&h->opened, NULL);
    pthread_condattr_destroy(&ca);
    h->capacity = cap;
    h->wake_at = cap / 2 < HLOG_WAKE_MAX ? cap / 2 : HLOG_WAKE_MAX;
    if (h->wake_at == 0) h->wake_at = 1;
    h->flush_interval_s = flush_s;
    h->start_time = hlog_now();
    bool fail = false;
    h->path = dup_or_null(path, &fail);
    h->model = dup_or_null(meta_model, &fail);
    h->config_text = dup_or_null(meta_config_text, &fail);
    h->roles = dup_or_null(meta_roles, &fail);
    if (fail) {
        free_handle(h);
        return rt_error_set(RT_ERR_NOMEM, "hlog: out of memory");
    }
    if (pthread_create(&h->thread, NULL, writer_main, h) != 0) {
        free_handle(h);
        return rt_error_set(RT_ERR_NOMEM, "hlog: cannot start the writer thread");
    }
    pthread_mutex_lock(&h->mu);
    while (!h->open_done) pthread_cond_wait(&h->opened, &h->mu);
    rt_status_t st = h->open_st;
    pthread_mutex_unlock(&h->mu);
    if (st) {
        pthread_join(h->thread, NULL);
        rt_error_set(st, "%s", h->err);
        free_handle(h);
        return st;
    }
    *out = h;
    return RT_OK;
}

rt_status_t hlog_close(hlog_t *h)
{
    if (!h) return RT_OK;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    uint64_t dropped = atomic_load(&h->dropped);
    if (dropped)
        RT_LOG_WARN("hlog: %llu records dropped (%s)", (unsigned long long)dropped, h->path);
    rt_status_t st = h->write_st;
    if (st) rt_error_set(st, "%s", h->err);
    free_handle(h);
    return st;
}
