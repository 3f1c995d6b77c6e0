/*
 * dispatch_local.c - the in-process dispatcher ("local", see dispatch.h and
 * frontend.h): one engine, owned here, stepped on the front end's event loop.
 *
 * While the engine has work, one engine_step runs per event-loop iteration
 * from a zero-timeout timer; its events go to the sink in order, then the
 * timer is re-armed if work remains. A timer, not event_active(): an event
 * re-activated from its own callback runs again in the same loop iteration
 * and starves I/O, whereas a due timer waits for the next iteration, which
 * first polls the sockets, so HTTP I/O is served between steps.
 *
 * Re-entrancy: the sink may call submit and cancel from inside on_event;
 * both only queue work in the engine (no step runs inside them) and the
 * events buffer is not touched until the delivery loop is over. destroy from
 * inside on_event is deferred to the end of the delivery loop.
 *
 * dispatch.h promises exactly one FINISH or ERROR per request; the engine
 * follows an ERROR with a FINISH (ENGINE_FINISH_ERROR) for the same request,
 * so that FINISH is not passed on.
 *
 * Memory: the events buffer is allocated once at create; nothing per step.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <event2/event.h>

#include "rotor/dispatch.h"
#include "rotor/frontend.h"
#include "rotor/log.h"

typedef struct {
    struct event_base *base; /* borrowed */
    engine_t *eng;           /* owned */
    struct event *ev_step;   /* owned: zero-timeout timer that runs one step */
    engine_event_t *events;  /* (cap) owned, reused every step */
    size_t cap;
    dispatch_sink_t sink;
    engine_step_stats_t last; /* stats of the latest step */
    int64_t steps;
    int n_submitted;          /* accepted since the latest step (not yet in last.n_waiting) */
    bool delivering;          /* inside the sink loop of dl_step */
    bool destroy_pending;     /* destroy was called from inside the sink */
} dl_t;

static void dl_free(dl_t *d)
{
    if (d->ev_step)
        event_free(d->ev_step);
    engine_destroy(d->eng);
    free(d->events);
    free(d);
}

static void dl_arm(dl_t *d)
{
    static const struct timeval zero = {0, 0};
    if (engine_has_work(d->eng) && !evtimer_pending(d->ev_step, NULL))
        evtimer_add(d->ev_step, &zero);
}

static void dl_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dl_t *d = arg;
    if (!engine_has_work(d->eng))
        return;
    size_t n = 0;
    const rt_status_t st = engine_step(d->eng, d->events, d->cap, &n, &d->last);
    if (st)
        RT_LOG_ERROR("local engine step failed (%s): %s", rt_status_str(st), rt_error_msg());
    d->steps++;
    d->n_submitted = 0;
    d->delivering = true;
    for (size_t i = 0; i < n && !d->destroy_pending; i++) {
        const engine_event_t *ev = &d->events[i];
        if (ev->kind == ENGINE_EV_FINISH && ev->finish == ENGINE_FINISH_ERROR && i > 0 &&
            d->events[i - 1].kind == ENGINE_EV_ERROR && d->events[i - 1].request_id == ev->request_id)
            continue; /* the ERROR before it already ended the request */
        if (ev->kind == ENGINE_EV_ERROR)
            rt_error_set(ev->status, "the engine failed on this request (%s)", rt_status_str(ev->status));
        if (d->sink.on_event)
            d->sink.on_event(d->sink.ctx, ev, 0);
    }
    d->delivering = false;
    if (d->destroy_pending) {
        dl_free(d);
        return;
    }
    dl_arm(d);
}

/* ------------------------------------------------------------------ ops */

static void dl_set_sink(void *self, dispatch_sink_t sink) { ((dl_t *)self)->sink = sink; }

static rt_status_t dl_submit(void *self, const engine_request_t *r, dispatch_route_t *route)
{
    dl_t *d = self;
    if (!r)
        return rt_error_set(RT_ERR_INVALID, "dispatch local: NULL request");
    const rt_status_t st = engine_add_request(d->eng, r);
    if (st)
        return st; /* the engine's message says why */
    d->n_submitted++;
    dl_arm(d);
    if (route)
        *route = (dispatch_route_t){.worker = 0, .overlap_blocks = -1, .prefill_worker = -1};
    return RT_OK;
}

static void dl_cancel(void *self, uint64_t id)
{
    dl_t *d = self;
    if (engine_cancel(d->eng, id) == RT_OK)
        dl_arm(d); /* the FINISH (CANCELLED) comes with the next step */
}

static void dl_status(void *self, dispatch_status_t *st)
{
    const dl_t *d = self;
    const engine_step_stats_t *s = &d->last;
    *st = (dispatch_status_t){
        .n_workers = 1,
        .n_up = 1,
        .n_running = s->n_running,
        .n_waiting = s->n_waiting + d->n_submitted,
        .kv_usage = s->blocks_total > 0 ? (double)s->blocks_used / s->blocks_total : 0.0,
        .prefix_query_tokens_total = s->prefix_query_tokens_total,
        .prefix_hit_tokens_total = s->prefix_hit_tokens_total,
        .preemptions_total = s->n_preempted_total,
        .spec_draft_tokens_total = s->spec_draft_tokens_total,
        .spec_accepted_tokens_total = s->spec_accepted_tokens_total,
        .steps_total = d->steps,
        .kvbm_offloaded_total = s->kvbm_offloaded_total,
        .kvbm_onboarded_total = s->kvbm_onboarded_total,
        .kvbm_blocks = s->kvbm_blocks,
        .kvbm_capacity = s->kvbm_capacity,
        .kvbm_disk_blocks = s->kvbm_disk_blocks,
        .kvbm_disk_capacity = s->kvbm_disk_capacity,
    };
}

static const dispatch_ops_t dl_ops = {
    .name = "local",
    .set_sink = dl_set_sink,
    .submit = dl_submit,
    .cancel = dl_cancel,
    .status = dl_status,
};

/* ------------------------------------------------------------ lifecycle */

rt_status_t dispatch_local_create(struct event_base *base, const engine_config_t *cfg,
                                  dispatch_t *out)
{
    if (!base || !cfg || !out)
        return rt_error_set(RT_ERR_INVALID, "dispatch_local_create: NULL argument");
    if (cfg->max_num_seqs < 1)
        return rt_error_set(RT_ERR_INVALID, "dispatch_local_create: max_num_seqs must be >= 1");
    dl_t *d = calloc(1, sizeof *d);
    if (!d)
        return rt_error_set(RT_ERR_NOMEM, "dispatch_local_create: out of memory");
    d->base = base;
    const rt_status_t st = engine_create(cfg, &d->eng);
    if (st) {
        dl_free(d);
        return st;
    }
    d->cap = engine_events_room(d->eng);
    d->events = calloc(d->cap, sizeof *d->events);
    d->ev_step = evtimer_new(base, dl_step, d);
    if (!d->events || !d->ev_step) {
        dl_free(d);
        return rt_error_set(RT_ERR_NOMEM, "dispatch_local_create: out of memory");
    }
    *out = (dispatch_t){.ops = &dl_ops, .self = d};
    return RT_OK;
}

void dispatch_local_destroy(dispatch_t disp)
{
    dl_t *d = disp.self;
    if (!d)
        return;
    if (d->delivering) {
        d->destroy_pending = true; /* dl_step frees it once on_event returns */
        return;
    }
    dl_free(d);
}
