/*
 * kv_pick.c - the KV-aware router's choice of a worker (kv_router.h).
 */
#include <math.h>

#include "rotor/kv_router.h"

double kvr_cost(const kvr_params_t *p, const kvr_candidate_t *c, int32_t request_blocks)
{
    const int32_t overlap = c->overlap < request_blocks ? c->overlap : request_blocks;
    const double fresh = (double)(request_blocks - overlap); /* blocks to prefill, and to add */
    return p->overlap_weight * fresh + (double)c->active_blocks + fresh;
}

double kvr_coin(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

int kvr_pick(const kvr_params_t *p, const kvr_candidate_t *c, int n, int32_t request_blocks, int start,
             uint64_t *rng)
{
    if (n <= 0) return -1;
    if (start < 0 || start >= n) start = 0;
    int best = -1;
    double best_cost = 0, lo = 0, hi = 0;
    for (int k = 0; k < n; k++) {
        const int i = (start + k) % n;
        if (!c[i].eligible) continue;
        const double cost = kvr_cost(p, &c[i], request_blocks);
        if (best < 0) lo = hi = cost;
        lo = cost < lo ? cost : lo;
        hi = cost > hi ? cost : hi;
        if (best < 0 || cost < best_cost || (cost == best_cost && c[i].n_inflight < c[best].n_inflight)) {
            best = i;
            best_cost = cost;
        }
    }
    if (best < 0 || !(p->temperature > 0) || hi <= lo) return best;
    /* softmax(-normalized cost / temperature), summed in the same order twice */
    double total = 0;
    for (int k = 0; k < n; k++) {
        const int i = (start + k) % n;
        if (c[i].eligible) total += exp(-(kvr_cost(p, &c[i], request_blocks) - lo) / (hi - lo) / p->temperature);
    }
    double u = kvr_coin(rng) * total;
    for (int k = 0; k < n; k++) {
        const int i = (start + k) % n;
        if (!c[i].eligible) continue;
        u -= exp(-(kvr_cost(p, &c[i], request_blocks) - lo) / (hi - lo) / p->temperature);
        if (u < 0) return i;
    }
    return best; /* rounding left u at 0 or above */
}
