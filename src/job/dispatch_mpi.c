/*
 * dispatch_mpi.c - rank 0's dispatcher over the job's worker ranks.
 *
 * Requests go out with MPI_Isend (rank 0 never blocks on a slow or stopped
 * worker); a libevent timer polls for worker messages with MPI_Improbe, every
 * 100 us while anything is in flight and every 2 ms otherwise. Each worker's
 * EVENTS message carries one engine step's events and stats; with no events it
 * is the heartbeat. A worker silent for job:heartbeat_timeout_s is taken out
 * of routing and its requests fail (ERROR events, RT_ERR_UNAVAILABLE); if it
 * speaks again it is put back.
 *
 * Routing (router:policy): round_robin; least_loaded = the up worker with
 * the fewest requests in flight from rank 0 (ties go round-robin); random =
 * any up worker with room, alike (a baseline, as Dynamo's); kv_aware
 * = the least prefill against the KV blocks a worker holds, plus its load in
 * blocks (kv_router.h). The KV events that teach the router's index ride on
 * every EVENTS message; they are applied whatever the policy, so /metrics
 * shows the index. A worker's events come in id order (one MPI stream); a
 * gap or a worker leaving routing empties its part of the index.
 *
 * Load in blocks: each request in flight is charged the blocks it adds on
 * its worker (its full prompt blocks the worker did not hold, plus one) from
 * routing to its end, so a burst of requests spreads before any worker
 * reports a step. Blocks in flight: a request's prompt blocks are also put in
 * a second index, of what each worker is about to hold, from routing to its
 * end (by then its STORED events have come); a worker's overlap is the larger
 * of the two, so requests that share a prefix follow the first one before its
 * prefill is done. Blocks in a worker's host or disk tier (KV events of
 * tier 2 and 3, kvbm.h) count as held too: onboarding them is a copy, not a
 * prefill. A request's overlap is the run of its leading blocks the worker
 * has in any of these, up to the block holding its last prompt token (the
 * engine recomputes that one for its logits).
 */
#include <event2/event.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "job_impl.h"
#include "topology.h"
#include "rotor/ctrl.h"
#include "rotor/kv_router.h"
#include "rotor/log.h"
#include "rotor/planner.h"

typedef struct {
    int rank;
    job_role_t role;
    int hello, up, bye;
    double last_seen;
    int n_inflight;
    int64_t active_blocks; /* charged by requests in flight (see the top) */
    uint64_t kv_last_id;   /* the last KV event applied; 0 = none yet */
    ctrl_hello_t info;
    engine_step_stats_t stats;
} mpi_worker_t;

typedef struct {
    uint64_t id;
    int32_t worker; /* index into workers; -1 = empty slot */
    int32_t blocks; /* charged to the worker's active_blocks */
    int32_t n_hashes;
    uint64_t *hashes; /* (n_hashes) prompt blocks in the pending index; owned, NULL if none */
    int32_t prefill;  /* d->routes: index of the prefill worker computing its prompt, until
                         that one reports; -1 if none */
    int32_t n_tokens; /* d->routes: tokens received so far */
    double t_submit;  /* d->routes: when rank 0 routed it (CLOCK_REALTIME) */
    double t_last;    /* d->routes: its last token's arrival */
    int32_t prefill_tokens; /* d->prefills: the prompt tokens it prefills (the planner's backlog) */
} route_t;

/* open addressing, linear probing, power-of-two size */
typedef struct {
    route_t *slots; /* (cap) */
    size_t cap, n;
} route_tab_t;

typedef struct {
    MPI_Request req;
    void *buf;
} send_t;

typedef enum { POLICY_ROUND_ROBIN, POLICY_LEAST_LOADED, POLICY_RANDOM, POLICY_KV_AWARE } policy_t;

typedef struct {
    struct event_base *base;
    struct event *poll_ev;
    dispatch_sink_t sink;
    hlog_t *hlog;
    policy_t policy;
    kvr_params_t kv_params;
    kvi_t *kv;                /* the index of the workers' KV blocks (G1: their KV pools) */
    kvi_t *kv_host, *kv_disk; /* ... in their KV block managers' host and disk tiers */
    kvi_t *kv_pending;        /* prompt blocks of requests in flight, by worker */
    int block_size;           /* engine:block_size, the workers' */
    uint64_t *kv_hashes;      /* (kv_hashes_cap) a prompt's sequence hashes */
    size_t kv_hashes_cap;
    int32_t *kv_overlap;      /* (n_ranks) */
    kvr_candidate_t *kv_cand; /* (n_ranks) */
    uint64_t kv_rng; /* kv_temperature's and the random policy's coin */
    int64_t route_request_blocks, route_overlap_blocks;
    double hb_timeout;
    mpi_worker_t *w;
    int n_w, rr;
    int *w_of_rank; /* (n_ranks) index into w, -1 for ranks that are no worker */
    int n_ranks;
    route_tab_t routes;   /* requests in flight, by the worker that serves them */
    route_tab_t prefills; /* disaggregated ones still on their prefill worker */
    int n_prefill;        /* prefill workers (0: aggregated serving) */
    int *near;            /* (n_w x n_w) job_topo_nearness of worker i to worker j (topology.h) */
    uint8_t *allow;       /* (n_ranks) scratch: workers a pick may choose */
    int max_local_prefill; /* disagg:max_local_prefill_tokens */
    int max_prefill_queue; /* disagg:max_prefill_queue (0: none) */
    int64_t remote_prefills, xfer_count, xfer_blocks, xfer_bytes;
    /* the SLO planner (planner.h): the planner rank, or -1; the interval's measures */
    int planner_rank;
    double planner_interval, obs_t0;
    double obs_ttft_sum, obs_itl_sum;
    int obs_ttft_n, obs_itl_n;
    int64_t planner_moves;
    planner_obs_t acc;      /* the interval so far: load and the ranks' work (predictive planner) */
    planner_obs_t last_obs; /* the last interval sent to the planner */
    double xfer_seconds;  /* sum of t_received - t_sent */
    send_t *sends;
    size_t n_sends, cap_sends;
    uint8_t *rx;
    size_t rx_cap;
    int64_t steps_total;
    /* shutdown */
    int shutting;
    double shutdown_deadline;
    void (*done)(void *);
    void *done_arg;
} dmpi_t;

/* ------------------------------------------------------------ route table */

static size_t slot_of(const route_tab_t *t, uint64_t id) { return XXH3_64bits(&id, sizeof id) & (t->cap - 1); }

static route_t *route_find(route_tab_t *t, uint64_t id)
{
    for (size_t i = slot_of(t, id);; i = (i + 1) & (t->cap - 1)) {
        if (t->slots[i].worker < 0) return NULL;
        if (t->slots[i].id == id) return &t->slots[i];
    }
}

static rt_status_t route_grow(route_tab_t *t);

static rt_status_t route_add(route_tab_t *t, const route_t *r)
{
    if ((t->n + 1) * 2 > t->cap) {
        rt_status_t st = route_grow(t);
        if (st) return st;
    }
    size_t i = slot_of(t, r->id);
    while (t->slots[i].worker >= 0) {
        if (t->slots[i].id == r->id)
            return rt_error_set(RT_ERR_INVALID, "dispatch: request id %llu is already live", (unsigned long long)r->id);
        i = (i + 1) & (t->cap - 1);
    }
    t->slots[i] = *r;
    t->n++;
    return RT_OK;
}

static rt_status_t route_grow(route_tab_t *t)
{
    size_t old_cap = t->cap;
    route_t *old = t->slots;
    size_t cap = old_cap ? old_cap * 2 : 1024;
    route_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return rt_error_set(RT_ERR_NOMEM, "dispatch: out of memory");
    for (size_t i = 0; i < cap; i++) slots[i].worker = -1;
    t->slots = slots;
    t->cap = cap;
    t->n = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].worker >= 0) route_add(t, &old[i]);
    free(old);
    return RT_OK;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void route_del(route_tab_t *t, route_t *r)
{
    size_t mask = t->cap - 1, i = (size_t)(r - t->slots), j = i;
    t->slots[i].worker = -1;
    t->n--;
    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j].worker < 0) return;
        size_t k = slot_of(t, t->slots[j].id);
        /* move j back to i unless its home k lies cyclically in (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        t->slots[i] = t->slots[j];
        t->slots[j].worker = -1;
        i = j;
    }
}

static void route_tab_free(route_tab_t *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].worker >= 0) free(t->slots[i].hashes);
    free(t->slots);
}

/* A request's end on a worker (its decode or serving worker in d->routes,
 * its prefill worker in d->prefills): off the table and the worker's load. */
static void route_end(dmpi_t *d, route_tab_t *t, route_t *r)
{
    mpi_worker_t *w = &d->w[r->worker];
    w->n_inflight--;
    w->active_blocks -= r->blocks;
    for (int32_t i = 0; i < r->n_hashes; i++) kvi_remove(d->kv_pending, r->worker, r->hashes[i]);
    free(r->hashes);
    route_del(t, r);
}

/* ------------------------------------------------------------- messaging */

static void send_async(dmpi_t *d, int rank, int tag, void *buf, size_t len)
{
    if (d->n_sends == d->cap_sends) {
        size_t cap = d->cap_sends ? d->cap_sends * 2 : 64;
        send_t *s = realloc(d->sends, cap * sizeof *s);
        if (!s) RT_PANIC("dispatch: out of memory");
        d->sends = s;
        d->cap_sends = cap;
    }
    send_t *s = &d->sends[d->n_sends++];
    s->buf = buf;
    MPI_Isend(buf, (int)len, MPI_BYTE, rank, tag, MPI_COMM_WORLD, &s->req);
}

static void reap_sends(dmpi_t *d)
{
    size_t j = 0;
    for (size_t i = 0; i < d->n_sends; i++) {
        int flag = 0;
        MPI_Test(&d->sends[i].req, &flag, MPI_STATUS_IGNORE);
        if (flag) free(d->sends[i].buf);
        else d->sends[j++] = d->sends[i];
    }
    d->n_sends = j;
}

static void send_cancel(dmpi_t *d, int rank, uint64_t id)
{
    uint64_t *b = malloc(sizeof *b);
    if (!b) RT_PANIC("dispatch: out of memory");
    *b = id;
    send_async(d, rank, CTRL_TAG_CANCEL, b, sizeof *b);
}

static mpi_worker_t *worker_of_rank(dmpi_t *d, int rank)
{
    if (rank < 0 || rank >= d->n_ranks || d->w_of_rank[rank] < 0) return NULL;
    return &d->w[d->w_of_rank[rank]];
}

static void worker_event(dmpi_t *d, const mpi_worker_t *w, const char *kind, const char *detail)
{
    if (!d->hlog) return;
    hlog_worker_t rec = {.rank = w->rank, .t = hlog_now()};
    snprintf(rec.kind, sizeof rec.kind, "%s", kind);
    snprintf(rec.role, sizeof rec.role, "%s", job_role_name(w->role));
    snprintf(rec.detail, sizeof rec.detail, "%.*s", (int)sizeof rec.detail - 1, detail ? detail : "");
    hlog_worker(d->hlog, &rec);
}

static void sink_error(dmpi_t *d, uint64_t id, rt_status_t st, int rank)
{
    engine_event_t ev = {.kind = ENGINE_EV_ERROR, .request_id = id, .status = st};
    if (d->sink.on_event) d->sink.on_event(d->sink.ctx, &ev, rank);
}

/* Fail every request worker wi holds (it stopped answering): the ones it
 * serves, and the ones whose prompt it was computing for a decode worker. */
static void fail_worker_requests(dmpi_t *d, int wi)
{
    mpi_worker_t *w = &d->w[wi];
    for (size_t i = 0; i < d->routes.cap;) {
        route_t *r = &d->routes.slots[i];
        if (r->worker != wi) {
            i++;
            continue;
        }
        uint64_t id = r->id;
        route_end(d, &d->routes, r); /* may move a later entry into slot i: look at i again */
        send_cancel(d, w->rank, id);
        route_t *p = route_find(&d->prefills, id);
        if (p) send_cancel(d, d->w[p->worker].rank, id); /* its prefill report ends that entry */
        rt_error_set(RT_ERR_UNAVAILABLE, "worker rank %d stopped answering; the request was cancelled", w->rank);
        sink_error(d, id, RT_ERR_UNAVAILABLE, w->rank);
    }
    for (size_t i = 0; i < d->prefills.cap;) {
        route_t *p = &d->prefills.slots[i];
        if (p->worker != wi) {
            i++;
            continue;
        }
        uint64_t id = p->id;
        route_end(d, &d->prefills, p);
        send_cancel(d, w->rank, id);
        route_t *r = route_find(&d->routes, id);
        if (!r) continue;
        const int decode_rank = d->w[r->worker].rank;
        route_end(d, &d->routes, r);
        send_cancel(d, decode_rank, id); /* in case its hand-off left before */
        rt_error_set(RT_ERR_UNAVAILABLE, "prefill worker rank %d stopped answering; the request was cancelled",
                     w->rank);
        sink_error(d, id, RT_ERR_UNAVAILABLE, w->rank);
    }
}

/* worker wi's blocks leave the router's index, every tier */
static void forget_worker(dmpi_t *d, int wi)
{
    kvi_clear_worker(d->kv, wi);
    kvi_clear_worker(d->kv_host, wi);
    kvi_clear_worker(d->kv_disk, wi);
}

static void mark_down(dmpi_t *d, int wi, const char *why)
{
    mpi_worker_t *w = &d->w[wi];
    if (!w->up) return;
    w->up = 0;
    RT_LOG_WARN("worker rank %d is out of routing: %s", w->rank, why);
    worker_event(d, w, "down", why);
    forget_worker(d, wi);
    fail_worker_requests(d, wi);
}

/* the index of a tier's events, or NULL */
static kvi_t *tier_index(dmpi_t *d, int32_t tier)
{
    return tier == BP_TIER_G1 ? d->kv : tier == BP_TIER_G2 ? d->kv_host : tier == BP_TIER_G3 ? d->kv_disk : NULL;
}

static const char *kv_event_kind(bp_event_kind_t k)
{
    return k == BP_EV_STORED ? "stored" : k == BP_EV_REMOVED ? "removed" : k == BP_EV_CLEARED ? "cleared" : "unknown";
}

/* A worker's KV events into the index, in id order, and into the HDF5 log;
 * a gap (or the index out of memory) forgets what the worker held: routing
 * then only misses hits. */
static void apply_kv_events(dmpi_t *d, mpi_worker_t *w, const uint8_t *buf, int n)
{
    const int wi = (int)(w - d->w);
    enum { LOG_BATCH = 64 };
    hlog_kv_event_t rec[LOG_BATCH];
    size_t n_rec = 0;
    const double now = hlog_now();
    for (int i = 0; i < n; i++) {
        bp_event_t ev;
        memcpy(&ev, buf + (size_t)i * sizeof ev, sizeof ev);
        if (d->hlog) {
            rec[n_rec] = (hlog_kv_event_t){.id = ev.id, .seq_hash = ev.seq_hash, .block_hash = ev.block_hash,
                                           .parent_hash = ev.has_parent ? ev.parent_hash : 0, .t = now,
                                           .worker = w->rank, .tier = ev.tier, .n_tokens = ev.n_tokens,
                                           .has_parent = ev.has_parent};
            snprintf(rec[n_rec].kind, sizeof rec[n_rec].kind, "%s", kv_event_kind(ev.kind));
            if (++n_rec == LOG_BATCH || i == n - 1) {
                hlog_kv_events(d->hlog, rec, n_rec);
                n_rec = 0;
            }
        }
        if (ev.id != w->kv_last_id + 1) {
            RT_LOG_WARN("worker rank %d: KV event %llu after %llu; its blocks leave the router's index", w->rank,
                        (unsigned long long)ev.id, (unsigned long long)w->kv_last_id);
            forget_worker(d, wi);
        }
        w->kv_last_id = ev.id;
        if (ev.kind == BP_EV_CLEARED) { /* the pool's ring overflowed (or it was cleared): every tier's events */
            forget_worker(d, wi);
            continue;
        }
        kvi_t *x = tier_index(d, ev.tier);
        if (x && kvi_apply(x, wi, &ev) != RT_OK) {
            RT_LOG_WARN("worker rank %d: KV event %llu: %s", w->rank, (unsigned long long)ev.id, rt_error_msg());
            forget_worker(d, wi);
        }
    }
}

/* A prefill worker's event. FINISH (PREFILL): the hand-off is on its way to
 * the decode worker, which takes the request from here. Any other end (an
 * error, a cancel) means no hand-off: the request ends with it. */
static void on_prefill_event(dmpi_t *d, const mpi_worker_t *w, const engine_event_t *ev)
{
    if (ev->kind == ENGINE_EV_TOKEN) return;
    route_t *p = route_find(&d->prefills, ev->request_id);
    if (!p || p->worker != (int)(w - d->w)) return;
    route_end(d, &d->prefills, p);
    route_t *r = route_find(&d->routes, ev->request_id);
    if (r) r->prefill = -1;
    if (ev->kind == ENGINE_EV_FINISH && ev->finish == ENGINE_FINISH_PREFILL) return;
    if (!r) return; /* failed or cancelled already */
    const int decode_rank = d->w[r->worker].rank;
    route_end(d, &d->routes, r);
    send_cancel(d, decode_rank, ev->request_id); /* it only remembers the id */
    engine_event_t x = *ev;
    if (x.kind == ENGINE_EV_FINISH && x.finish == ENGINE_FINISH_CANCELLED) {
        x.n_cached = 0;
        x.n_generated = 0;
    } else if (x.kind == ENGINE_EV_ERROR) {
        rt_error_set(x.status, "prefill worker rank %d could not run the request (%s)", w->rank,
                     rt_status_str(x.status));
    } else {
        x = (engine_event_t){.kind = ENGINE_EV_ERROR, .request_id = ev->request_id, .status = RT_ERR_INTERNAL};
        rt_error_set(RT_ERR_INTERNAL, "prefill worker rank %d ended the prompt without a hand-off", w->rank);
    }
    if (d->sink.on_event) d->sink.on_event(d->sink.ctx, &x, w->rank);
}

/* A decode worker received a hand-off: log it */
static void on_xfer(dmpi_t *d, const mpi_worker_t *w, const uint8_t *buf, size_t len)
{
    ctrl_xfer_t x;
    if (len != sizeof x) return;
    memcpy(&x, buf, sizeof x);
    d->xfer_count++;
    d->xfer_blocks += x.n_blocks;
    d->xfer_bytes += x.bytes;
    d->xfer_seconds += x.t_received - x.t_sent;
    if (!d->hlog) return;
    const hlog_transfer_t t = {.id = x.id, .prefill_worker = x.prefill_rank, .decode_worker = w->rank,
                               .n_blocks = x.n_blocks, .n_imported = x.n_imported, .bytes = x.bytes,
                               .t_prefill_done = x.t_prefill_done, .t_sent = x.t_sent,
                               .t_received = x.t_received, .t_imported = x.t_imported};
    hlog_transfer(d->hlog, &t);
}

/* A step's work, for the predictive planner: what prefill ranks do per busy
 * second, and decode ranks' step time against their batch. */
static void account_step(dmpi_t *d, const mpi_worker_t *w, const engine_step_stats_t *s)
{
    planner_obs_t *a = &d->acc;
    if (w->role == JOB_ROLE_PREFILL) {
        a->prefill_tokens_done += s->n_prefill_tokens;
        a->prefill_busy_s += s->step_s;
    } else if (w->role == JOB_ROLE_DECODE) {
        a->decode_tokens += s->n_decode_tokens;
        if (s->n_prefill_tokens == 0 && s->n_decode_tokens > 0) {
            const double b = s->n_decode_tokens, t = s->step_s;
            a->fit_n += 1;
            a->fit_b += b;
            a->fit_t += t;
            a->fit_bb += b * b;
            a->fit_bt += b * t;
        }
    }
}

static void on_events(dmpi_t *d, mpi_worker_t *w, const uint8_t *buf, size_t len)
{
    ctrl_events_t h;
    if (len < sizeof h) return;
    memcpy(&h, buf, sizeof h);
    if (h.n_events < 0 || h.n_kv_events < 0 ||
        len != sizeof h + (size_t)h.n_events * sizeof(engine_event_t) + (size_t)h.n_kv_events * sizeof(bp_event_t)) {
        RT_LOG_WARN("rank %d sent a malformed EVENTS message (%zu bytes)", w->rank, len);
        return;
    }
    w->stats = h.stats;
    if (h.stepped) {
        d->steps_total++;
        if (d->hlog) {
            hlog_step_t s = {.worker = w->rank,
                             .t = h.t_sent,
                             .step_s = h.stats.step_s,
                             .n_seqs = h.stats.n_seqs,
                             .n_prefill_tokens = h.stats.n_prefill_tokens,
                             .n_decode_tokens = h.stats.n_decode_tokens,
                             .n_running = h.stats.n_running,
                             .n_waiting = h.stats.n_waiting,
                             .blocks_used = h.stats.blocks_used,
                             .blocks_cached = h.stats.blocks_cached,
                             .blocks_free = h.stats.blocks_free,
                             .spec_draft_tokens = h.stats.n_spec_draft_tokens,
                             .spec_accepted_tokens = h.stats.n_spec_accepted_tokens};
            hlog_step(d->hlog, &s);
        }
        if (d->planner_rank >= 0) account_step(d, w, &h.stats);
    }
    int wi = (int)(w - d->w);
    for (int i = 0; i < h.n_events; i++) {
        engine_event_t ev;
        memcpy(&ev, buf + sizeof h + (size_t)i * sizeof ev, sizeof ev);
        route_t *p = d->prefills.n ? route_find(&d->prefills, ev.request_id) : NULL;
        if (p && p->worker == wi) { /* its prompt, computed for a decode worker */
            on_prefill_event(d, w, &ev);
            continue;
        }
        route_t *r = route_find(&d->routes, ev.request_id);
        if (!r || r->worker != wi) continue; /* already failed or finished */
        if (ev.kind == ENGINE_EV_TOKEN && d->planner_rank >= 0) { /* the planner's measures */
            const double now = hlog_now();
            if (r->n_tokens++ == 0) {
                d->obs_ttft_sum += now - r->t_submit;
                d->obs_ttft_n++;
            } else {
                d->obs_itl_sum += now - r->t_last;
                d->obs_itl_n++;
            }
            r->t_last = now;
        }
        if (ev.kind == ENGINE_EV_FINISH || ev.kind == ENGINE_EV_ERROR) {
            route_end(d, &d->routes, r);
            if (ev.kind == ENGINE_EV_ERROR)
                rt_error_set(ev.status, "worker rank %d could not run the request (%s)", w->rank,
                             rt_status_str(ev.status));
        }
        if (d->sink.on_event) d->sink.on_event(d->sink.ctx, &ev, w->rank);
    }
    apply_kv_events(d, w, buf + sizeof h + (size_t)h.n_events * sizeof(engine_event_t), h.n_kv_events);
}

/* The planner's move: the up worker of the source pool with the fewest
 * requests in flight changes pools. Its requests go on where they are (a
 * request's events are matched by table, not by role); from now on it is
 * chosen for the other kind of work. */
static int carry_out(dmpi_t *d, planner_action_t action, const char *why);

/* The planner's decision on the last interval: carried out if a move, and
 * logged (HDF5 /planner) with what the interval looked like. */
static void on_plan(dmpi_t *d, const uint8_t *buf)
{
    ctrl_plan_t plan;
    memcpy(&plan, buf, sizeof plan);
    plan.why[sizeof plan.why - 1] = '\0';
    int moved = -1, n_moved = 0;
    if (plan.action == PLANNER_TO_PREFILL || plan.action == PLANNER_TO_DECODE)
        for (int i = 0; i < (plan.view.n_moves > 1 ? plan.view.n_moves : 1); i++) {
            const int r = carry_out(d, (planner_action_t)plan.action, plan.why);
            if (r < 0) break;
            if (moved < 0) moved = r;
            n_moved++;
        }
    if (!d->hlog) return;
    const planner_obs_t *o = &d->last_obs;
    hlog_planner_t rec = {.t = hlog_now(), .ttft_mean_s = o->ttft_mean_s, .itl_mean_s = o->itl_mean_s,
                          .n_ttft = o->n_ttft, .n_itl = o->n_itl, .n_prefill = o->n_prefill, .n_decode = o->n_decode,
                          .prefill_queue = o->prefill_queue, .rank_moved = moved, .n_moved = n_moved,
                          .target_prefill = plan.view.target_prefill, .prefill_tps = plan.view.prefill_tps,
                          .decode_tps = plan.view.decode_tps, .prefill_cap_tps = plan.view.prefill_cap_tps,
                          .decode_cap_tps = plan.view.decode_cap_tps};
    snprintf(rec.action, sizeof rec.action, "%s",
             plan.action == PLANNER_TO_PREFILL || plan.action == PLANNER_TO_DECODE ? planner_action_name(plan.action)
                                                                                  : "hold");
    snprintf(rec.why, sizeof rec.why, "%.*s", (int)sizeof rec.why - 1, plan.why);
    hlog_planner(d->hlog, &rec);
}

/* A move: returns the rank moved, -1 if it was not carried out. */
static int carry_out(dmpi_t *d, planner_action_t action, const char *why)
{
    const job_role_t from = action == PLANNER_TO_PREFILL ? JOB_ROLE_DECODE : JOB_ROLE_PREFILL;
    const job_role_t to = from == JOB_ROLE_DECODE ? JOB_ROLE_PREFILL : JOB_ROLE_DECODE;
    int best = -1, n_from = 0;
    for (int i = 0; i < d->n_w; i++) {
        const mpi_worker_t *w = &d->w[i];
        if (!w->up || w->role != from) continue;
        n_from++;
        if (best < 0 || w->n_inflight < d->w[best].n_inflight) best = i;
    }
    if (best < 0 || n_from < 2) { /* the planner keeps one of each; the pools may have changed since */
        RT_LOG_INFO("planner: %s not carried out: %d %s rank(s) up", planner_action_name(action), n_from,
                    job_role_name(from));
        return -1;
    }
    mpi_worker_t *w = &d->w[best];
    w->role = to;
    d->n_prefill += to == JOB_ROLE_PREFILL ? 1 : -1;
    d->planner_moves++;
    RT_LOG_INFO("planner: rank %d is now a %s rank: %s", w->rank, job_role_name(to), why);
    worker_event(d, w, "role", why);
    int32_t *role = malloc(sizeof *role);
    if (!role) RT_PANIC("dispatch: out of memory");
    *role = (int32_t)to;
    send_async(d, w->rank, CTRL_TAG_ROLE, role, sizeof *role);
    return w->rank;
}

/* Every planner:interval_s: the interval's measures to the planner rank. */
static void send_obs(dmpi_t *d, double now)
{
    if (d->planner_rank < 0 || d->shutting || now - d->obs_t0 < d->planner_interval) return;
    planner_obs_t *o = malloc(sizeof *o);
    if (!o) RT_PANIC("dispatch: out of memory");
    *o = d->acc;
    o->t = now;
    o->interval_s = now - d->obs_t0;
    for (size_t i = 0; i < d->prefills.cap; i++) /* prompt tokens on or waiting for prefill workers */
        if (d->prefills.slots[i].worker >= 0) o->prefill_backlog_tokens += d->prefills.slots[i].prefill_tokens;
    int64_t kv_used = 0, kv_total = 0;
    for (int i = 0; i < d->n_w; i++) {
        if (!d->w[i].up) continue;
        o->n_prefill += d->w[i].role == JOB_ROLE_PREFILL;
        o->n_decode += d->w[i].role == JOB_ROLE_DECODE;
        if (d->w[i].role == JOB_ROLE_DECODE) {
            kv_used += d->w[i].stats.blocks_used;
            kv_total += d->w[i].stats.blocks_total;
        }
    }
    o->decode_kv_usage = kv_total ? (double)kv_used / (double)kv_total : 0.0;
    o->n_ttft = d->obs_ttft_n;
    o->ttft_mean_s = d->obs_ttft_n ? d->obs_ttft_sum / d->obs_ttft_n : 0;
    o->n_itl = d->obs_itl_n;
    o->itl_mean_s = d->obs_itl_n ? d->obs_itl_sum / d->obs_itl_n : 0;
    o->prefill_queue = (int)d->prefills.n;
    d->last_obs = *o;
    send_async(d, d->planner_rank, CTRL_TAG_OBS, o, sizeof *o);
    d->obs_t0 = now;
    d->obs_ttft_sum = d->obs_itl_sum = 0;
    d->obs_ttft_n = d->obs_itl_n = 0;
    memset(&d->acc, 0, sizeof d->acc);
}

static void poll_messages(dmpi_t *d)
{
    int count, from, tag;
    while (ctrl_try_recv(MPI_ANY_SOURCE, &d->rx, &d->rx_cap, &count, &from, &tag)) {
        if (from == d->planner_rank && from >= 0) {
            if (tag == CTRL_TAG_PLAN && (size_t)count == sizeof(ctrl_plan_t)) on_plan(d, d->rx);
            else RT_LOG_WARN("unexpected message tag %d from the planner rank %d", tag, from);
            continue;
        }
        mpi_worker_t *w = worker_of_rank(d, from);
        if (!w) {
            RT_LOG_WARN("message tag %d from rank %d, which is no worker", tag, from);
            continue;
        }
        w->last_seen = hlog_now();
        if (!w->up && w->hello && !w->bye && tag != CTRL_TAG_BYE) {
            w->up = 1;
            RT_LOG_INFO("worker rank %d answers again: back in routing", w->rank);
            worker_event(d, w, "up", "answers again");
        }
        switch (tag) {
        case CTRL_TAG_HELLO:
            if ((size_t)count == sizeof w->info) memcpy(&w->info, d->rx, sizeof w->info);
            w->hello = w->up = 1;
            RT_LOG_INFO("worker rank %d up (%s, %d KV blocks, context %d)", w->rank, job_role_name(w->role),
                        w->info.n_blocks, w->info.n_ctx);
            worker_event(d, w, "up", "hello");
            break;
        case CTRL_TAG_EVENTS: on_events(d, w, d->rx, (size_t)count); break;
        case CTRL_TAG_XFER: on_xfer(d, w, d->rx, (size_t)count); break;
        case CTRL_TAG_BYE:
            w->bye = 1;
            w->up = 0;
            forget_worker(d, (int)(w - d->w));
            worker_event(d, w, "shutdown", "bye");
            break;
        default: RT_LOG_WARN("unexpected message tag %d from rank %d", tag, from); break;
        }
    }
}

static void check_heartbeats(dmpi_t *d)
{
    double now = hlog_now();
    for (int i = 0; i < d->n_w; i++) {
        mpi_worker_t *w = &d->w[i];
        if (w->up && now - w->last_seen > d->hb_timeout) {
            char why[96];
            snprintf(why, sizeof why, "no message for %.1f s (job:heartbeat_timeout_s)", now - w->last_seen);
            mark_down(d, i, why);
        }
    }
}

static void check_shutdown(dmpi_t *d)
{
    if (!d->shutting || !d->done) return;
    int waiting = 0;
    for (int i = 0; i < d->n_w; i++) waiting += d->w[i].hello && !d->w[i].bye && d->w[i].up;
    if (waiting && hlog_now() < d->shutdown_deadline) return;
    if (waiting) RT_LOG_WARN("shutdown: %d worker(s) did not say goodbye in time", waiting);
    void (*done)(void *) = d->done;
    d->done = NULL;
    done(d->done_arg);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dmpi_t *d = arg;
    poll_messages(d);
    reap_sends(d);
    send_obs(d, hlog_now());
    check_heartbeats(d);
    check_shutdown(d);
    struct timeval tv = {0, (d->routes.n || d->prefills.n || d->n_sends || d->shutting) ? 100 : 2000};
    evtimer_add(d->poll_ev, &tv);
}

/* ------------------------------------------------------------ dispatch ops */

static void dm_set_sink(void *self, dispatch_sink_t sink) { ((dmpi_t *)self)->sink = sink; }

/* Requests one engine holds (running + its queue), as the engine bounds it. */
static int worker_capacity(const mpi_worker_t *w) { return 4 * (w->info.max_num_seqs > 0 ? w->info.max_num_seqs : 64); }

/* The workers a pick chooses among: prefill workers for a remote prefill
 * (those d->allow marks), the others (aggregated or decode workers) for
 * serving. */
static bool in_pool(const dmpi_t *d, int i, bool prefill)
{
    return prefill ? d->w[i].role == JOB_ROLE_PREFILL && d->allow[i] : d->w[i].role != JOB_ROLE_PREFILL;
}

/* The KV-aware choice among the up workers of the pool with room (-1 if
 * none); *blocks receives what the request adds on the chosen worker. */
static int pick_worker_kv(dmpi_t *d, const engine_request_t *r, bool prefill, int32_t *blocks)
{
    const size_t nb = r->n_prompt / (size_t)d->block_size;
    if (nb > d->kv_hashes_cap) {
        uint64_t *h = realloc(d->kv_hashes, nb * sizeof *h);
        if (!h) RT_PANIC("dispatch: out of memory");
        d->kv_hashes = h;
        d->kv_hashes_cap = nb;
    }
    bp_hash_blocks(r->prompt, r->n_prompt, d->block_size, NULL, d->kv_hashes);
    kvi_t *const held[4] = {d->kv, d->kv_pending, d->kv_host, d->kv_disk};
    kvi_overlap_any(held, 4, d->kv_hashes, nb, d->kv_overlap);
    /* the engine never takes the block holding the prompt's last token from
     * its cache (it needs that token's logits): what it can use */
    const int32_t usable = r->n_prompt > 0 ? (int32_t)((r->n_prompt - 1) / (size_t)d->block_size) : 0;
    for (int i = 0; i < d->n_w; i++) {
        if (d->kv_overlap[i] > usable) d->kv_overlap[i] = usable;
        const mpi_worker_t *w = &d->w[i];
        d->kv_cand[i] = (kvr_candidate_t){.eligible = w->up && in_pool(d, i, prefill) && w->n_inflight < worker_capacity(w),
                                          .overlap = d->kv_overlap[i],
                                          .active_blocks = w->active_blocks,
                                          .n_inflight = w->n_inflight};
    }
    const int best = kvr_pick(&d->kv_params, d->kv_cand, d->n_w, (int32_t)nb, d->rr, &d->kv_rng);
    if (best >= 0) *blocks = (int32_t)nb - d->kv_overlap[best] + 1;
    return best;
}

/* An up worker of the pool with room, by policy; -1 if none is up, -2 if
 * all are full. *blocks receives what the request is charged there. */
static int pick_worker(dmpi_t *d, const engine_request_t *r, bool prefill, int32_t *blocks)
{
    int best = -1, n_up = 0, n_room = 0;
    *blocks = (int32_t)(r->n_prompt / (size_t)d->block_size) + 1;
    for (int k = 0; k < d->n_w; k++) {
        int i = (d->rr + k) % d->n_w;
        if (!d->w[i].up || !in_pool(d, i, prefill)) continue;
        n_up++;
        if (d->w[i].n_inflight >= worker_capacity(&d->w[i])) continue;
        if (d->policy == POLICY_ROUND_ROBIN) {
            best = i;
            break;
        }
        if (d->policy == POLICY_RANDOM) { /* reservoir of one: each worker with room alike */
            if (kvr_coin(&d->kv_rng) * ++n_room < 1.0) best = i;
            continue;
        }
        if (best < 0 || d->w[i].n_inflight < d->w[best].n_inflight) best = i;
    }
    if (best >= 0 && d->policy == POLICY_KV_AWARE) best = pick_worker_kv(d, r, prefill, blocks);
    if (best >= 0) d->rr = (best + 1) % d->n_w;
    return best >= 0 ? best : n_up ? -2 : -1;
}

/* kv_aware: a copy of the first n of the prompt's hashes pick_worker_kv
 * left in the scratch (NULL if n is 0); *oom on failure */
static uint64_t *copy_hashes(const dmpi_t *d, int32_t n, bool *oom)
{
    if (n <= 0) return NULL;
    uint64_t *h = malloc((size_t)n * sizeof *h);
    if (!h) *oom = true;
    else memcpy(h, d->kv_hashes, (size_t)n * sizeof *h);
    return h;
}

/* r enters worker wi's load and the pending index */
static void charge(dmpi_t *d, const route_t *r)
{
    d->w[r->worker].n_inflight++;
    d->w[r->worker].active_blocks += r->blocks;
    /* what the worker is about to hold (out of memory: only fewer predicted hits) */
    for (int32_t i = 0; i < r->n_hashes; i++)
        if (kvi_store(d->kv_pending, r->worker, r->hashes[i]) != RT_OK) break;
}

/* Disaggregation: a prefill worker for r, whose serving worker (index
 * decode) holds overlap blocks of its prompt, or -1 to prefill where it
 * decodes (short prompts, most of it cached there, or no prefill worker up
 * with room or, under disagg:max_prefill_queue, a short enough queue). */
static int pick_prefill(dmpi_t *d, const engine_request_t *r, int decode, int32_t overlap, int32_t *blocks)
{
    const int64_t n_full = r->n_prompt ? (int64_t)(r->n_prompt - 1) / d->block_size : 0;
    if (!d->n_prefill || n_full == 0 || r->prompt_logprobs) return -1; /* the prompt's logits are wanted */
    if ((int64_t)r->n_prompt - (int64_t)overlap * d->block_size <= d->max_local_prefill) return -1;
    /* among the prefill workers up with room, the nearest to the decode
     * worker (same node, then the most switches shared: topology.h) */
    const int *at = d->near + (size_t)decode * (size_t)d->n_w;
    int best = -1;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < d->n_w; i++) {
            const mpi_worker_t *w = &d->w[i];
            d->allow[i] = 0;
            if (w->role != JOB_ROLE_PREFILL || !w->up || w->n_inflight >= worker_capacity(w)) continue;
            if (d->max_prefill_queue > 0 && w->n_inflight >= d->max_prefill_queue) continue; /* queue full */
            const int near = at[i];
            if (pass == 0 && near > best) best = near;
            d->allow[i] = near == best;
        }
    const int pi = pick_worker(d, r, true, blocks);
    return pi >= 0 ? pi : -1;
}

static rt_status_t dm_submit(void *self, const engine_request_t *r, dispatch_route_t *route)
{
    dmpi_t *d = self;
    if (d->shutting) return rt_error_set(RT_ERR_UNAVAILABLE, "the job is shutting down");
    int32_t blocks;
    int wi = pick_worker(d, r, false, &blocks);
    if (wi == -2) return rt_error_set(RT_ERR_FULL, "every worker is full");
    if (wi < 0) return rt_error_set(RT_ERR_UNAVAILABLE, "no worker is up (%d configured)", d->n_w - d->n_prefill);
    if (d->w[wi].info.n_vocab > 0)
        for (size_t i = 0; i < r->n_prompt; i++)
            if (r->prompt[i] < 0 || r->prompt[i] >= d->w[wi].info.n_vocab)
                return rt_error_set(RT_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", r->prompt[i],
                                    d->w[wi].info.n_vocab - 1);
    const bool kv = d->policy == POLICY_KV_AWARE;
    const int32_t overlap = kv ? d->kv_overlap[wi] : 0;
    bool oom = false;
    /* kv_aware: pick_worker_kv left the prompt's hashes and overlaps in the scratch */
    route_t rt = {.id = r->id, .worker = wi, .blocks = blocks, .prefill = -1, .t_submit = hlog_now(),
                  .n_hashes = kv ? (int32_t)(r->n_prompt / (size_t)d->block_size) : 0};
    rt.hashes = copy_hashes(d, rt.n_hashes, &oom);
    route_t pre = {.id = r->id, .worker = -1, .prefill = -1};
    /* the prompt tokens a prefill worker would compute: the planner's demand */
    const int64_t uncached = (int64_t)r->n_prompt - (int64_t)overlap * d->block_size;
    if (!oom) pre.worker = pick_prefill(d, r, wi, overlap, &pre.blocks);
    pre.prefill_tokens = pre.worker >= 0 ? (int32_t)uncached : 0;
    if (pre.worker >= 0) {
        /* the prefill worker holds the prompt's full blocks but the last */
        pre.n_hashes = kv ? (int32_t)((r->n_prompt - 1) / (size_t)d->block_size) : 0;
        pre.hashes = copy_hashes(d, pre.n_hashes, &oom);
        rt.prefill = pre.worker;
    }
    void *buf = NULL;
    size_t len;
    rt_status_t st = oom ? rt_error_set(RT_ERR_NOMEM, "dispatch: out of memory")
                         : ctrl_request_pack(r, pre.worker >= 0 ? d->w[wi].rank : -1, &buf, &len);
    if (!st) st = route_add(&d->routes, &rt);
    if (!st && pre.worker >= 0 && (st = route_add(&d->prefills, &pre)))
        route_del(&d->routes, route_find(&d->routes, r->id));
    if (st) {
        free(rt.hashes);
        free(pre.hashes);
        free(buf);
        return st;
    }
    charge(d, &rt);
    if (d->n_prefill && uncached > d->max_local_prefill) d->acc.prefill_tokens_in += (double)uncached;
    if (pre.worker >= 0) {
        charge(d, &pre);
        d->remote_prefills++;
        send_async(d, d->w[pre.worker].rank, CTRL_TAG_PREFILL, buf, len);
    } else {
        send_async(d, d->w[wi].rank, CTRL_TAG_REQUEST, buf, len);
    }
    if (kv) {
        d->route_request_blocks += rt.n_hashes;
        d->route_overlap_blocks += overlap;
    }
    *route = (dispatch_route_t){.worker = d->w[wi].rank,
                                .overlap_blocks = kv ? overlap : -1,
                                .prefill_worker = pre.worker >= 0 ? d->w[pre.worker].rank : -1};
    /* poll soon: the first token matters */
    struct timeval tv = {0, 100};
    evtimer_del(d->poll_ev);
    evtimer_add(d->poll_ev, &tv);
    return RT_OK;
}

static void dm_cancel(void *self, uint64_t id)
{
    dmpi_t *d = self;
    route_t *r = route_find(&d->routes, id);
    if (!r) return;
    /* on its prefill worker, or already on the way to its decode worker:
     * both hear of it (the decode worker remembers an id it does not hold) */
    route_t *p = route_find(&d->prefills, id);
    if (p) send_cancel(d, d->w[p->worker].rank, id);
    send_cancel(d, d->w[r->worker].rank, id);
}

static void dm_status(void *self, dispatch_status_t *st)
{
    dmpi_t *d = self;
    memset(st, 0, sizeof *st);
    st->n_workers = d->n_w;
    st->n_prefill_workers = d->n_prefill;
    int64_t used = 0, total = 0;
    for (int i = 0; i < d->n_w; i++) {
        const mpi_worker_t *w = &d->w[i];
        st->prefix_query_tokens_total += w->stats.prefix_query_tokens_total;
        st->prefix_hit_tokens_total += w->stats.prefix_hit_tokens_total;
        st->kvbm_offloaded_total += w->stats.kvbm_offloaded_total;
        st->kvbm_onboarded_total += w->stats.kvbm_onboarded_total;
        st->kvbm_blocks += w->stats.kvbm_blocks;
        st->kvbm_capacity += w->stats.kvbm_capacity;
        st->kvbm_disk_blocks += w->stats.kvbm_disk_blocks;
        st->kvbm_disk_capacity += w->stats.kvbm_disk_capacity;
        st->preemptions_total += w->stats.n_preempted_total;
        st->spec_draft_tokens_total += w->stats.spec_draft_tokens_total;
        st->spec_accepted_tokens_total += w->stats.spec_accepted_tokens_total;
        if (!w->up) continue;
        st->n_up++;
        st->n_running += w->stats.n_running;
        st->n_waiting += w->stats.n_waiting;
        used += w->stats.blocks_used;
        total += w->stats.blocks_total;
    }
    st->kv_usage = total ? (double)used / (double)total : 0;
    st->steps_total = d->steps_total;
    st->route_request_blocks_total = d->route_request_blocks;
    st->route_overlap_blocks_total = d->route_overlap_blocks;
    st->kv_index_blocks = kvi_blocks(d->kv);
    st->remote_prefills_total = d->remote_prefills;
    st->planner_moves_total = d->planner_moves;
    st->kv_transfers_total = d->xfer_count;
    st->kv_transfer_blocks_total = d->xfer_blocks;
    st->kv_transfer_bytes_total = d->xfer_bytes;
    st->kv_transfer_seconds_total = d->xfer_seconds;
}

static const dispatch_ops_t dmpi_ops = {
    .name = "mpi", .set_sink = dm_set_sink, .submit = dm_submit, .cancel = dm_cancel, .status = dm_status};

rt_status_t dispatch_mpi_create(struct event_base *base, const cfg_t *cfg, const job_role_t *roles,
                                const job_topo_id_t *ids, int n_ranks, hlog_t *hlog, dispatch_t *out)
{
    const char *pol = cfg_str(cfg, "router:policy");
    policy_t policy;
    if (strcmp(pol, "round_robin") == 0) policy = POLICY_ROUND_ROBIN;
    else if (strcmp(pol, "least_loaded") == 0) policy = POLICY_LEAST_LOADED;
    else if (strcmp(pol, "random") == 0) policy = POLICY_RANDOM;
    else if (strcmp(pol, "kv_aware") == 0) policy = POLICY_KV_AWARE;
    else return rt_error_set(RT_ERR_INVALID, "router:policy: '%s' is not round_robin, least_loaded, random or kv_aware",
                             pol);
    dmpi_t *d = calloc(1, sizeof *d);
    if (!d) return rt_error_set(RT_ERR_NOMEM, "dispatch: out of memory");
    d->base = base;
    d->hlog = hlog;
    d->policy = policy;
    d->kv_params = (kvr_params_t){.overlap_weight = cfg_float(cfg, "router:kv_overlap_weight"),
                                  .temperature = cfg_float(cfg, "router:kv_temperature")};
    d->block_size = (int)cfg_int(cfg, "engine:block_size");
    d->kv_rng = (uint64_t)(hlog_now() * 1e6);
    d->hb_timeout = cfg_float(cfg, "job:heartbeat_timeout_s");
    d->w = calloc((size_t)n_ranks, sizeof *d->w);
    d->w_of_rank = malloc((size_t)n_ranks * sizeof *d->w_of_rank);
    d->n_ranks = n_ranks;
    d->rx_cap = 1 << 20;
    d->rx = malloc(d->rx_cap);
    d->poll_ev = evtimer_new(base, on_poll, d);
    d->kv_overlap = calloc((size_t)n_ranks, sizeof *d->kv_overlap);
    d->kv_cand = calloc((size_t)n_ranks, sizeof *d->kv_cand);
    d->allow = calloc((size_t)n_ranks, 1);
    if (!d->allow || !d->w || !d->w_of_rank || !d->rx || !d->poll_ev || !d->kv_overlap || !d->kv_cand || route_grow(&d->routes) || route_grow(&d->prefills) ||
        kvi_create(n_ranks, &d->kv) || kvi_create(n_ranks, &d->kv_host) || kvi_create(n_ranks, &d->kv_disk) ||
        kvi_create(n_ranks, &d->kv_pending)) {
        dispatch_mpi_destroy((dispatch_t){.ops = &dmpi_ops, .self = d});
        return rt_error_set(RT_ERR_NOMEM, "dispatch: out of memory");
    }
    double now = hlog_now();
    for (int r = 0; r < n_ranks; r++) {
        d->w_of_rank[r] = -1;
        if (!job_role_is_engine(roles[r])) continue;
        d->w_of_rank[r] = d->n_w;
        d->w[d->n_w++] = (mpi_worker_t){.rank = r, .role = roles[r], .last_seen = now};
        d->n_prefill += roles[r] == JOB_ROLE_PREFILL;
    }
    /* how near each worker is to each other: a prefill worker is chosen
     * among the nearest to the decode worker (pick_prefill) */
    d->near = calloc((size_t)d->n_w * (size_t)d->n_w + 1, sizeof *d->near);
    if (!d->near) {
        dispatch_mpi_destroy((dispatch_t){.ops = &dmpi_ops, .self = d});
        return rt_error_set(RT_ERR_NOMEM, "dispatch: out of memory");
    }
    for (int i = 0; i < d->n_w; i++)
        for (int j = 0; j < d->n_w; j++)
            d->near[(size_t)i * (size_t)d->n_w + (size_t)j] =
                ids ? job_topo_nearness(&ids[d->w[j].rank], &ids[d->w[i].rank], NULL) : 0;
    d->max_local_prefill = (int)cfg_int(cfg, "disagg:max_local_prefill_tokens");
    d->max_prefill_queue = (int)cfg_int(cfg, "disagg:max_prefill_queue");
    d->planner_rank = -1;
    for (int r = 0; r < n_ranks; r++)
        if (roles[r] == JOB_ROLE_PLANNER) d->planner_rank = r;
    d->planner_interval = cfg_float(cfg, "planner:interval_s");
    d->obs_t0 = now;
    struct timeval tv = {0, 1000};
    evtimer_add(d->poll_ev, &tv);
    *out = (dispatch_t){.ops = &dmpi_ops, .self = d};
    return RT_OK;
}

void dispatch_mpi_shutdown(dispatch_t dd, double timeout_s, void (*done)(void *), void *arg)
{
    dmpi_t *d = dd.self;
    d->shutting = 1;
    d->shutdown_deadline = hlog_now() + timeout_s;
    d->done = done;
    d->done_arg = arg;
    for (int i = 0; i < d->n_w; i++)
        if (!d->w[i].bye) send_async(d, d->w[i].rank, CTRL_TAG_SHUTDOWN, NULL, 0);
    if (d->planner_rank >= 0) send_async(d, d->planner_rank, CTRL_TAG_SHUTDOWN, NULL, 0);
}

void dispatch_mpi_destroy(dispatch_t dd)
{
    dmpi_t *d = dd.self;
    if (!d) return;
    if (d->poll_ev) event_free(d->poll_ev);
    /* sends to workers that never answered cannot complete; leave them */
    for (size_t i = 0; i < d->n_sends; i++) {
        int flag = 0;
        MPI_Test(&d->sends[i].req, &flag, MPI_STATUS_IGNORE);
        if (flag) free(d->sends[i].buf);
    }
    free(d->sends);
    route_tab_free(&d->routes);
    route_tab_free(&d->prefills);
    free(d->rx);
    free(d->w);
    free(d->w_of_rank);
    free(d->kv_hashes);
    free(d->kv_overlap);
    free(d->kv_cand);
    free(d->near);
    free(d->allow);
    kvi_destroy(d->kv);
    kvi_destroy(d->kv_host);
    kvi_destroy(d->kv_disk);
    kvi_destroy(d->kv_pending);
    free(d);
}
