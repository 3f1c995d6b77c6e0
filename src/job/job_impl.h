/*
 * job_impl.h - parts of the job shared between its files (not public).
 */
#ifndef ROTOR_JOB_IMPL_H
#define ROTOR_JOB_IMPL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "rotor/config.h"
#include "rotor/dispatch.h"
#include "rotor/hlog.h"
#include "rotor/job.h"

struct event_base;

/* A broken invariant: log and abort the job. */
#define RT_PANIC(...)                                                                                        \
    do {                                                                                                     \
        fprintf(stderr, "rotor: fatal: " __VA_ARGS__);                                                       \
        fputc('\n', stderr);                                                                                 \
        abort();                                                                                             \
    } while (0)

/* Ranks that run an engine: WORKER, PREFILL, DECODE. */
static inline bool job_role_is_engine(job_role_t r)
{
    return r == JOB_ROLE_WORKER || r == JOB_ROLE_PREFILL || r == JOB_ROLE_DECODE;
}

/* planner_rank.c: the planner rank's loop until SHUTDOWN; returns the exit
 * code. */
int job_planner_main(const cfg_t *cfg);
/* planner_rank.c: RT_ERR_INVALID (with a message) for a bad planner:mode or
 * planner:predictor; every rank checks it at start. */
rt_status_t job_planner_config_check(const cfg_t *cfg);

/* ep.c: expert parallelism over an engine instance's communicator (comm,
 * not owned; it must outlive the object).
 * Replicated attention (dp false): the instance's rank 0 (the leader)
 * passes job_ep_engine() to its engine and, when its worker loop ends,
 * job_ep_stop() releases the others, which run job_ep_follower_main until
 * then.
 * Data-parallel attention (dp true, roles:ep_attention): every rank runs
 * job_worker_main with job_ep_engine(); the loops step together
 * (job_ep_sync) and a rank whose step made no exchange joins with an empty
 * forward pass (job_ep_exchanges tells). */
typedef struct job_ep job_ep_t;
rt_status_t job_ep_create(MPI_Comm comm, bool dp, job_ep_t **out);
const engine_ep_t *job_ep_engine(const job_ep_t *ep);
bool job_ep_dp(const job_ep_t *ep);
/* Collective over the instance: *any_work = some rank has work; returns
 * true while some rank is not done (its loop must go on). */
bool job_ep_sync(job_ep_t *ep, bool has_work, bool done, bool *any_work);
/* MoE exchanges this rank made so far (data-parallel attention). */
long job_ep_exchanges(const job_ep_t *ep);
void job_ep_stop(job_ep_t *ep);
void job_ep_destroy(job_ep_t *ep);
int job_ep_follower_main(const cfg_t *cfg, job_ep_t *ep);

/* worker.c: a worker rank's loop until SHUTDOWN; returns the exit code. ep:
 * this rank leads an expert-parallel instance (NULL: none); xfer_comm: the
 * worker ranks' communicator, over which the KV transfer is made (collective). */
int job_worker_main(const cfg_t *cfg, job_role_t role, job_ep_t *ep, MPI_Comm xfer_comm);

/* dispatch_mpi.c: rank 0's dispatcher over the worker ranks (roles[r] is
 * WORKER, PREFILL or DECODE; ids[r] where rank r sits, topology.h, read at
 * creation: a prefill rank is chosen among the nearest to the decode rank). Polls MPI
 * from a timer on base. hlog may be NULL. The dispatcher owns its state;
 * destroy after shutdown completed. */
struct job_topo_id;
rt_status_t dispatch_mpi_create(struct event_base *base, const cfg_t *cfg, const job_role_t *roles,
                                const struct job_topo_id *ids, int n_ranks, hlog_t *hlog, dispatch_t *out);
/* Send SHUTDOWN to every worker; done(arg) runs once all said BYE (or were
 * down, or timeout_s passed). */
void dispatch_mpi_shutdown(dispatch_t d, double timeout_s, void (*done)(void *arg), void *arg);
void dispatch_mpi_destroy(dispatch_t d);

#endif
