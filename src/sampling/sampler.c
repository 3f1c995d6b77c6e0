/*
 * sampler.c - choose the next token from a row of logits.
 *
 * The chain, in order (llama.cpp's order; filters see temperature-1 probs):
 *   1. penalties over the last penalty_last_n accepted tokens: repetition
 *      (positive logits divided, others multiplied), then frequency and
 *      presence (logit -= count * freq + (count > 0) * presence);
 *   2. temperature <= 0: greedy argmax, ties to the lowest id; otherwise
 *   3. top-k (a bounded heap, O(n log k), no full sort), top-p (the smallest
 *      set of best tokens whose mass reaches top_p, found by a quickselect on
 *      mass, O(n) expected, no full sort), min-p (drop p < min_p * p_max),
 *      then a draw from softmax(logit / temperature) with the request's
 *      xoshiro256** stream (one uniform per draw).
 * Ties between equal logits always go to the lower id, so every step is a
 * pure function of (logits, history, seed).
 *
 * The penalty history is a ring of the window plus a per-token count and a
 * list of the distinct tokens in the window (swap-remove, O(1) per accept),
 * so a step touches only the tokens it penalises. Everything is allocated at
 * create; sampler_sample never allocates.
 */
#include "rotor/fast_exp.h"
#include "rotor/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampling/rng.h"

/* the lane loops (log-sum-exp, argmax) are built for AVX-512, AVX2 and
 * baseline x86-64 and picked at load time */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define LANE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LANE_CLONES
#endif
#define LANES 16

typedef struct {
    float logit; /* after penalties */
    float w;     /* scratch weight: exp(logit - max) at top-p, the draw's weight */
    int32_t id;
} cand_t;

struct sampler {
    sampler_params_t p;
    int32_t n_vocab;
    rt_rng_t rng;
    cand_t *cand; /* (n_vocab) scratch for the filters */

    bool penalize;     /* any penalty on and a window */
    int32_t *ring;     /* (ring_cap) last accepted tokens; NULL for the whole history */
    int32_t ring_cap;  /* penalty_last_n, or 0 when the window is the whole history */
    int32_t ring_len;  /* tokens in the ring */
    int32_t ring_head; /* index of the oldest */
    int32_t *count;    /* (n_vocab) occurrences in the window */
    int32_t *distinct; /* (max_distinct) tokens with count > 0 */
    int32_t *pos;      /* (n_vocab) index of a token in distinct[] */
    float *saved;      /* (max_distinct) raw logits of distinct[] for the logprob */
    int32_t n_distinct;

    int32_t n_bias;    /* logit_bias entries (sampler_set_logit_bias) */
    int32_t *bias_id;  /* (n_bias) owned */
    float *bias;       /* (n_bias) owned */
    float *bias_raw;   /* (n_bias) the logits before the bias, for the logprob */

    int32_t n_suppressed; /* sampler_set_suppressed */
    int32_t *suppressed;  /* (n_suppressed) owned */
    bool suppress;        /* sampler_suppress: on */
    sampler_allowed_fn allowed; /* sampler_set_constraint */
    void *allowed_ud;
};

sampler_params_t sampler_params_default(void)
{
    return (sampler_params_t){
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
}

rt_status_t sampler_create(const sampler_params_t *p, int32_t n_vocab, sampler_t **out)
{
    if (!p || !out || n_vocab <= 0)
        return rt_error_set(RT_ERR_INVALID, "sampler_create: bad arguments (n_vocab %d)",
                            (int)n_vocab);
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p) ||
        !isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty) ||
        !(p->repetition_penalty > 0.0f && isfinite(p->repetition_penalty)) ||
        p->penalty_last_n < -1)
        return rt_error_set(RT_ERR_INVALID,
                            "sampler_create: bad parameters (repetition_penalty %g, "
                            "penalty_last_n %d)",
                            (double)p->repetition_penalty, (int)p->penalty_last_n);

    sampler_t *s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    rt_rng_seed(&s->rng, p->seed);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand)
        goto nomem;

    s->penalize = p->penalty_last_n != 0 &&
                  (p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                   p->presence_penalty != 0.0f);
    if (s->penalize) {
        int32_t max_distinct = n_vocab;
        if (p->penalty_last_n > 0) {
            s->ring_cap = p->penalty_last_n;
            if (s->ring_cap < max_distinct)
                max_distinct = s->ring_cap;
            s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring);
        }
        s->count = calloc((size_t)n_vocab, sizeof *s->count);
        s->pos = malloc((size_t)n_vocab * sizeof *s->pos);
        s->distinct = malloc((size_t)max_distinct * sizeof *s->distinct);
        s->saved = malloc((size_t)max_distinct * sizeof *s->saved);
        if ((s->ring_cap && !s->ring) || !s->count || !s->pos || !s->distinct || !s->saved)
            goto nomem;
    }
    *out = s;
    return RT_OK;
nomem:
    sampler_destroy(s);
    return rt_error_set(RT_ERR_NOMEM, "sampler_create: out of memory (n_vocab %d)",
                        (int)n_vocab);
}

void sampler_destroy(sampler_t *s)
{
    if (!s)
        return;
    free(s->bias_id);
    free(s->bias);
    free(s->bias_raw);
    free(s->suppressed);
    free(s->saved);
    free(s->distinct);
    free(s->pos);
    free(s->count);
    free(s->ring);
    free(s->cand);
    free(s);
}

/* ---- penalty history ---- */

static void count_inc(sampler_t *s, int32_t t)
{
    if (s->count[t]++ == 0) {
        s->pos[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void count_dec(sampler_t *s, int32_t t)
{
    if (--s->count[t] == 0) {
        int32_t i = s->pos[t];
        int32_t last = s->distinct[--s->n_distinct];
        s->distinct[i] = last;
        s->pos[last] = i;
    }
}

void sampler_accept(sampler_t *s, int32_t token)
{
    if (!s || !s->penalize || token < 0 || token >= s->n_vocab)
        return;
    if (s->ring_cap > 0) {
        if (s->ring_len == s->ring_cap) {
            count_dec(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
        } else {
            s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = token;
            s->ring_len++;
        }
    }
    count_inc(s, token);
}

rt_status_t sampler_set_logit_bias(sampler_t *s, const int32_t *ids, const float *bias, size_t n)
{
    if (n > SAMPLER_MAX_LOGIT_BIAS)
        return rt_error_set(RT_ERR_INVALID, "logit_bias: %zu entries (at most %d)", n, SAMPLER_MAX_LOGIT_BIAS);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab || !isfinite(bias[i]))
            return rt_error_set(RT_ERR_INVALID, "logit_bias: token %d (vocabulary %d) or bias %g out of range",
                                (int)ids[i], (int)s->n_vocab, (double)bias[i]);
    int32_t *id = n ? malloc(n * sizeof *id) : NULL;
    float *b = n ? malloc(n * sizeof *b) : NULL, *raw = n ? malloc(n * sizeof *raw) : NULL;
    if (n && (!id || !b || !raw)) {
        free(id);
        free(b);
        free(raw);
        return rt_error_set(RT_ERR_NOMEM, "logit_bias: out of memory");
    }
    if (n) {
        memcpy(id, ids, n * sizeof *id);
        memcpy(b, bias, n * sizeof *b);
    }
    free(s->bias_id);
    free(s->bias);
    free(s->bias_raw);
    s->bias_id = id;
    s->bias = b;
    s->bias_raw = raw;
    s->n_bias = (int32_t)n;
    return RT_OK;
}

rt_status_t sampler_set_suppressed(sampler_t *s, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return rt_error_set(RT_ERR_INVALID, "sampler: suppressed token %d outside the vocabulary (%d)",
                                (int)ids[i], (int)s->n_vocab);
    int32_t *c = n ? malloc(n * sizeof *c) : NULL;
    if (n && !c) return rt_error_set(RT_ERR_NOMEM, "sampler: out of memory");
    if (n) memcpy(c, ids, n * sizeof *c);
    free(s->suppressed);
    s->suppressed = c;
    s->n_suppressed = (int32_t)n;
    return RT_OK;
}

void sampler_suppress(sampler_t *s, bool on) { s->suppress = on; }

void sampler_set_constraint(sampler_t *s, sampler_allowed_fn fn, void *ud)
{
    s->allowed = fn;
    s->allowed_ud = ud;
}

void sampler_reset(sampler_t *s, uint64_t seed)
{
    if (!s)
        return;
    s->p.seed = seed;
    rt_rng_seed(&s->rng, seed);
    if (s->penalize) {
        for (int32_t i = 0; i < s->n_distinct; i++)
            s->count[s->distinct[i]] = 0;
        s->n_distinct = 0;
        s->ring_len = 0;
        s->ring_head = 0;
    }
}

static void apply_penalties(sampler_t *s, float *logits)
{
    const float rep = s->p.repetition_penalty;
    const float freq = s->p.frequency_penalty;
    const float pres = s->p.presence_penalty;
    for (int32_t i = 0; i < s->n_distinct; i++) {
        int32_t t = s->distinct[i];
        float l = logits[t];
        s->saved[i] = l;
        if (rep != 1.0f)
            l = l > 0.0f ? l / rep : l * rep;
        l -= (float)s->count[t] * freq + pres;
        logits[t] = l;
    }
}

/* ---- candidate ordering: higher logit first, ties to the lower id ---- */

static inline bool better(const cand_t *a, const cand_t *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void swap_cand(cand_t *a, cand_t *b)
{
    cand_t t = *a;
    *a = *b;
    *b = t;
}

/* Sift down in a heap h[0..n) whose root is the worst element. */
static void sift_worst(cand_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, w = i;
        if (l < n && better(&h[w], &h[l]))
            w = l;
        if (l + 1 < n && better(&h[w], &h[l + 1]))
            w = l + 1;
        if (w == i)
            return;
        swap_cand(&h[i], &h[w]);
        i = w;
    }
}

/* Make c[0..k) the best k of c[0..n), sorted best first; the others stay in
 * c[k..n). O(n log k) with a bounded heap; deterministic for equal input. */
static void select_top_sorted(cand_t *c, size_t n, size_t k)
{
    if (k > n)
        k = n;
    if (k == 0)
        return;
    for (size_t i = k / 2; i-- > 0;)
        sift_worst(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (better(&c[i], &c[0])) {
            swap_cand(&c[i], &c[0]);
            sift_worst(c, k, 0);
        }
    }
    /* Heap-sort: move the worst to the end each time -> best first. */
    for (size_t m = k; m > 1; m--) {
        swap_cand(&c[0], &c[m - 1]);
        sift_worst(c, m - 1, 0);
    }
}

static float max_logit(const cand_t *c, size_t n)
{
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit > m)
            m = c[i].logit;
    return m;
}

/* Index of the best candidate (ties to the lower id). */
static size_t best_index(const cand_t *c, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (better(&c[i], &c[b]))
            b = i;
    return b;
}

/* Partition c[lo..hi) around a median-of-three pivot: better ones first.
 * Returns the pivot's final index. */
static size_t partition(cand_t *c, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    /* order c[lo], c[mid], c[last] best first; the median goes to last */
    if (better(&c[mid], &c[lo]))
        swap_cand(&c[mid], &c[lo]);
    if (better(&c[last], &c[lo]))
        swap_cand(&c[last], &c[lo]);
    if (better(&c[mid], &c[last]))
        swap_cand(&c[mid], &c[last]);
    const cand_t pivot = c[last];
    size_t store = lo;
    for (size_t i = lo; i < last; i++)
        if (better(&c[i], &pivot))
            swap_cand(&c[i], &c[store++]);
    swap_cand(&c[store], &c[last]);
    return store;
}

/* Keep the nucleus: the smallest set of best candidates (in best-first order)
 * whose probability mass reaches top_p; at least one. Order inside the set is
 * not sorted. A quickselect on mass instead of a sort, O(n) expected; after
 * too many rounds (an adversarial order) it sorts what is left. */
static size_t filter_top_p(cand_t *c, size_t n, float top_p)
{
    float mx = max_logit(c, n);
    if (mx == -INFINITY)
        return 1;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].w = expf(c[i].logit - mx);
        total += c[i].w;
    }
    const double target = (double)top_p * total;
    double cum = 0.0; /* mass of c[0..lo), all better than c[lo..hi) */
    size_t lo = 0, hi = n;
    int rounds = 0;
    while (hi - lo > 1) {
        if (++rounds > 64) {
            select_top_sorted(c + lo, hi - lo, hi - lo);
            for (size_t i = lo; i < hi; i++) {
                cum += c[i].w;
                if (cum >= target)
                    return i + 1;
            }
            return hi;
        }
        size_t p = partition(c, lo, hi);
        double upper = 0.0;
        for (size_t i = lo; i < p; i++)
            upper += c[i].w;
        if (cum + upper >= target && p > lo) {
            hi = p; /* the boundary is among the better ones */
        } else if (cum + upper + c[p].w >= target || p + 1 == hi) {
            return p + 1;
        } else {
            cum += upper + c[p].w;
            lo = p + 1;
        }
    }
    return lo + 1;
}

/* Keep candidates with p >= min_p * p_max (order preserved). */
static size_t filter_min_p(cand_t *c, size_t n, float min_p)
{
    size_t b = best_index(c, n);
    float mx = c[b].logit;
    if (mx == -INFINITY || min_p >= 1.0f) {
        c[0] = c[b];
        return 1;
    }
    float thresh = mx + logf(min_p);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit >= thresh)
            c[k++] = c[i];
    return k;
}

/* ---- log-sum-exp of the raw logits: the normalizer of the logprobs ---- */

/* max over lanes, then sum of exp(x - max) in double per lane; NaN logits
 * make the sum NaN (the logprobs are then -inf) */
LANE_CLONES
static double log_sum_exp(const float *logits, int32_t nv)
{
    float m16[LANES];
    for (int l = 0; l < LANES; l++)
        m16[l] = -INFINITY;
    int32_t i = 0;
    for (; i + LANES <= nv; i += LANES)
        for (int l = 0; l < LANES; l++)
            m16[l] = logits[i + l] > m16[l] ? logits[i + l] : m16[l];
    float mx = -INFINITY;
    for (int l = 0; l < LANES; l++)
        mx = m16[l] > mx ? m16[l] : mx;
    for (int32_t t = i; t < nv; t++)
        mx = logits[t] > mx ? logits[t] : mx;
    if (mx == -INFINITY)
        return -INFINITY;
    double s16[LANES] = {0};
    for (i = 0; i + LANES <= nv; i += LANES)
        for (int l = 0; l < LANES; l++)
            s16[l] += (double)rt_exp_le0(logits[i + l] - mx);
    double sum = 0.0;
    for (int l = 0; l < LANES; l++)
        sum += s16[l];
    for (; i < nv; i++)
        sum += (double)rt_exp_le0(logits[i] - mx);
    return (double)mx + log(sum);
}

/* argmax, ties to the lowest id, NaN never chosen (token 0 if all are NaN
 * or -inf); per-lane maxima then the best lane, so it vectorizes */
LANE_CLONES
static int32_t greedy(const float *logits, int32_t n)
{
    float bv[LANES];
    int32_t bi[LANES];
    for (int l = 0; l < LANES; l++) {
        bv[l] = -INFINITY;
        bi[l] = l;
    }
    int32_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            const bool gt = logits[i + l] > bv[l];
            bv[l] = gt ? logits[i + l] : bv[l];
            bi[l] = gt ? i + l : bi[l];
        }
    int32_t best = 0;
    float v = -INFINITY;
    for (int l = 0; l < LANES && l < n; l++)
        if (bv[l] > v || (bv[l] == v && bi[l] < best)) {
            v = bv[l];
            best = bi[l];
        }
    for (; i < n; i++)
        if (logits[i] > v) {
            v = logits[i];
            best = i;
        }
    return best;
}

/* Draw from softmax(logit / temperature) over c[0..n). Consumes exactly one
 * uniform from the stream whatever n is, so filters do not shift it. */
static int32_t draw(sampler_t *s, cand_t *c, size_t n)
{
    double u = rt_rng_uniform(&s->rng);
    float mx = max_logit(c, n);
    if (mx == -INFINITY || n == 1)
        return c[best_index(c, n)].id;
    const float inv_t = 1.0f / s->p.temperature;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].w = expf((c[i].logit - mx) * inv_t);
        total += c[i].w;
    }
    if (!(total > 0.0) || !isfinite(total))
        return c[0].id;
    double target = u * total, cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].w;
        if (target < cum)
            return c[i].id;
    }
    /* Rounding left target at the very top: the last token with weight. */
    for (size_t i = n; i-- > 0;)
        if (c[i].w > 0.0f)
            return c[i].id;
    return c[n - 1].id;
}

static inline float logprob_of(float raw, double lse)
{
    return isfinite(lse) ? (float)((double)raw - lse) : -INFINITY;
}

int sampler_top_logprobs(sampler_t *s, const float *logits, int n, int32_t *ids, float *logprobs)
{
    if (n <= 0)
        return 0;
    if (n > s->n_vocab)
        n = (int)s->n_vocab;
    cand_t *c = s->cand;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
        c[i].id = i;
    }
    select_top_sorted(c, (size_t)s->n_vocab, (size_t)n);
    const double lse = log_sum_exp(logits, s->n_vocab);
    for (int k = 0; k < n; k++) {
        ids[k] = c[k].id;
        logprobs[k] = logprob_of(logits[c[k].id], lse);
    }
    return n;
}

float sampler_token_logprob(const sampler_t *s, const float *logits, int32_t id)
{
    return logprob_of(logits[id], log_sum_exp(logits, s->n_vocab));
}

/* greedy, or the filters and a draw, over logits as they now are */
static int32_t pick(sampler_t *s, const float *logits)
{
    const int32_t nv = s->n_vocab;
    if (s->p.temperature <= 0.0f)
        return greedy(logits, nv);
    cand_t *c = s->cand;
    for (int32_t i = 0; i < nv; i++) {
        c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
        c[i].id = i;
    }
    size_t n = (size_t)nv;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        select_top_sorted(c, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
    }
    if (s->p.top_p < 1.0f && n > 1)
        n = filter_top_p(c, n, s->p.top_p);
    if (s->p.min_p > 0.0f && n > 1)
        n = filter_min_p(c, n, s->p.min_p);
    return draw(s, c, n);
}

int32_t sampler_sample(sampler_t *s, float *logits, float *logprob)
{
    const int32_t nv = s->n_vocab;

    /* log-sum-exp of the raw logits, before anything changes them. */
    const double lse = logprob ? log_sum_exp(logits, nv) : 0.0;

    if (s->penalize)
        apply_penalties(s, logits);
    /* after the penalties (vLLM's order); an id listed twice adds both */
    for (int32_t i = 0; i < s->n_bias; i++) {
        s->bias_raw[i] = logits[s->bias_id[i]];
        logits[s->bias_id[i]] += s->bias[i];
    }
    if (s->suppress) /* never chosen, so the logprob's raw logit is untouched */
        for (int32_t i = 0; i < s->n_suppressed; i++)
            logits[s->suppressed[i]] = -INFINITY;

    int32_t id = pick(s, logits);
    if (s->allowed && !s->allowed(s->allowed_ud, id)) {
        /* the pick breaks the constraint: mask every token that would, pick again */
        for (int32_t i = 0; i < nv; i++)
            if (logits[i] != -INFINITY && !s->allowed(s->allowed_ud, i))
                logits[i] = -INFINITY;
        id = pick(s, logits);
    }

    if (logprob) {
        float raw = logits[id];
        for (int32_t i = 0; i < s->n_bias; i++) /* the first entry saw it unbiased */
            if (s->bias_id[i] == id) {
                raw = s->bias_raw[i];
                break;
            }
        if (s->penalize && s->count[id] > 0)
            raw = s->saved[s->pos[id]];
        *logprob = logprob_of(raw, lse);
    }
    return id;
}
