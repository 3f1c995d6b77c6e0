/*
 * planner.h - the SLO planner's decision: given what the last interval
 * looked like (TTFT and ITL against their targets, the prefill queue, how
 * many ranks prefill and decode), move one rank between the prefill and the
 * decode pools, or hold. Dynamo's SLA planner in spirit, reactive: it looks
 * at measured averages per interval, not at a load forecast.
 *
 * The rule, per interval with enough samples:
 *   ttft = mean TTFT / ttft target, itl = mean ITL / itl target;
 *   the decode pool is short of KV memory when its blocks in use reach
 *   kv_high of its pool (sequences are about to be preempted): that counts
 *   as decode pressure, like itl > 1;
 *   ttft > 1 (prompts wait) and itl < headroom and no KV shortage (decode
 *     has room to give): a decode rank becomes a prefill rank, if more than
 *     min_decode remain;
 *   decode pressure and ttft < headroom: a prefill rank becomes a decode
 *     rank, if more than min_prefill remain;
 *   both over their targets, or both within: hold (moving a rank cannot fix
 *   the first: the job needs more ranks; the second needs nothing).
 * After a move it holds for cooldown_s, so the move's effect is measured
 * before the next.
 *
 * predictive (Dynamo's SLA planner): it forecasts the load and sizes the
 * pools to it, before latencies show it. Every interval:
 *   - the demand on each pool, in tokens/s: prompt tokens that arrived for
 *     remote prefill (uncached and over disagg:max_local_prefill_tokens),
 *     and output tokens the decode ranks generated, each fed to a forecaster
 *     (planner:predictor: constant = the last interval; trend = Holt's
 *     double exponential smoothing, level and slope, one interval ahead);
 *     prompt tokens already queued add backlog / ttft target;
 *   - what one rank of each pool serves, in tokens/s: configured
 *     (planner:prefill_capacity_tps, planner:decode_capacity_tps, from a
 *     profile), or learnt from the ranks' steps: a prefill rank's tokens
 *     per busy second; for decode, a least-squares line of step time
 *     against batch size (t = a + c b, decode-only steps, older intervals
 *     weighing less) gives the batch b* whose step meets the ITL target
 *     (at most max_num_seqs), and b* / t(b*) tokens/s;
 *   - demand in ranks, P and D, each scaled up by its latency's ratio to
 *     target when that is over 1 (at most 2x: Dynamo's correction for what
 *     the model of the ranks misses, such as queueing);
 *   - the split that loads both pools alike: prefill ranks =
 *     round(N P / (P + D)) of the N ranks, within min_prefill/min_decode;
 *     when that is 0.75 rank or more from the current split (no flapping
 *     on noise), the planner moves as many ranks as it takes at once (then
 *     cooldown),
 *     never moving decode ranks away while their KV use is at kv_high.
 * It holds while it has no capacity for a pool yet, or no demand at all.
 *
 * Pure logic: no MPI, no clock of its own (callers pass times), so it is
 * unit-tested on its own. The job runs it on the planner rank (src/job).
 */
#ifndef ROTOR_PLANNER_H
#define ROTOR_PLANNER_H

#include <stddef.h>

typedef enum { PLANNER_REACTIVE = 0, PLANNER_PREDICTIVE } planner_mode_t;
typedef enum { PLANNER_PREDICT_CONSTANT = 0, PLANNER_PREDICT_TREND } planner_predictor_t;

typedef struct {
    planner_mode_t mode;
    planner_predictor_t predictor; /* predictive mode */
    double prefill_capacity_tps;   /* predictive: prompt tokens/s one prefill rank serves; 0 = learn */
    double decode_capacity_tps;    /* predictive: output tokens/s one decode rank serves within the ITL
                                      target; 0 = learn */
    int max_num_seqs;              /* predictive: a decode rank's batch limit (engine:max_num_seqs) */
    double ttft_slo_s;   /* target mean time to first token */
    double itl_slo_s;    /* target mean inter-token latency */
    double headroom;     /* the other side's ratio must be below this to give a rank (< 1) */
    double kv_high;      /* decode KV use (0..1) that counts as decode pressure; 0 = ignore */
    double cooldown_s;   /* hold this long after a move */
    int min_samples;     /* fewer TTFT and ITL samples in an interval: hold */
    int min_prefill, min_decode; /* ranks each pool keeps */
} planner_config_t;

/* What rank 0 saw in one interval. */
typedef struct {
    double t;                 /* end of the interval (seconds, any clock the caller keeps) */
    int n_prefill, n_decode;  /* ranks up in each pool */
    int n_ttft;               /* requests that got their first token */
    double ttft_mean_s;
    int n_itl;                /* token gaps measured */
    double itl_mean_s;
    int prefill_queue;        /* requests waiting for or on a prefill rank */
    double decode_kv_usage;   /* KV blocks in use / pool, over the decode ranks up (0..1) */
    /* the load and the ranks' work, for the predictive mode */
    double interval_s;        /* length of the interval */
    double prefill_tokens_in; /* prompt tokens routed for remote prefill (demand on the prefill pool) */
    double prefill_backlog_tokens; /* prompt tokens waiting for or on prefill ranks at the end */
    double decode_tokens;     /* output tokens the decode ranks generated */
    double prefill_tokens_done, prefill_busy_s; /* prefill ranks' steps: tokens, seconds */
    /* decode ranks' decode-only steps, for the line t = a + c b: count,
     * sum b, sum t, sum b^2, sum b t (b = sequences, t = step seconds) */
    double fit_n, fit_b, fit_t, fit_bb, fit_bt;
} planner_obs_t;

/* A forecaster of one series (tokens/s per interval). */
typedef struct {
    planner_predictor_t kind;
    int n;               /* observations so far */
    double level, slope; /* trend: Holt's state */
} planner_forecast_t;

void planner_forecast_init(planner_forecast_t *f, planner_predictor_t kind);
void planner_forecast_add(planner_forecast_t *f, double x);
/* The value expected for the next interval (>= 0); 0 before any observation. */
double planner_forecast_next(const planner_forecast_t *f);

/* The last decision's view (for the log): the forecast and capacities in
 * the predictive mode (zero in the reactive one), and how many ranks move. */
typedef struct {
    double prefill_tps, decode_tps;         /* forecast demand, tokens/s */
    double prefill_cap_tps, decode_cap_tps; /* per rank, configured or learnt; 0 = unknown */
    int target_prefill;                     /* the split it aims at; -1 if none */
    int n_moves;                            /* ranks to move with this decision (0 on hold) */
} planner_view_t;

typedef enum { PLANNER_HOLD = 0, PLANNER_TO_PREFILL, PLANNER_TO_DECODE } planner_action_t;

typedef struct {
    planner_config_t cfg;
    double last_move_t; /* < 0: never */
    long moves;         /* decisions that moved ranks */
    long ranks_moved;
    planner_forecast_t f_prefill, f_decode;
    double prefill_cap_learnt;                      /* EMA of tokens per busy second; 0 = none */
    double fit_n, fit_b, fit_t, fit_bb, fit_bt;     /* decayed sums (planner_obs_t) */
    planner_view_t last;                            /* the last decision's view */
} planner_t;

void planner_init(planner_t *p, const planner_config_t *cfg);
/* The decision for one interval; why (size n, may be NULL) receives the
 * reason in words, for the log; p->last.n_moves says how many ranks move
 * (1 in the reactive mode). */
planner_action_t planner_decide(planner_t *p, const planner_obs_t *o, char *why, size_t n);
const char *planner_action_name(planner_action_t a);

#endif
