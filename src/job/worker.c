/*
 * worker.c - a worker rank's loop: take requests and cancellations from
 * rank 0, step the engine while it has work, send each step's events and
 * stats back (a heartbeat when idle), stop on SHUTDOWN.
 */
#include <mpi.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job_impl.h"
#include "rotor/ctrl.h"
#include "rotor/hlog.h"
#include "rotor/log.h"

typedef struct {
    engine_t *engine;
    engine_event_t *events; /* (cap) step output, then sent as is */
    size_t cap;
    bp_event_t *kv;         /* (CTRL_MAX_KV_EVENTS) KV events drained for a message */
    uint8_t *msg;           /* ctrl_events_t + cap events + CTRL_MAX_KV_EVENTS KV events */
    uint8_t *rx;            /* receive buffer, rx_cap bytes */
    size_t rx_cap;
    double last_sent;
    double heartbeat_s;
    int shutdown;
} worker_t;

/* stats: the step's (stepped) or the engine's current ones (NULL: a
 * heartbeat or a refusal). The KV events queued since the last message ride along;
 * if more are queued than one message takes, further messages carry them
 * (with the engine's current stats). */
static void send_events(worker_t *w, const engine_event_t *ev, size_t n, const engine_step_stats_t *stats,
                        bool stepped)
{
    for (bool first = true;; first = false) {
        const size_t n_kv = engine_kv_events_drain(w->engine, w->kv, CTRL_MAX_KV_EVENTS);
        if (!first && n_kv == 0) return;
        ctrl_events_t h = {.n_events = first ? (int32_t)n : 0, .n_kv_events = (int32_t)n_kv, .t_sent = hlog_now(),
                           .stepped = first && stepped};
        if (first && stats) h.stats = *stats;
        else engine_stats(w->engine, &h.stats);
        const size_t ev_bytes = (size_t)h.n_events * sizeof *ev;
        memcpy(w->msg, &h, sizeof h);
        if (ev_bytes) memcpy(w->msg + sizeof h, ev, ev_bytes);
        if (n_kv) memcpy(w->msg + sizeof h + ev_bytes, w->kv, n_kv * sizeof *w->kv);
        MPI_Send(w->msg, (int)(sizeof h + ev_bytes + n_kv * sizeof *w->kv), MPI_BYTE, 0, CTRL_TAG_EVENTS,
                 MPI_COMM_WORLD);
        w->last_sent = h.t_sent;
        if (n_kv < CTRL_MAX_KV_EVENTS) return;
    }
}

/* A request the engine refused: answer with an ERROR event at once. */
static void refuse(worker_t *w, uint64_t id, rt_status_t st)
{
    engine_event_t ev = {.kind = ENGINE_EV_ERROR, .request_id = id, .status = st};
    RT_LOG_WARN("request %llu refused: %s", (unsigned long long)id, rt_error_msg());
    send_events(w, &ev, 1, NULL, false);
}

/* Receive everything rank 0 has sent; returns the number of messages. */
static int poll_inbox(worker_t *w)
{
    int n = 0, count, from, tag;
    for (; ctrl_try_recv(0, &w->rx, &w->rx_cap, &count, &from, &tag); n++) {
        switch (tag) {
        case CTRL_TAG_REQUEST: {
            engine_request_t r;
            rt_status_t st = ctrl_request_unpack(w->rx, (size_t)count, &r);
            if (!st) st = engine_add_request(w->engine, &r);
            if (st) {
                uint64_t id = 0; /* ctrl_request_t starts with it */
                if ((size_t)count >= sizeof id) memcpy(&id, w->rx, sizeof id);
                refuse(w, id, st);
            }
            break;
        }
        case CTRL_TAG_CANCEL: {
            uint64_t id;
            if (count == sizeof id) {
                memcpy(&id, w->rx, sizeof id);
                engine_cancel(w->engine, id); /* unknown: already finished */
            }
            break;
        }
        case CTRL_TAG_SHUTDOWN: w->shutdown = 1; break;
        default: RT_LOG_WARN("worker: unexpected message tag %d from rank 0", tag); break;
        }
    }
    return n;
}

static void nap(double s)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(s * 1e9)};
    nanosleep(&ts, NULL);
}

int job_worker_main(const cfg_t *cfg, job_role_t role)
{
    engine_config_t ec;
    rt_status_t st = engine_config_from_cfg(cfg, NULL, &ec);
    worker_t w = {.heartbeat_s = cfg_float(cfg, "job:heartbeat_interval_s")};
    if (!st) st = engine_create(&ec, &w.engine);
    if (st) {
        RT_LOG_ERROR("engine: %s", rt_error_msg());
        return 1;
    }
    /* 2 x max_num_seqs is enough (engine.h); the rest lets one step also end
     * every cancelled request (up to 4 x max_num_seqs) */
    w.cap = 6 * (size_t)ec.max_num_seqs + 16;
    w.events = calloc(w.cap, sizeof *w.events);
    w.kv = malloc(CTRL_MAX_KV_EVENTS * sizeof *w.kv);
    w.msg = malloc(sizeof(ctrl_events_t) + w.cap * sizeof(engine_event_t) + CTRL_MAX_KV_EVENTS * sizeof *w.kv);
    w.rx_cap = 1 << 16;
    w.rx = malloc(w.rx_cap);
    if (!w.events || !w.kv || !w.msg || !w.rx) RT_PANIC("worker: out of memory");

    ctrl_hello_t hello = {.n_vocab = engine_n_vocab(w.engine), .max_num_seqs = ec.max_num_seqs, .role = (int32_t)role};
    engine_step_stats_t stats0 = {0};
    engine_stats(w.engine, &stats0);
    hello.n_blocks = stats0.blocks_total;
    hello.n_ctx = engine_max_model_len(w.engine);
    MPI_Send(&hello, sizeof hello, MPI_BYTE, 0, CTRL_TAG_HELLO, MPI_COMM_WORLD);
    RT_LOG_INFO("worker up: %s, %d KV blocks of %d tokens, max %d sequences", ec.model_path, hello.n_blocks,
                ec.block_size, ec.max_num_seqs);
    w.last_sent = hlog_now();

    /* idle: poll every 20 us doubling to 200 us, so a new request waits at
     * most ~0.2 ms (a poll costs ~1 us of CPU) */
    double idle_nap = 20e-6;
    while (!(w.shutdown && !engine_has_work(w.engine))) {
        /* after SHUTDOWN, rank 0 has drained the front end and sent CANCELs
         * for whatever was left: the loop ends once those are finished */
        int got = poll_inbox(&w);
        if (engine_has_work(w.engine)) {
            size_t n = 0;
            engine_step_stats_t stats;
            st = engine_step(w.engine, w.events, w.cap, &n, &stats);
            if (st) RT_LOG_ERROR("engine step: %s", rt_error_msg());
            send_events(&w, w.events, n, &stats, true);
            idle_nap = 20e-6;
            continue;
        }
        if (hlog_now() - w.last_sent >= w.heartbeat_s) {
            engine_step_stats_t stats;
            engine_stats(w.engine, &stats);
            send_events(&w, NULL, 0, &stats, false);
        }
        if (!got) {
            nap(idle_nap);
            if (idle_nap < 200e-6) idle_nap *= 2;
        } else {
            idle_nap = 20e-6;
        }
    }
    MPI_Send(NULL, 0, MPI_BYTE, 0, CTRL_TAG_BYE, MPI_COMM_WORLD);
    RT_LOG_INFO("worker stopped");
    engine_destroy(w.engine);
    free(w.events);
    free(w.kv);
    free(w.msg);
    free(w.rx);
    return 0;
}
