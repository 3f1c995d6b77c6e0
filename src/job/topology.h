/*
 * topology.h - where the job's ranks sit, and which decode rank each
 * prefill rank hands its KV cache to: the nearest one (same node, then
 * same switch, then any), spread evenly.
 *
 * Every rank fills its own job_topo_id_t from the environment
 * (job_topo_id_self: SLURMD_NODENAME or the hostname, SLURM_TOPOLOGY_ADDR)
 * and the job gathers them with one collective; the record is a fixed-size
 * plain struct so that is
 *
 *     job_topo_id_t me, *all = calloc(n_ranks, sizeof *all);
 *     job_topo_id_self(&me);
 *     MPI_Allgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, comm);
 *     job_topo_pair(n_ranks, roles, all, pair, near);
 *
 * SLURM_TOPOLOGY_ADDR is the dot-separated path from the top switch down to
 * the node ("top.s0.n1", pattern "switch.switch.node") that Slurm sets when
 * the site runs a topology plugin (topology/tree); without it, only "same
 * node" and "anywhere" are told apart.
 */
#ifndef ROTOR_JOB_TOPOLOGY_H
#define ROTOR_JOB_TOPOLOGY_H

#include <stddef.h>

#include "rotor/job.h"
#include "rotor/status.h"

#define JOB_TOPO_HOST_MAX 128
#define JOB_TOPO_ADDR_MAX 256

/* One rank's place: NUL-terminated strings, "" when unknown. */
typedef struct job_topo_id {
    char host[JOB_TOPO_HOST_MAX]; /* SLURMD_NODENAME, else gethostname() */
    char addr[JOB_TOPO_ADDR_MAX]; /* SLURM_TOPOLOGY_ADDR, else "" */
} job_topo_id_t;

/* How near a prefill rank is to the decode rank it was paired with. */
typedef enum {
    JOB_NEAR_NONE = 0, /* not a prefill rank (or no pair) */
    JOB_NEAR_NODE,     /* same node */
    JOB_NEAR_SWITCH,   /* same leaf switch (topology address equal but for the node) */
    JOB_NEAR_FABRIC,   /* anywhere else: through the fabric */
} job_near_t;

const char *job_near_name(job_near_t n);

/* This process's place from the environment: SLURMD_NODENAME (else the
 * hostname) and SLURM_TOPOLOGY_ADDR (else ""). RT_ERR_RANGE if either does
 * not fit; *out is written only on success. */
rt_status_t job_topo_id_self(job_topo_id_t *out);

/* How near two places are, as a number (larger is nearer: the same node
 * above any switch count; else the leading switches they share) and as a
 * class (near may be NULL). */
int job_topo_nearness(const job_topo_id_t *a, const job_topo_id_t *b, job_near_t *near);

/* Pair every prefill rank with a decode rank. ids and roles have n_ranks
 * entries (ids[r] is rank r's place). Writes pair[r] (the decode rank for a
 * prefill rank r, -1 for every other rank) and near[r] (JOB_NEAR_NONE for
 * other ranks); both caller-owned arrays of n_ranks.
 *
 * The rule: a prefill rank goes to the decode rank that shares the most with
 * it: the same node first; then the longest run of leading topology-address
 * switches (so the same leaf switch before a shared parent switch); then any.
 * Among equally near decode ranks it takes the one with the fewest prefill
 * ranks so far, then the lowest rank. Prefill ranks are placed nearest tier
 * first (all same-node pairs, then all same-switch pairs, ...), so a far
 * prefill rank cannot take a load slot a near one would have used.
 * Deterministic: every rank computing it gets the same answer.
 *
 * A job with prefill ranks and no decode rank is refused (RT_ERR_INVALID);
 * a job without prefill ranks gets pair[] all -1. */
rt_status_t job_topo_pair(int n_ranks, const job_role_t *roles, const job_topo_id_t *ids, int *pair,
                          job_near_t *near);

/* The placement as one line for the text and HDF5 logs, e.g.
 * "1->3 node, 2->4 switch, 5->3 fabric" ("" when there is no prefill rank).
 * Truncated to fit size; returns the length it needed (as snprintf). */
int job_topo_describe(int n_ranks, const int *pair, const job_near_t *near, char *buf, size_t size);

#endif
