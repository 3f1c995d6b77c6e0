/*
 * roles.c - [roles]: which rank does what. Rank lists: "0", "1-3", "4,6",
 * "1-" (to the last rank), "" (none).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/job.h"

const char *job_role_name(job_role_t r)
{
    switch (r) {
    case JOB_ROLE_ROUTER: return "router";
    case JOB_ROLE_WORKER: return "worker";
    case JOB_ROLE_PREFILL: return "prefill";
    case JOB_ROLE_DECODE: return "decode";
    case JOB_ROLE_PLANNER: return "planner";
    case JOB_ROLE_EXPERT: return "expert";
    case JOB_ROLE_NONE: break;
    }
    return "none";
}

static rt_status_t parse_rank(const char **p, long *out)
{
    if (!isdigit((unsigned char)**p)) return RT_ERR_INVALID;
    errno = 0;
    char *end;
    long v = strtol(*p, &end, 10);
    if (errno || v > 1 << 24) return RT_ERR_RANGE;
    *p = end;
    *out = v;
    return RT_OK;
}

rt_status_t job_rank_list_parse(const char *text, int n_ranks, bool *in_list)
{
    for (int i = 0; i < n_ranks; i++) in_list[i] = false;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        long lo, hi;
        rt_status_t st = parse_rank(&p, &lo);
        if (st) return rt_error_set(RT_ERR_INVALID, "'%s' is not a rank list (like 0, 1-3, 4,6 or 1-)", text);
        hi = lo;
        while (*p == ' ') p++;
        if (*p == '-') {
            p++;
            while (*p == ' ') p++;
            if (*p == ',' || *p == '\0') {
                hi = n_ranks - 1;
                if (lo > hi) hi = lo - 1; /* "N-" past the end: empty */
            } else if (parse_rank(&p, &hi) || hi < lo) {
                return rt_error_set(RT_ERR_INVALID, "'%s' is not a rank list (like 0, 1-3, 4,6 or 1-)", text);
            }
        }
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) return rt_error_set(RT_ERR_INVALID, "'%s' is not a rank list (like 0, 1-3, 4,6 or 1-)", text);
        for (long r = lo; r <= hi; r++) {
            if (r >= n_ranks)
                return rt_error_set(RT_ERR_RANGE, "'%s' names rank %ld but the job has %d rank%s", text, r, n_ranks,
                                    n_ranks == 1 ? "" : "s");
            in_list[r] = true;
        }
    }
    return RT_OK;
}

rt_status_t job_roles_parse(const cfg_t *cfg, int n_ranks, job_role_t *roles)
{
    static const struct {
        const char *key;
        job_role_t role;
    } keys[] = {{"roles:router", JOB_ROLE_ROUTER},   {"roles:prefill", JOB_ROLE_PREFILL},
                {"roles:decode", JOB_ROLE_DECODE},   {"roles:planner", JOB_ROLE_PLANNER},
                {"roles:worker", JOB_ROLE_WORKER}};
    bool *in = calloc((size_t)n_ranks, sizeof *in);
    if (!in) return rt_error_set(RT_ERR_NOMEM, "roles: out of memory");
    for (int i = 0; i < n_ranks; i++) roles[i] = JOB_ROLE_NONE;
    rt_status_t st = RT_OK;
    int n_router = 0, n_planner = 0, n_prefill = 0, n_decode = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && !st; k++) {
        const char *text = cfg_str(cfg, keys[k].key);
        if ((st = job_rank_list_parse(text, n_ranks, in))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", rt_error_msg());
            st = rt_error_set(st, "%s: %s", keys[k].key, msg);
            break;
        }
        /* the worker key's default, "1-", is every rank the other roles leave */
        const bool rest = keys[k].role == JOB_ROLE_WORKER && strcmp(text, "1-") == 0;
        for (int r = 0; r < n_ranks; r++) {
            if (!in[r] || (rest && roles[r] != JOB_ROLE_NONE)) continue;
            if (roles[r] != JOB_ROLE_NONE) {
                st = rt_error_set(RT_ERR_INVALID, "%s: rank %d is already a %s rank (roles overlap)", keys[k].key, r,
                                  job_role_name(roles[r]));
                break;
            }
            roles[r] = keys[k].role;
            n_router += keys[k].role == JOB_ROLE_ROUTER;
            n_planner += keys[k].role == JOB_ROLE_PLANNER;
            n_prefill += keys[k].role == JOB_ROLE_PREFILL;
            n_decode += keys[k].role == JOB_ROLE_DECODE;
        }
    }
    free(in);
    if (st) return st;
    if (n_router != 1 || roles[0] != JOB_ROLE_ROUTER)
        return rt_error_set(RT_ERR_INVALID, "roles:router: must be exactly rank 0 (it is '%s')",
                            cfg_str(cfg, "roles:router"));
    if (n_planner > 1)
        return rt_error_set(RT_ERR_INVALID, "roles:planner: at most one planner rank (it names %d)", n_planner);
    for (int r = 0; r < n_ranks; r++)
        if (roles[r] == JOB_ROLE_NONE)
            return rt_error_set(RT_ERR_INVALID,
                                "roles: rank %d of %d has no role (add it to roles:worker, roles:prefill, "
                                "roles:decode or roles:planner)",
                                r, n_ranks);
    if ((n_prefill > 0) != (n_decode > 0))
        return rt_error_set(RT_ERR_INVALID, "roles:%s: disaggregated serving needs both prefill and decode ranks",
                            n_prefill ? "decode" : "prefill");
    return RT_OK;
}
