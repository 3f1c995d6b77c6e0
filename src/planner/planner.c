/*
 * planner.c - the SLO planner's rule (include/rotor/planner.h).
 */
#include <stdbool.h>
#include <stdio.h>

#include "rotor/planner.h"

void planner_init(planner_t *p, const planner_config_t *cfg)
{
    p->cfg = *cfg;
    p->last_move_t = -1.0;
    p->moves = 0;
}

const char *planner_action_name(planner_action_t a)
{
    return a == PLANNER_TO_PREFILL ? "to_prefill" : a == PLANNER_TO_DECODE ? "to_decode" : "hold";
}

static planner_action_t hold(char *why, size_t n, const char *fmt, double a, double b)
{
    if (why && n) snprintf(why, n, fmt, a, b);
    return PLANNER_HOLD;
}

planner_action_t planner_decide(planner_t *p, const planner_obs_t *o, char *why, size_t n)
{
    const planner_config_t *c = &p->cfg;
    if (p->last_move_t >= 0 && o->t - p->last_move_t < c->cooldown_s)
        return hold(why, n, "cooling down (%.1f of %.1f s since the last move)", o->t - p->last_move_t, c->cooldown_s);
    if (o->n_ttft < c->min_samples || o->n_itl < c->min_samples)
        return hold(why, n, "too few samples (%.0f first tokens, %.0f token gaps)", o->n_ttft, o->n_itl);
    const double ttft = o->ttft_mean_s / c->ttft_slo_s, itl = o->itl_mean_s / c->itl_slo_s;
    const bool kv_short = c->kv_high > 0 && o->decode_kv_usage >= c->kv_high;
    const bool decode_pressed = itl > 1.0 || kv_short;
    planner_action_t a = PLANNER_HOLD;
    if (ttft > 1.0 && itl < c->headroom && !kv_short && o->n_decode > c->min_decode) a = PLANNER_TO_PREFILL;
    else if (decode_pressed && ttft < c->headroom && o->n_prefill > c->min_prefill) a = PLANNER_TO_DECODE;
    if (a == PLANNER_HOLD) {
        if (ttft > 1.0 && decode_pressed)
            return hold(why, n, "TTFT %.2fx and ITL %.2fx their targets: more ranks are needed, none can move", ttft,
                        itl);
        return hold(why, n, "TTFT %.2fx, ITL %.2fx their targets", ttft, itl);
    }
    if (why && n)
        snprintf(why, n, "TTFT %.2fx, ITL %.2fx their targets, decode KV %.0f%% (%d prefill, %d decode ranks, %d "
                 "prompts queued)", ttft, itl, 100.0 * o->decode_kv_usage, o->n_prefill, o->n_decode,
                 o->prefill_queue);
    p->last_move_t = o->t;
    p->moves++;
    return a;
}
