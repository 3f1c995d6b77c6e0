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
 * Pure logic: no MPI, no clock of its own (callers pass times), so it is
 * unit-tested on its own. The job runs it on the planner rank (src/job).
 */
#ifndef ROTOR_PLANNER_H
#define ROTOR_PLANNER_H

#include <stddef.h>

typedef struct {
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
} planner_obs_t;

typedef enum { PLANNER_HOLD = 0, PLANNER_TO_PREFILL, PLANNER_TO_DECODE } planner_action_t;

typedef struct {
    planner_config_t cfg;
    double last_move_t; /* < 0: never */
    long moves;
} planner_t;

void planner_init(planner_t *p, const planner_config_t *cfg);
/* The decision for one interval; why (size n, may be NULL) receives the
 * reason in words, for the log. */
planner_action_t planner_decide(planner_t *p, const planner_obs_t *o, char *why, size_t n);
const char *planner_action_name(planner_action_t a);

#endif
