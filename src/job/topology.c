/*
 * topology.c - prefill/decode placement from node names and Slurm topology
 * addresses (see topology.h for the rule).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job/topology.h"

const char *job_near_name(job_near_t n)
{
    switch (n) {
    case JOB_NEAR_NODE: return "node";
    case JOB_NEAR_SWITCH: return "switch";
    case JOB_NEAR_FABRIC: return "fabric";
    case JOB_NEAR_NONE: break;
    }
    return "none";
}

rt_status_t job_topo_id_self(job_topo_id_t *out)
{
    job_topo_id_t id = {{0}, {0}};
    const char *node = getenv("SLURMD_NODENAME");
    if (node && *node) {
        if (strlen(node) >= sizeof id.host)
            return rt_error_set(RT_ERR_RANGE, "SLURMD_NODENAME is longer than %zu bytes", sizeof id.host - 1);
        strcpy(id.host, node);
    } else if (gethostname(id.host, sizeof id.host) != 0) {
        return rt_error_set(RT_ERR_RANGE, "gethostname: the host name is longer than %zu bytes",
                            sizeof id.host - 1);
    }
    id.host[sizeof id.host - 1] = '\0';
    const char *addr = getenv("SLURM_TOPOLOGY_ADDR");
    if (addr) {
        if (strlen(addr) >= sizeof id.addr)
            return rt_error_set(RT_ERR_RANGE, "SLURM_TOPOLOGY_ADDR is longer than %zu bytes", sizeof id.addr - 1);
        strcpy(id.addr, addr);
    }
    *out = id;
    return RT_OK;
}

/* Length of the switch part of a topology address: all but the last
 * component ("top.s0" of "top.s0.n1"); 0 when there is none. */
static size_t switch_len(const char *addr)
{
    const char *dot = strrchr(addr, '.');
    return dot ? (size_t)(dot - addr) : 0;
}

/* Number of leading switch components two places share ("top.s0.n1" and
 * "top.s0.n2": 2; "top.s0.n1" and "top.s1.n3": 1; "s1.x" and "s10.y": 0). */
static int common_switches(const job_topo_id_t *a, const job_topo_id_t *b, int *all_equal)
{
    size_t la = switch_len(a->addr), lb = switch_len(b->addr);
    int n = 0;
    size_t i = 0;
    *all_equal = 0;
    if (la == 0 || lb == 0) return 0;
    for (;;) {
        int end_a = i == la || a->addr[i] == '.';
        int end_b = i == lb || b->addr[i] == '.';
        if (end_a || end_b) {
            if (!(end_a && end_b)) return n; /* one component is a prefix of the other */
            n++;
            if (i == la || i == lb) {
                *all_equal = la == lb;
                return n;
            }
        } else if (a->addr[i] != b->addr[i]) {
            return n;
        }
        i++;
    }
}

/* Nearness as a number (larger is nearer) and as a class. */
enum { SCORE_NODE = JOB_TOPO_ADDR_MAX };
static int score(const job_topo_id_t *p, const job_topo_id_t *d, job_near_t *near)
{
    if (p->host[0] && strcmp(p->host, d->host) == 0) {
        *near = JOB_NEAR_NODE;
        return SCORE_NODE;
    }
    int all_equal;
    int n = common_switches(p, d, &all_equal);
    *near = all_equal ? JOB_NEAR_SWITCH : JOB_NEAR_FABRIC;
    return n;
}

int job_topo_nearness(const job_topo_id_t *a, const job_topo_id_t *b, job_near_t *near)
{
    job_near_t n;
    const int sc = score(a, b, &n);
    if (near) *near = n;
    return sc;
}

rt_status_t job_topo_pair(int n_ranks, const job_role_t *roles, const job_topo_id_t *ids, int *pair,
                          job_near_t *near)
{
    int n_prefill = 0, n_decode = 0;
    for (int r = 0; r < n_ranks; r++) {
        n_prefill += roles[r] == JOB_ROLE_PREFILL;
        n_decode += roles[r] == JOB_ROLE_DECODE;
    }
    if (n_prefill > 0 && n_decode == 0)
        return rt_error_set(RT_ERR_INVALID, "placement: %d prefill rank%s but no decode rank", n_prefill,
                            n_prefill == 1 ? "" : "s");
    int *load = NULL; /* prefill ranks given to each decode rank so far */
    int *best = NULL; /* each prefill rank's nearest score */
    if (n_prefill > 0) {
        load = calloc((size_t)n_ranks, sizeof *load);
        best = calloc((size_t)n_ranks, sizeof *best);
        if (!load || !best) {
            free(load);
            free(best);
            return rt_error_set(RT_ERR_NOMEM, "placement: out of memory");
        }
    }
    for (int r = 0; r < n_ranks; r++) {
        pair[r] = -1;
        near[r] = JOB_NEAR_NONE;
    }
    if (n_prefill == 0) return RT_OK;
    for (int p = 0; p < n_ranks; p++) {
        if (roles[p] != JOB_ROLE_PREFILL) continue;
        best[p] = -1;
        for (int d = 0; d < n_ranks; d++) {
            if (roles[d] != JOB_ROLE_DECODE) continue;
            job_near_t nr;
            int s = score(&ids[p], &ids[d], &nr);
            if (s > best[p]) best[p] = s;
        }
    }
    /* nearest tier first; within a tier, the least loaded decode rank */
    for (;;) {
        int tier = -1;
        for (int p = 0; p < n_ranks; p++)
            if (roles[p] == JOB_ROLE_PREFILL && pair[p] < 0 && best[p] > tier) tier = best[p];
        if (tier < 0) break;
        for (int p = 0; p < n_ranks; p++) {
            if (roles[p] != JOB_ROLE_PREFILL || pair[p] >= 0 || best[p] != tier) continue;
            int pick = -1;
            job_near_t pick_near = JOB_NEAR_NONE;
            for (int d = 0; d < n_ranks; d++) {
                if (roles[d] != JOB_ROLE_DECODE) continue;
                job_near_t nr;
                if (score(&ids[p], &ids[d], &nr) != tier) continue;
                if (pick < 0 || load[d] < load[pick]) {
                    pick = d;
                    pick_near = nr;
                }
            }
            pair[p] = pick; /* a decode rank scored best[p], so pick >= 0 */
            near[p] = pick_near;
            load[pick]++;
        }
    }
    free(load);
    free(best);
    return RT_OK;
}

int job_topo_describe(int n_ranks, const int *pair, const job_near_t *near, char *buf, size_t size)
{
    size_t len = 0;
    if (size) buf[0] = '\0';
    for (int r = 0; r < n_ranks; r++) {
        if (pair[r] < 0) continue;
        int n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0, "%s%d->%d %s",
                         len ? ", " : "", r, pair[r], job_near_name(near[r]));
        if (n > 0) len += (size_t)n;
    }
    return (int)len;
}
