/*
 * planner.c - the SLO planner's rule (include/rotor/planner.h).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rotor/planner.h"

/* Holt's smoothing constants (trend predictor): level, slope */
#define FORECAST_ALPHA 0.5
#define FORECAST_BETA 0.3
/* learnt capacities: weight of the newest interval (prefill), decay of the
 * older intervals' steps in the decode line */
#define PREFILL_CAP_EMA 0.5
#define DECODE_FIT_DECAY 0.8
/* the predictive split moves only when the ideal number of prefill ranks is
 * this far from the current one (hysteresis around the rounding point) */
#define SPLIT_MARGIN 0.75

void planner_forecast_init(planner_forecast_t *f, planner_predictor_t kind)
{
    *f = (planner_forecast_t){.kind = kind};
}

void planner_forecast_add(planner_forecast_t *f, double x)
{
    if (f->n++ == 0 || f->kind == PLANNER_PREDICT_CONSTANT) {
        f->level = x;
        f->slope = 0;
        return;
    }
    const double prev = f->level;
    f->level = FORECAST_ALPHA * x + (1 - FORECAST_ALPHA) * (f->level + f->slope);
    f->slope = FORECAST_BETA * (f->level - prev) + (1 - FORECAST_BETA) * f->slope;
}

double planner_forecast_next(const planner_forecast_t *f)
{
    const double v = f->n ? f->level + f->slope : 0;
    return v > 0 ? v : 0;
}

void planner_init(planner_t *p, const planner_config_t *cfg)
{
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    p->last_move_t = -1.0;
    p->last.target_prefill = -1;
    planner_forecast_init(&p->f_prefill, cfg->predictor);
    planner_forecast_init(&p->f_decode, cfg->predictor);
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

/* Decode capacity per rank, tokens/s within the ITL target, from the line
 * t = a + c b fitted to the decode steps seen; 0 if none yet. */
static double decode_capacity(const planner_t *p)
{
    const planner_config_t *c = &p->cfg;
    if (c->decode_capacity_tps > 0) return c->decode_capacity_tps;
    const double n = p->fit_n, T = c->itl_slo_s;
    if (n < 3) return 0;
    const double bmax = c->max_num_seqs > 0 ? c->max_num_seqs : 256;
    const double det = n * p->fit_bb - p->fit_b * p->fit_b;
    if (det <= 1e-9 * n * n) { /* one batch size seen: what it gave, no more (pessimistic) */
        const double t0 = p->fit_t / n, b0 = p->fit_b / n;
        return t0 > 0 ? b0 / t0 : 0;
    }
    double slope = (n * p->fit_bt - p->fit_b * p->fit_t) / det;
    double a = (p->fit_t - slope * p->fit_b) / n;
    if (slope <= 0) { /* flat (or noise): the step costs its mean at any batch */
        slope = 0;
        a = p->fit_t / n;
    }
    double b = slope > 0 ? (T - a) / slope : bmax;
    if (b > bmax) b = bmax;
    if (b < 1) b = 1; /* the target cannot be met: one sequence at a time */
    const double t = a + slope * b;
    return t > 0 ? b / t : 0;
}

static void learn(planner_t *p, const planner_obs_t *o)
{
    if (o->interval_s > 0) {
        planner_forecast_add(&p->f_prefill, o->prefill_tokens_in / o->interval_s);
        planner_forecast_add(&p->f_decode, o->decode_tokens / o->interval_s);
    }
    if (o->prefill_busy_s > 0.02 * (o->interval_s > 0 ? o->interval_s : 1) && o->prefill_tokens_done > 0) {
        const double x = o->prefill_tokens_done / o->prefill_busy_s;
        p->prefill_cap_learnt = p->prefill_cap_learnt > 0
                                    ? PREFILL_CAP_EMA * x + (1 - PREFILL_CAP_EMA) * p->prefill_cap_learnt
                                    : x;
    }
    p->fit_n = DECODE_FIT_DECAY * p->fit_n + o->fit_n;
    p->fit_b = DECODE_FIT_DECAY * p->fit_b + o->fit_b;
    p->fit_t = DECODE_FIT_DECAY * p->fit_t + o->fit_t;
    p->fit_bb = DECODE_FIT_DECAY * p->fit_bb + o->fit_bb;
    p->fit_bt = DECODE_FIT_DECAY * p->fit_bt + o->fit_bt;
    planner_view_t *v = &p->last;
    v->prefill_tps = planner_forecast_next(&p->f_prefill);
    v->decode_tps = planner_forecast_next(&p->f_decode);
    v->prefill_cap_tps = p->cfg.prefill_capacity_tps > 0 ? p->cfg.prefill_capacity_tps : p->prefill_cap_learnt;
    v->decode_cap_tps = decode_capacity(p);
}

static planner_action_t decide_predictive(planner_t *p, const planner_obs_t *o, char *why, size_t n)
{
    const planner_config_t *c = &p->cfg;
    planner_view_t *v = &p->last;
    if (v->prefill_cap_tps <= 0 || v->decode_cap_tps <= 0)
        return hold(why, n, "learning what a rank serves (prefill %.0f, decode %.0f tokens/s so far)",
                    v->prefill_cap_tps, v->decode_cap_tps);
    /* demand in ranks: the forecast, plus the prompts queued drained within
     * an interval; decode corrected by how far ITL is over its target */
    const double drain_s = o->interval_s > 0 ? o->interval_s : 1;
    double P = (v->prefill_tps + o->prefill_backlog_tokens / drain_s) / v->prefill_cap_tps;
    double D = v->decode_tps / v->decode_cap_tps;
    const double itl = o->n_itl >= c->min_samples ? o->itl_mean_s / c->itl_slo_s : 0;
    if (itl > 1) D *= itl < 2 ? itl : 2;
    if (P + D <= 0) return hold(why, n, "no load (%.0f, %.0f tokens/s)", v->prefill_tps, v->decode_tps);
    const int N = o->n_prefill + o->n_decode;
    const double ideal = N * P / (P + D);
    int target = (int)lround(ideal);
    if (target < c->min_prefill) target = c->min_prefill;
    if (target > N - c->min_decode) target = N - c->min_decode;
    v->target_prefill = target;
    const bool kv_short = c->kv_high > 0 && o->decode_kv_usage >= c->kv_high;
    char what[160];
    snprintf(what, sizeof what, "demand %.2f prefill + %.2f decode ranks (%.0f / %.0f, %.0f / %.0f tokens/s): "
             "%d prefill of %d", P, D, v->prefill_tps + o->prefill_backlog_tokens / drain_s, v->prefill_cap_tps,
             v->decode_tps, v->decode_cap_tps, target, N);
    if (target == o->n_prefill || fabs(ideal - o->n_prefill) < SPLIT_MARGIN) {
        if (why && n) snprintf(why, n, "%s: the split holds", what);
        return PLANNER_HOLD;
    }
    if (target > o->n_prefill && kv_short) {
        if (why && n) snprintf(why, n, "%s, but decode KV is at %.0f%%: no decode rank leaves", what,
                               100.0 * o->decode_kv_usage);
        return PLANNER_HOLD;
    }
    v->n_moves = target > o->n_prefill ? target - o->n_prefill : o->n_prefill - target;
    if (why && n) snprintf(why, n, "%s", what);
    p->last_move_t = o->t;
    p->moves++;
    p->ranks_moved += v->n_moves;
    return target > o->n_prefill ? PLANNER_TO_PREFILL : PLANNER_TO_DECODE;
}

planner_action_t planner_decide(planner_t *p, const planner_obs_t *o, char *why, size_t n)
{
    const planner_config_t *c = &p->cfg;
    p->last.n_moves = 0;
    p->last.target_prefill = -1;
    if (c->mode == PLANNER_PREDICTIVE) learn(p, o); /* every interval, cooling down or not */
    if (p->last_move_t >= 0 && o->t - p->last_move_t < c->cooldown_s)
        return hold(why, n, "cooling down (%.1f of %.1f s since the last move)", o->t - p->last_move_t, c->cooldown_s);
    if (c->mode == PLANNER_PREDICTIVE) return decide_predictive(p, o, why, n);
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
    p->ranks_moved++;
    p->last.n_moves = 1;
    return a;
}
