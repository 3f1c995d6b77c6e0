/*
 * worker.c - a worker rank's loop: take requests and cancellations from
 * rank 0, step the engine while it has work, send each step's events and
 * stats back (a heartbeat when idle), stop on SHUTDOWN.
 *
 * Disaggregation (ctrl.h): a PREFILL from rank 0 runs the prompt's full
 * blocks prefill_only; when the engine finishes it, the blocks are exported
 * and sent with the request to the decode rank (transfer.h). A KV message
 * from a prefill rank is imported into the engine's prefix cache and its
 * request queued: admission then finds the prompt cached but for its last
 * block. A CANCEL for a request not here yet is remembered (a hand-off may
 * still be on its way) and ends it when it comes.
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
#include "rotor/transfer.h"

/* a prefill_only request in the engine, to hand off when it finishes */
typedef struct {
    uint64_t id;
    int32_t peer;    /* the decode rank */
    uint8_t *req;    /* (req_len) its REQUEST message as rank 0 sent it, owned */
    size_t req_len;
} handoff_t;

/* how long a prefill rank waits in MPI for a hand-off to leave before it
 * computes again (transfer.h, xfer_flush) */
#define HANDOFF_FLUSH_S 0.1

/* a handed-off request waiting for its modelled transfer to end (sim) */
typedef struct {
    double ready;  /* CLOCK_REALTIME when its KV would have arrived */
    uint64_t id;
    uint8_t *req;  /* (req_len) its REQUEST message, owned */
    size_t req_len;
} deferred_t;

/* CANCELs for requests this worker did not hold, most recent last */
#define WORKER_TOMBSTONES 256

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
    int block_size;
    xfer_t *xfer;           /* hand-offs to decode ranks */
    handoff_t *handoffs;    /* (n_handoffs, cap_handoffs) owned */
    size_t n_handoffs, cap_handoffs;
    deferred_t *deferred;   /* (n_deferred, cap_deferred) owned */
    size_t n_deferred, cap_deferred;
    uint64_t tombstones[WORKER_TOMBSTONES];
    size_t n_tombstones;    /* ever; the ring holds the last WORKER_TOMBSTONES */
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

static uint64_t leading_id(const uint8_t *buf, int count)
{
    uint64_t id = 0; /* ctrl_request_t and ctrl_kv_t start with it */
    if ((size_t)count >= sizeof id) memcpy(&id, buf, sizeof id);
    return id;
}

static bool tombstoned(const worker_t *w, uint64_t id)
{
    const size_t n = w->n_tombstones < WORKER_TOMBSTONES ? w->n_tombstones : WORKER_TOMBSTONES;
    for (size_t i = 0; i < n; i++)
        if (w->tombstones[i] == id) return true;
    return false;
}

/* PREFILL: the prompt's blocks a decode rank can take from its cache (all
 * full ones but the one holding the last token), prefill_only */
static void on_prefill(worker_t *w, int count)
{
    engine_request_t r = {0};
    int32_t peer = -1;
    rt_status_t st = ctrl_request_unpack(w->rx, (size_t)count, &r, &peer);
    const size_t n_full = r.n_prompt ? (r.n_prompt - 1) / (size_t)w->block_size : 0;
    if (!st && (peer <= 0 || n_full == 0))
        st = rt_error_set(RT_ERR_INVALID, "PREFILL of %zu tokens for rank %d: nothing to hand off", r.n_prompt, peer);
    if (!st && w->n_handoffs == w->cap_handoffs) {
        size_t cap = w->cap_handoffs ? 2 * w->cap_handoffs : 16;
        handoff_t *h = realloc(w->handoffs, cap * sizeof *h);
        if (!h) st = rt_error_set(RT_ERR_NOMEM, "worker: out of memory");
        else {
            w->handoffs = h;
            w->cap_handoffs = cap;
        }
    }
    uint8_t *copy = st ? NULL : malloc((size_t)count);
    if (!st && !copy) st = rt_error_set(RT_ERR_NOMEM, "worker: out of memory");
    if (!st) {
        memcpy(copy, w->rx, (size_t)count);
        engine_request_t p = r;
        p.n_prompt = n_full * (size_t)w->block_size;
        p.prefill_only = true;
        p.max_tokens = 1;
        p.n_stop_tokens = 0;
        p.n_logit_bias = 0;
        p.top_logprobs = 0;
        p.logprobs = false;
        st = engine_add_request(w->engine, &p);
    }
    if (st) {
        free(copy);
        refuse(w, leading_id(w->rx, count), st);
        return;
    }
    w->handoffs[w->n_handoffs++] = (handoff_t){.id = r.id, .peer = peer, .req = copy, .req_len = (size_t)count};
}

/* The engine finished a prefill_only request: send its blocks and the
 * request to the decode rank; any other end just forgets it (rank 0 learns
 * of it from the event and tells the client) */
static void on_prefill_finished(worker_t *w, const engine_event_t *ev)
{
    size_t i = 0;
    while (i < w->n_handoffs && w->handoffs[i].id != ev->request_id) i++;
    if (i == w->n_handoffs) return;
    handoff_t h = w->handoffs[i];
    w->handoffs[i] = w->handoffs[--w->n_handoffs];
    if (ev->kind != ENGINE_EV_FINISH || ev->finish != ENGINE_FINISH_PREFILL) {
        free(h.req);
        return;
    }
    engine_request_t r;
    if (ctrl_request_unpack(h.req, h.req_len, &r, NULL)) RT_PANIC("worker: a REQUEST it unpacked before");
    const size_t bb = engine_kv_block_bytes(w->engine);
    size_t n_blocks = (r.n_prompt - 1) / (size_t)w->block_size;
    if (bb && n_blocks > (XFER_MAX_BYTES - sizeof(ctrl_kv_t) - h.req_len) / bb) /* the rest the decode rank computes */
        n_blocks = (XFER_MAX_BYTES - sizeof(ctrl_kv_t) - h.req_len) / bb;
    ctrl_kv_t k = {.id = h.id, .req_bytes = (int32_t)h.req_len, .block_bytes = (int64_t)bb,
                   .t_prefill_done = ev->t_prefill_done};
    uint8_t *buf = xfer_buffer(w->xfer, sizeof k + h.req_len + n_blocks * bb);
    if (!buf && n_blocks) { /* no room for the blocks: the decode rank computes them */
        n_blocks = 0;
        buf = xfer_buffer(w->xfer, sizeof k + h.req_len);
    }
    if (!buf) RT_PANIC("worker: out of memory for a %zu-byte hand-off", sizeof k + h.req_len);
    memcpy(buf + sizeof k, h.req, h.req_len);
    size_t n_out = 0;
    engine_kv_export(w->engine, r.prompt, n_blocks, buf + sizeof k + h.req_len, &n_out);
    k.n_blocks = (int32_t)n_out;
    k.t_sent = hlog_now();
    memcpy(buf, &k, sizeof k);
    if (xfer_send(w->xfer, h.peer, CTRL_TAG_KV, buf, sizeof k + h.req_len + n_out * bb))
        RT_PANIC("worker: hand-off to rank %d: %s", h.peer, rt_error_msg());
    free(h.req);
}

/* keep a request until ready; false if there is no room (it goes in now) */
static bool defer(worker_t *w, uint64_t id, double ready, const uint8_t *req, size_t len)
{
    if (w->n_deferred == w->cap_deferred) {
        size_t cap = w->cap_deferred ? 2 * w->cap_deferred : 16;
        deferred_t *d = realloc(w->deferred, cap * sizeof *d);
        if (!d) return false;
        w->deferred = d;
        w->cap_deferred = cap;
    }
    uint8_t *copy = malloc(len);
    if (!copy) return false;
    memcpy(copy, req, len);
    w->deferred[w->n_deferred++] = (deferred_t){.ready = ready, .id = id, .req = copy, .req_len = len};
    return true;
}

/* the deferred requests whose time has come join the engine (or end, if
 * cancelled meanwhile); returns how many */
static int admit_deferred(worker_t *w)
{
    int n = 0;
    const double now = hlog_now();
    for (size_t i = 0; i < w->n_deferred;) {
        deferred_t d = w->deferred[i];
        if (d.ready > now) {
            i++;
            continue;
        }
        w->deferred[i] = w->deferred[--w->n_deferred];
        engine_request_t r;
        rt_status_t st = ctrl_request_unpack(d.req, d.req_len, &r, NULL);
        if (!st && tombstoned(w, d.id)) {
            engine_event_t ev = {.kind = ENGINE_EV_FINISH, .request_id = d.id, .finish = ENGINE_FINISH_CANCELLED,
                                 .n_prompt = (int)r.n_prompt};
            send_events(w, &ev, 1, NULL, false);
        } else {
            if (!st) st = engine_add_request(w->engine, &r);
            if (st) refuse(w, d.id, st);
        }
        free(d.req);
        n++;
    }
    return n;
}

/* KV from a prefill rank (count bytes at msg: the control inbox's, or the
 * transfer's): import its blocks, queue its request, tell rank 0 */
static void on_kv(worker_t *w, int from, const uint8_t *msg, int count)
{
    const double t_received = hlog_now();
    ctrl_kv_t k;
    const uint64_t id = leading_id(msg, count);
    rt_status_t st = RT_OK;
    if ((size_t)count < sizeof k) st = rt_error_set(RT_ERR_FORMAT, "KV message of %d bytes", count);
    else memcpy(&k, msg, sizeof k);
    const size_t bb = engine_kv_block_bytes(w->engine);
    if (!st && (k.req_bytes <= 0 || k.n_blocks < 0 || (k.n_blocks && (size_t)k.block_bytes != bb) ||
                (size_t)count != sizeof k + (size_t)k.req_bytes + (size_t)k.n_blocks * (size_t)k.block_bytes))
        st = rt_error_set(RT_ERR_FORMAT, "KV message from rank %d: %d bytes do not match its header (%d blocks of "
                          "%lld bytes; this engine's are %zu)", from, count, k.n_blocks, (long long)k.block_bytes, bb);
    engine_request_t r;
    if (!st) st = ctrl_request_unpack(msg + sizeof k, (size_t)k.req_bytes, &r, NULL);
    if (!st && (size_t)k.n_blocks > r.n_prompt / (size_t)w->block_size)
        st = rt_error_set(RT_ERR_FORMAT, "KV message from rank %d: %d blocks for a prompt of %zu tokens", from,
                          k.n_blocks, r.n_prompt);
    if (st) {
        refuse(w, id, st);
        return;
    }
    if (tombstoned(w, id)) { /* cancelled while it was on its way */
        engine_event_t ev = {.kind = ENGINE_EV_FINISH, .request_id = id, .finish = ENGINE_FINISH_CANCELLED,
                             .n_prompt = (int)r.n_prompt};
        send_events(w, &ev, 1, NULL, false);
        return;
    }
    size_t n_in = 0;
    engine_kv_import(w->engine, r.prompt, (size_t)k.n_blocks, msg + sizeof k + (size_t)k.req_bytes, &n_in);
    ctrl_xfer_t x = {.id = id, .prefill_rank = from, .n_blocks = k.n_blocks, .n_imported = (int32_t)n_in,
                     .bytes = (int64_t)k.n_blocks * k.block_bytes, .t_prefill_done = k.t_prefill_done,
                     .t_sent = k.t_sent, .t_received = t_received, .t_imported = hlog_now()};
    MPI_Send(&x, sizeof x, MPI_BYTE, 0, CTRL_TAG_XFER, MPI_COMM_WORLD);
    /* a modelled transfer (sim) ends later: the request waits for it */
    const double ready = k.t_sent + engine_kv_transfer_s(w->engine, n_in);
    if (ready > hlog_now() && defer(w, id, ready, msg + sizeof k, (size_t)k.req_bytes)) return;
    st = engine_add_request(w->engine, &r);
    if (st) refuse(w, id, st);
}

/* Receive everything rank 0 and prefill ranks have sent; returns the
 * number of messages. */
static int poll_inbox(worker_t *w)
{
    int n = 0, count, from, tag;
    const uint8_t *msg;
    size_t len;
    for (; xfer_poll(w->xfer, CTRL_TAG_KV, &msg, &len, &from); n++) on_kv(w, from, msg, (int)len); /* ucx */
    for (; ctrl_try_recv(MPI_ANY_SOURCE, &w->rx, &w->rx_cap, &count, &from, &tag); n++) {
        if (tag == CTRL_TAG_KV) { /* mpi */
            on_kv(w, from, w->rx, count);
            continue;
        }
        if (from != 0) {
            RT_LOG_WARN("worker: unexpected message tag %d from rank %d", tag, from);
            continue;
        }
        switch (tag) {
        case CTRL_TAG_REQUEST: {
            engine_request_t r;
            rt_status_t st = ctrl_request_unpack(w->rx, (size_t)count, &r, NULL);
            if (!st) st = engine_add_request(w->engine, &r);
            if (st) refuse(w, leading_id(w->rx, count), st);
            break;
        }
        case CTRL_TAG_PREFILL: on_prefill(w, count); break;
        case CTRL_TAG_CANCEL: {
            uint64_t id;
            if (count == sizeof id) {
                memcpy(&id, w->rx, sizeof id);
                /* unknown: finished already, or a hand-off still on its way */
                if (engine_cancel(w->engine, id) != RT_OK)
                    w->tombstones[w->n_tombstones++ % WORKER_TOMBSTONES] = id;
            }
            break;
        }
        case CTRL_TAG_SHUTDOWN: w->shutdown = 1; break;
        case CTRL_TAG_ROLE: { /* the planner moved this rank: only its log says so */
            int32_t role;
            if (count == sizeof role) {
                memcpy(&role, w->rx, sizeof role);
                int me;
                MPI_Comm_rank(MPI_COMM_WORLD, &me);
                rt_log_set_identity(me, job_role_name((job_role_t)role));
                RT_LOG_INFO("now a %s rank (SLO planner)", job_role_name((job_role_t)role));
            }
            break;
        }
        default: RT_LOG_WARN("worker: unexpected message tag %d from rank 0", tag); break;
        }
    }
    return n;
}

/* One engine step: its events and stats to rank 0, finished prefills handed
 * off. */
static void worker_step(worker_t *w)
{
    size_t n = 0;
    engine_step_stats_t stats;
    if (engine_step(w->engine, w->events, w->cap, &n, &stats)) RT_LOG_ERROR("engine step: %s", rt_error_msg());
    if (w->n_handoffs)
        for (size_t i = 0; i < n; i++)
            if (w->events[i].kind == ENGINE_EV_FINISH || w->events[i].kind == ENGINE_EV_ERROR)
                on_prefill_finished(w, &w->events[i]);
    send_events(w, w->events, n, &stats, true);
    /* a hand-off just posted moves while we wait in MPI: up to
     * HANDOFF_FLUSH_S (the decode rank takes it between its steps) */
    xfer_flush(w->xfer, HANDOFF_FLUSH_S);
}

static void nap(double s)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(s * 1e9)};
    nanosleep(&ts, NULL);
}

int job_worker_main(const cfg_t *cfg, job_role_t role, job_ep_t *ep, MPI_Comm xfer_comm)
{
    engine_config_t ec;
    rt_status_t st = engine_config_from_cfg(cfg, NULL, &ec);
    ec.ep = job_ep_engine(ep);
    worker_t w = {.heartbeat_s = cfg_float(cfg, "job:heartbeat_interval_s"), .block_size = ec.block_size};
    if (!st) st = engine_create(&ec, &w.engine);
    if (!st) st = xfer_create(cfg_str(cfg, "disagg:transfer"), xfer_comm, &w.xfer);
    if (st) {
        RT_LOG_ERROR("engine: %s", rt_error_msg());
        job_ep_stop(ep);
        return 1;
    }
    w.cap = engine_events_room(w.engine);
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
    const bool dp = job_ep_dp(ep);
    const model_batch_t none = {0};
    for (;;) {
        int got = poll_inbox(&w);
        if (w.n_deferred) got += admit_deferred(&w);
        const bool work = engine_has_work(w.engine);
        /* after SHUTDOWN, rank 0 has drained the front end and sent CANCELs
         * for whatever was left: the loop ends once those are finished (an
         * instance with data-parallel attention: once all its ranks are) */
        const bool done = w.shutdown && !work && !w.n_deferred;
        bool step = work;
        if (dp) {
            if (!job_ep_sync(ep, work, done, &step)) break;
        } else if (done) {
            break;
        }
        if (step) {
            const long exchanges = job_ep_exchanges(ep);
            if (work) worker_step(&w);
            /* another rank of the instance stepped: its MoE rows need this
             * rank's experts even when this rank ran nothing */
            if (dp && job_ep_exchanges(ep) == exchanges && (st = engine_forward_batch(w.engine, &none)))
                RT_PANIC("expert parallelism: an empty forward pass failed: %s", rt_error_msg());
            idle_nap = 20e-6;
            if (work) continue;
        }
        const size_t sending = xfer_progress(w.xfer);
        if (hlog_now() - w.last_sent >= w.heartbeat_s) {
            engine_step_stats_t stats;
            engine_stats(w.engine, &stats);
            send_events(&w, NULL, 0, &stats, false);
        }
        if (!got && !sending && !step) { /* a pending hand-off moves only while we poll */
            nap(idle_nap);
            if (idle_nap < 200e-6) idle_nap *= 2;
        } else {
            idle_nap = 20e-6;
        }
    }
    MPI_Send(NULL, 0, MPI_BYTE, 0, CTRL_TAG_BYE, MPI_COMM_WORLD);
    RT_LOG_INFO("worker stopped");
    job_ep_stop(ep); /* the instance's expert ranks stop with it */
    xfer_destroy(w.xfer, 5.0);
    for (size_t i = 0; i < w.n_handoffs; i++) free(w.handoffs[i].req);
    free(w.handoffs);
    for (size_t i = 0; i < w.n_deferred; i++) free(w.deferred[i].req);
    free(w.deferred);
    engine_destroy(w.engine);
    free(w.events);
    free(w.kv);
    free(w.msg);
    free(w.rx);
    return 0;
}
