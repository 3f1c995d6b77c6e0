/*
 * planner_rank.c - the planner rank's loop: every OBS from rank 0 (one per
 * planner:interval_s) goes through the planner's rule (planner.h); the
 * decision goes back as PLAN (a hold too, for the log); rank 0 carries out
 * a move. Stops on SHUTDOWN.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job_impl.h"
#include "rotor/ctrl.h"
#include "rotor/log.h"
#include "rotor/planner.h"

rt_status_t job_planner_config_check(const cfg_t *cfg)
{
    const char *mode = cfg_str(cfg, "planner:mode"), *pred = cfg_str(cfg, "planner:predictor");
    if (strcmp(mode, "reactive") != 0 && strcmp(mode, "predictive") != 0)
        return rt_error_set(RT_ERR_INVALID, "planner:mode: '%s' is not reactive or predictive", mode);
    if (strcmp(pred, "constant") != 0 && strcmp(pred, "trend") != 0)
        return rt_error_set(RT_ERR_INVALID, "planner:predictor: '%s' is not constant or trend", pred);
    return RT_OK;
}

static planner_config_t job_planner_config(const cfg_t *cfg)
{
    const char *mode = cfg_str(cfg, "planner:mode"), *pred = cfg_str(cfg, "planner:predictor");
    return (planner_config_t){.mode = strcmp(mode, "predictive") == 0 ? PLANNER_PREDICTIVE : PLANNER_REACTIVE,
                              .predictor = strcmp(pred, "trend") == 0 ? PLANNER_PREDICT_TREND
                                                                      : PLANNER_PREDICT_CONSTANT,
                              .prefill_capacity_tps = cfg_float(cfg, "planner:prefill_capacity_tps"),
                              .decode_capacity_tps = cfg_float(cfg, "planner:decode_capacity_tps"),
                              .max_num_seqs = (int)cfg_int(cfg, "engine:max_num_seqs"),
                              .ttft_slo_s = cfg_float(cfg, "planner:ttft_slo_ms") / 1e3,
                              .itl_slo_s = cfg_float(cfg, "planner:itl_slo_ms") / 1e3,
                              .headroom = cfg_float(cfg, "planner:headroom"),
                              .kv_high = cfg_float(cfg, "planner:kv_high"),
                              .cooldown_s = cfg_float(cfg, "planner:cooldown_s"),
                              .min_samples = (int)cfg_int(cfg, "planner:min_samples"),
                              .min_prefill = 1,
                              .min_decode = 1};
}

int job_planner_main(const cfg_t *cfg)
{
    planner_t p;
    planner_config_t pc = job_planner_config(cfg);
    planner_init(&p, &pc);
    RT_LOG_INFO("planner up (%s%s%s): TTFT target %.0f ms, ITL target %.0f ms, every %.1f s",
                cfg_str(cfg, "planner:mode"), pc.mode == PLANNER_PREDICTIVE ? ", predictor " : "",
                pc.mode == PLANNER_PREDICTIVE ? cfg_str(cfg, "planner:predictor") : "", pc.ttft_slo_s * 1e3,
                pc.itl_slo_s * 1e3, cfg_float(cfg, "planner:interval_s"));
    size_t cap = 4096;
    uint8_t *rx = malloc(cap);
    if (!rx) RT_PANIC("planner: out of memory");
    for (int stop = 0; !stop;) {
        int count, from, tag;
        if (!ctrl_try_recv(0, &rx, &cap, &count, &from, &tag)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (tag == CTRL_TAG_SHUTDOWN) {
            stop = 1;
        } else if (tag == CTRL_TAG_OBS && (size_t)count == sizeof(planner_obs_t)) {
            planner_obs_t o;
            memcpy(&o, rx, sizeof o);
            ctrl_plan_t plan = {0};
            plan.action = (int32_t)planner_decide(&p, &o, plan.why, sizeof plan.why);
            plan.view = p.last;
            if (plan.action == PLANNER_HOLD) RT_LOG_DEBUG("planner: hold: %s", plan.why);
            else RT_LOG_INFO("planner: %s: %s", planner_action_name((planner_action_t)plan.action), plan.why);
            /* every decision goes back, holds too: rank 0 logs each interval */
            MPI_Send(&plan, sizeof plan, MPI_BYTE, 0, CTRL_TAG_PLAN, MPI_COMM_WORLD);
        } else {
            RT_LOG_WARN("planner: unexpected message tag %d (%d bytes)", tag, count);
        }
    }
    free(rx);
    RT_LOG_INFO("planner stopped after %ld moves (%ld ranks)", p.moves, p.ranks_moved);
    return 0;
}
