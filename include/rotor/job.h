/*
 * job.h - rotor as one MPI job: `mpirun -np N rotor serve CONFIG` (or srun).
 * Every rank reads the same config; [roles] maps ranks to roles. Rank 0 is
 * the router: the OpenAI front end (include/rotor/frontend.h), the router
 * policy and the HDF5 log. Worker ranks run an engine each and talk to rank 0
 * over the control plane (include/rotor/ctrl.h). A job of one rank serves
 * with an in-process engine.
 */
#ifndef ROTOR_JOB_H
#define ROTOR_JOB_H

#include <stdbool.h>

#include "rotor/config.h"
#include "rotor/status.h"

typedef enum {
    JOB_ROLE_NONE = 0,
    JOB_ROLE_ROUTER,
    JOB_ROLE_WORKER,  /* prefill + decode (aggregated) */
    JOB_ROLE_PREFILL,
    JOB_ROLE_DECODE,
    JOB_ROLE_PLANNER,
    JOB_ROLE_EXPERT,  /* a rank of an expert-parallel engine instance other than its leader
                         (roles:ep; set by the job, not a roles:* key) */
} job_role_t;

const char *job_role_name(job_role_t r);

/* Role of every rank of a job of n_ranks, from the roles:* keys. Refuses maps
 * with a rank missing, a rank in two roles, ranks past the job's size, a
 * router other than rank 0, or more than one planner; the message names the
 * key. roles (n_ranks entries) is caller-owned. */
rt_status_t job_roles_parse(const cfg_t *cfg, int n_ranks, job_role_t *roles);

/* Parse a rank list ("0", "1-3", "4,6", "1-" = to n_ranks-1, "" = none) into
 * a flag per rank; RT_ERR_INVALID with a message on bad syntax, RT_ERR_RANGE
 * for ranks >= n_ranks. */
rt_status_t job_rank_list_parse(const char *text, int n_ranks, bool *in_list);

/* The whole job on this rank: MPI_Init .. MPI_Finalize. Returns the process
 * exit code (0 after an orderly shutdown). */
int job_serve(const char *config_path, int n_overrides, char **overrides);

#endif
