/*
 * test_sampler.c - sampler and stop matcher: greedy, seeds, the draw's
 * distribution (chi-square against softmax), top-k/top-p/min-p sets,
 * penalties (exact logit changes), logprobs and top-n logprobs, and stop
 * strings split over pushes with hold-back and flush.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "rotor/sampler.h"
#include "sampling/rng.h"

/* ---- helpers ---- */

static sampler_t *make(sampler_params_t p, int32_t n_vocab)
{
    sampler_t *s = NULL;
    assert_int_equal(sampler_create(&p, n_vocab, &s), RT_OK);
    assert_non_null(s);
    return s;
}

/* Deterministic test logits in [-scale, scale). */
static void fill_logits(float *l, int32_t n, uint64_t seed, float scale)
{
    rt_rng_t r;
    rt_rng_seed(&r, seed);
    for (int32_t i = 0; i < n; i++)
        l[i] = (float)(rt_rng_uniform(&r) * 2.0 - 1.0) * scale;
}

static int32_t sample_copy(sampler_t *s, const float *logits, int32_t n, float *logprob)
{
    float buf[64];
    float *tmp = n <= 64 ? buf : malloc((size_t)n * sizeof *tmp);
    assert_non_null(tmp);
    memcpy(tmp, logits, (size_t)n * sizeof *tmp);
    int32_t id = sampler_sample(s, tmp, logprob);
    if (tmp != buf)
        free(tmp);
    return id;
}

static int32_t argmax_ref(const float *l, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

/* ---- rng ---- */

static void test_rng_reference_values(void **state)
{
    (void)state;
    /* xoshiro256** seeded by splitmix64, values from an independent Python
     * transcription of the reference code: same on every platform. */
    static const uint64_t want0[4] = {0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL,
                                      0x1a5f849d4933e6e0ULL, 0x6aa594f1262d2d2cULL};
    static const uint64_t want42[4] = {0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL,
                                       0xae17533239e499a1ULL, 0xecb8ad4703b360a1ULL};
    rt_rng_t r;
    rt_rng_seed(&r, 0);
    for (int i = 0; i < 4; i++)
        assert_true(rt_rng_next(&r) == want0[i]);
    rt_rng_seed(&r, 42);
    for (int i = 0; i < 4; i++)
        assert_true(rt_rng_next(&r) == want42[i]);
    for (int i = 0; i < 100000; i++) {
        double u = rt_rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
    }
}

/* ---- create / params ---- */

static void test_params_default_and_create_errors(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    assert_true(p.temperature == 1.0f);
    assert_int_equal(p.top_k, 0);
    assert_true(p.top_p >= 1.0f);
    assert_true(p.min_p <= 0.0f);
    assert_true(p.repetition_penalty == 1.0f);
    assert_true(p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f);
    assert_int_equal(p.penalty_last_n, 64);

    sampler_t *s = (sampler_t *)0x1;
    assert_int_equal(sampler_create(&p, 0, &s), RT_ERR_INVALID);
    assert_true(s == (sampler_t *)0x1); /* untouched on error */
    assert_int_equal(sampler_create(NULL, 10, &s), RT_ERR_INVALID);
    p.repetition_penalty = 0.0f;
    assert_int_equal(sampler_create(&p, 10, &s), RT_ERR_INVALID);
    p = sampler_params_default();
    p.penalty_last_n = -2;
    assert_int_equal(sampler_create(&p, 10, &s), RT_ERR_INVALID);
    p = sampler_params_default();
    p.temperature = NAN;
    assert_int_equal(sampler_create(&p, 10, &s), RT_ERR_INVALID);
    assert_true(s == (sampler_t *)0x1);
    sampler_destroy(NULL);
}

/* ---- greedy ---- */

static void test_greedy_argmax_and_ties(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    sampler_t *s = make(p, 6);
    float l[6] = {0.5f, 2.0f, -1.0f, 3.5f, 3.0f, 1.0f};
    assert_int_equal(sample_copy(s, l, 6, NULL), 3);
    float tie[6] = {1.0f, 4.0f, 2.0f, 4.0f, 4.0f, -3.0f};
    assert_int_equal(sample_copy(s, tie, 6, NULL), 1); /* lowest id of the ties */
    float nan0[6] = {NAN, -5.0f, -2.0f, NAN, -7.0f, -9.0f};
    assert_int_equal(sample_copy(s, nan0, 6, NULL), 2);
    sampler_destroy(s);

    /* Negative temperature is greedy too; on a big vocabulary as well. */
    p.temperature = -1.0f;
    const int32_t n = 50000;
    float *big = malloc((size_t)n * sizeof *big);
    fill_logits(big, n, 7, 10.0f);
    s = make(p, n);
    for (int rep = 0; rep < 3; rep++)
        assert_int_equal(sample_copy(s, big, n, NULL), argmax_ref(big, n));
    /* ties in different 16-wide lanes and in the tail, NaNs among them */
    const int32_t tie_ids[4] = {49999, 31, 20000, 17};
    for (int t = 0; t < 4; t++)
        big[tie_ids[t]] = 11.0f;
    big[5] = big[40000] = NAN;
    assert_int_equal(sample_copy(s, big, n, NULL), 17);
    big[17] = big[31] = 10.5f;
    assert_int_equal(sample_copy(s, big, n, NULL), 20000);
    big[20000] = -INFINITY;
    assert_int_equal(sample_copy(s, big, n, NULL), 49999); /* in the tail (50000 % 16 = 0: last lane) */
    for (int32_t i = 0; i < n; i++)
        big[i] = i % 3 ? -INFINITY : NAN;
    assert_int_equal(sample_copy(s, big, n, NULL), 0);
    sampler_destroy(s);
    free(big);
    /* a vocabulary that is not a multiple of 16: the best in the tail */
    s = make(p, 37);
    float odd[37];
    for (int i = 0; i < 37; i++)
        odd[i] = (float)(i % 5);
    odd[35] = 9.0f;
    assert_int_equal(sample_copy(s, odd, 37, NULL), 35);
    odd[35] = 4.0f; /* ties with 4, 9, 14, ...: the lowest id */
    assert_int_equal(sample_copy(s, odd, 37, NULL), 4);
    sampler_destroy(s);
}

static void test_top_k_1_equals_greedy(void **state)
{
    (void)state;
    const int32_t n = 4096;
    float *l = malloc((size_t)n * sizeof *l);
    for (int trial = 0; trial < 50; trial++) {
        fill_logits(l, n, 1000 + (uint64_t)trial, 5.0f);
        if (trial % 5 == 0) /* plant a tie above everything */
            l[n - 1] = l[17] = 100.0f;
        sampler_params_t p = sampler_params_default();
        p.temperature = 0.0f;
        sampler_t *g = make(p, n);
        p.temperature = 0.3f + (float)trial * 0.1f;
        p.top_k = 1;
        p.seed = (uint64_t)trial;
        sampler_t *k1 = make(p, n);
        int32_t want = sample_copy(g, l, n, NULL);
        assert_int_equal(want, trial % 5 == 0 ? 17 : argmax_ref(l, n));
        for (int i = 0; i < 5; i++)
            assert_int_equal(sample_copy(k1, l, n, NULL), want);
        sampler_destroy(g);
        sampler_destroy(k1);
    }
    free(l);
}

/* ---- seeds ---- */

static void draw_seq(uint64_t seed, int32_t *out, int count)
{
    const int32_t n = 1000;
    float l[1000];
    fill_logits(l, n, 99, 3.0f);
    sampler_params_t p = sampler_params_default();
    p.seed = seed;
    p.top_k = 200;
    p.top_p = 0.95f;
    sampler_t *s = make(p, n);
    for (int i = 0; i < count; i++)
        out[i] = sample_copy(s, l, n, NULL);
    sampler_destroy(s);
}

static void test_seed_reproduces_and_differs(void **state)
{
    (void)state;
    int32_t a[300], b[300], c[300];
    draw_seq(1234, a, 300);
    draw_seq(1234, b, 300);
    draw_seq(1235, c, 300);
    assert_memory_equal(a, b, sizeof a);
    int diff = 0;
    for (int i = 0; i < 300; i++)
        diff += a[i] != c[i];
    assert_true(diff > 200); /* ~200 tokens with mass: most draws differ */

    /* sampler_reset reseeds: the same stream again. */
    const int32_t n = 1000;
    float l[1000];
    fill_logits(l, n, 99, 3.0f);
    sampler_params_t p = sampler_params_default();
    p.seed = 1234;
    p.top_k = 200;
    p.top_p = 0.95f;
    sampler_t *s = make(p, n);
    for (int i = 0; i < 50; i++)
        (void)sample_copy(s, l, n, NULL);
    sampler_reset(s, 1234);
    for (int i = 0; i < 300; i++)
        assert_int_equal(sample_copy(s, l, n, NULL), a[i]);
    sampler_destroy(s);
}

/* ---- distribution ---- */

/* Draw `draws` times and return the chi-square statistic against softmax(l/t)
 * restricted to `keep` (NULL: all), renormalised. Fails if a token outside
 * `keep` is ever drawn. */
static double chi_square(sampler_params_t p, const float *l, int32_t n, const bool *keep,
                         int draws)
{
    sampler_t *s = make(p, n);
    int counts[64] = {0};
    for (int i = 0; i < draws; i++) {
        int32_t id = sample_copy(s, l, n, NULL);
        assert_true(id >= 0 && id < n);
        counts[id]++;
    }
    sampler_destroy(s);
    double mx = -INFINITY, sum = 0.0, pr[64];
    for (int32_t i = 0; i < n; i++)
        if ((!keep || keep[i]) && l[i] > mx)
            mx = l[i];
    for (int32_t i = 0; i < n; i++) {
        pr[i] = (!keep || keep[i]) ? exp(((double)l[i] - mx) / p.temperature) : 0.0;
        sum += pr[i];
    }
    double chi = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (pr[i] == 0.0) {
            assert_int_equal(counts[i], 0);
            continue;
        }
        double e = draws * pr[i] / sum;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

static void test_distribution_matches_softmax(void **state)
{
    (void)state;
    const float l[8] = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, -1.5f, 1.2f, 0.7f};
    sampler_params_t p = sampler_params_default();
    p.seed = 2024;
    /* 7 degrees of freedom: P(chi2 > 24.32) = 0.001. Fixed seeds, so the
     * test is deterministic; the bound says the draw is the right shape. */
    double chi = chi_square(p, l, 8, NULL, 20000);
    assert_true(chi < 24.32);
    p.temperature = 0.5f;
    p.seed = 7;
    chi = chi_square(p, l, 8, NULL, 20000);
    assert_true(chi < 24.32);
    p.temperature = 2.5f;
    p.seed = 8;
    chi = chi_square(p, l, 8, NULL, 20000);
    assert_true(chi < 24.32);

    /* A wrong distribution is rejected by the same bound (the test has
     * power): sampling at T=1 but checking against T=0.8. */
    p.temperature = 1.0f;
    p.seed = 9;
    sampler_t *s = make(p, 8);
    int counts[8] = {0};
    for (int i = 0; i < 20000; i++)
        counts[sample_copy(s, l, 8, NULL)]++;
    sampler_destroy(s);
    double pr[8], sum = 0.0, bad = 0.0;
    for (int i = 0; i < 8; i++)
        sum += pr[i] = exp((double)l[i] / 0.8);
    for (int i = 0; i < 8; i++) {
        double e = 20000 * pr[i] / sum;
        bad += (counts[i] - e) * (counts[i] - e) / e;
    }
    assert_true(bad > 24.32);
}

static void test_top_k_distribution(void **state)
{
    (void)state;
    const float l[10] = {0.1f, 1.5f, -0.3f, 1.1f, 0.9f, 2.0f, -2.0f, 0.95f, 0.0f, 0.5f};
    bool keep[10] = {false};
    keep[5] = keep[1] = keep[3] = true; /* the three largest */
    sampler_params_t p = sampler_params_default();
    p.top_k = 3;
    p.seed = 11;
    assert_true(chi_square(p, l, 10, keep, 20000) < 13.82); /* 2 dof, p = 0.001 */
}

/* Sampling at a huge temperature after the filters makes the survivors
 * nearly uniform, so many draws show exactly the surviving set. */
static void seen_set(sampler_params_t p, const float *l, int32_t n, int draws, bool *seen)
{
    sampler_t *s = make(p, n);
    memset(seen, 0, (size_t)n * sizeof *seen);
    float *tmp = malloc((size_t)n * sizeof *tmp);
    for (int i = 0; i < draws; i++) {
        memcpy(tmp, l, (size_t)n * sizeof *tmp);
        int32_t id = sampler_sample(s, tmp, NULL);
        assert_true(id >= 0 && id < n);
        seen[id] = true;
    }
    free(tmp);
    sampler_destroy(s);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_top_k_large_vocab_exact_set(void **state)
{
    (void)state;
    const int32_t n = 150000;
    float *l = malloc((size_t)n * sizeof *l);
    float *sorted = malloc((size_t)n * sizeof *sorted);
    bool *seen = malloc((size_t)n);
    fill_logits(l, n, 5, 20.0f);
    memcpy(sorted, l, (size_t)n * sizeof *l);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_desc);
    sampler_params_t p = sampler_params_default();
    p.top_k = 40;
    p.temperature = 1e6f;
    p.seed = 3;
    seen_set(p, l, n, 1000, seen);
    int kept = 0;
    for (int32_t i = 0; i < n; i++) {
        assert_true(seen[i] == (l[i] >= sorted[39]));
        kept += seen[i];
    }
    assert_int_equal(kept, 40);
    free(seen);
    free(sorted);
    free(l);
}

static void test_top_p_exact_nucleus_small(void **state)
{
    (void)state;
    /* probabilities 0.4 0.25 0.15 0.1 0.06 0.04 under shuffled ids:
     * cumulative 0.4 0.65 0.8 -> top_p 0.75 keeps exactly three. */
    const double pr[6] = {0.1, 0.4, 0.04, 0.15, 0.25, 0.06};
    float l[6];
    for (int i = 0; i < 6; i++)
        l[i] = (float)log(pr[i]);
    sampler_params_t p = sampler_params_default();
    p.top_p = 0.75f;
    p.seed = 5;
    bool keep[6] = {false, true, false, true, true, false};
    assert_true(chi_square(p, l, 6, keep, 20000) < 13.82); /* renormalised nucleus */
    bool seen[6];
    p.top_p = 0.3f; /* below the first token: keep at least one */
    seen_set(p, l, 6, 500, seen);
    for (int i = 0; i < 6; i++)
        assert_true(seen[i] == (i == 1));
    p.top_p = 0.0f;
    seen_set(p, l, 6, 500, seen);
    for (int i = 0; i < 6; i++)
        assert_true(seen[i] == (i == 1));
    p.top_p = 0.97f; /* cumulative 0.96 < 0.97 -> all six */
    p.temperature = 1e6f;
    seen_set(p, l, 6, 2000, seen);
    for (int i = 0; i < 6; i++)
        assert_true(seen[i]);
}

static void test_top_p_ties_go_to_lower_ids(void **state)
{
    (void)state;
    /* 100 equal logits: the nucleus of 0.5 is exactly ids 0..49, and the
     * result does not depend on how the ids are laid out. */
    float l[100];
    for (int i = 0; i < 100; i++)
        l[i] = 1.25f;
    sampler_params_t p = sampler_params_default();
    p.top_p = 0.5f;
    p.seed = 31;
    bool seen[100];
    seen_set(p, l, 100, 3000, seen);
    for (int i = 0; i < 100; i++)
        assert_true(seen[i] == (i < 50));
    /* ascending logits (a bad order for a naive pivot) */
    for (int i = 0; i < 100; i++)
        l[i] = (float)i * 0.01f;
    p.temperature = 1e6f;
    seen_set(p, l, 100, 3000, seen);
    double total = 0.0, cum = 0.0;
    for (int i = 0; i < 100; i++)
        total += exp((double)l[i] - 0.99);
    int lowest_kept = 100;
    for (int i = 99; i >= 0 && cum < 0.5 * total; i--) {
        cum += exp((double)l[i] - 0.99);
        lowest_kept = i;
    }
    for (int i = 0; i < 100; i++)
        assert_true(seen[i] == (i >= lowest_kept));
}

static void test_top_p_exact_nucleus_large(void **state)
{
    (void)state;
    /* 60000 tokens; the nucleus spans several growth steps of the partial
     * sort (128 -> 1024). Reference: full sort and cumulative sum here. */
    const int32_t n = 60000;
    float *l = malloc((size_t)n * sizeof *l);
    float *sorted = malloc((size_t)n * sizeof *sorted);
    bool *seen = malloc((size_t)n);
    fill_logits(l, n, 77, 1.0f);
    for (int32_t i = 0; i < 300; i++) /* 300 strong tokens among the noise */
        l[i * 199] += 6.0f + (float)i * 0.001f;
    memcpy(sorted, l, (size_t)n * sizeof *l);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_desc);
    double mx = sorted[0], total = 0.0;
    for (int32_t i = 0; i < n; i++)
        total += exp((double)sorted[i] - mx);
    /* choose top_p halfway between two cumulative sums so rounding cannot
     * move the boundary: the nucleus has exactly 250 tokens. */
    double cum = 0.0, c249 = 0.0, c250 = 0.0;
    for (int32_t i = 0; i < 250; i++) {
        cum += exp((double)sorted[i] - mx);
        if (i == 248)
            c249 = cum / total;
    }
    c250 = cum / total;
    sampler_params_t p = sampler_params_default();
    p.top_p = (float)((c249 + c250) / 2.0);
    p.temperature = 1e6f;
    p.seed = 21;
    seen_set(p, l, n, 4000, seen);
    int kept = 0;
    for (int32_t i = 0; i < n; i++) {
        assert_true(seen[i] == (l[i] >= sorted[249]));
        kept += seen[i];
    }
    assert_int_equal(kept, 250);

    /* top_k then top_p: the nucleus is computed within the top-k set, so
     * the same top_p keeps a share of the 100 strongest. */
    double sum100 = 0.0;
    for (int32_t i = 0; i < 100; i++)
        sum100 += exp((double)sorted[i] - mx);
    int32_t want = 0;
    cum = 0.0;
    for (int32_t i = 0; i < 100 && want == 0; i++) {
        cum += exp((double)sorted[i] - mx);
        if (cum / sum100 >= (double)p.top_p)
            want = i + 1;
    }
    assert_true(want > 1 && want < 100);
    p.top_k = 100;
    seen_set(p, l, n, 3000, seen);
    kept = 0;
    for (int32_t i = 0; i < n; i++) {
        assert_true(seen[i] == (l[i] >= sorted[want - 1]));
        kept += seen[i];
    }
    assert_int_equal(kept, want);
    free(seen);
    free(sorted);
    free(l);
}

static void test_min_p_cuts(void **state)
{
    (void)state;
    /* min_p 0.1: keep logit >= max + log(0.1) = max - 2.3026 */
    const float l[7] = {-2.0f, 0.0f, -5.0f, -2.2f, -1.0f, -2.4f, -3.0f};
    sampler_params_t p = sampler_params_default();
    p.min_p = 0.1f;
    p.temperature = 1e6f;
    p.seed = 4;
    bool seen[7];
    seen_set(p, l, 7, 2000, seen);
    const bool want[7] = {true, true, false, true, true, false, false};
    for (int i = 0; i < 7; i++)
        assert_true(seen[i] == want[i]);
    /* and the survivors keep their softmax shape at T=1 */
    p.temperature = 1.0f;
    assert_true(chi_square(p, l, 7, want, 20000) < 16.27); /* 3 dof, p = 0.001 */
}

/* ---- penalties ---- */

static void test_repetition_penalty_exact(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    sampler_t *s = make(p, 5);
    sampler_accept(s, 0);
    sampler_accept(s, 1);
    sampler_accept(s, 1); /* distinct tokens are penalised once */
    sampler_accept(s, 99); /* out of range: ignored */
    float l[5] = {2.0f, -1.0f, 3.0f, 0.5f, 0.0f};
    (void)sampler_sample(s, l, NULL);
    assert_float_equal(l[0], 1.0f, 0.0f);  /* positive: divided */
    assert_float_equal(l[1], -2.0f, 0.0f); /* negative: multiplied */
    assert_float_equal(l[2], 3.0f, 0.0f);
    assert_float_equal(l[3], 0.5f, 0.0f);
    assert_float_equal(l[4], 0.0f, 0.0f);
    sampler_destroy(s);

    /* the penalty changes the greedy choice */
    s = make(p, 2);
    float m[2] = {5.0f, 4.9f};
    assert_int_equal(sample_copy(s, m, 2, NULL), 0);
    sampler_accept(s, 0);
    assert_int_equal(sample_copy(s, m, 2, NULL), 1);
    sampler_reset(s, 0); /* history cleared */
    assert_int_equal(sample_copy(s, m, 2, NULL), 0);
    sampler_destroy(s);
}

static void test_frequency_presence_exact(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    sampler_t *s = make(p, 4);
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    float l[4] = {1.0f, 2.0f, 3.0f, -1.0f};
    (void)sampler_sample(s, l, NULL);
    assert_float_equal(l[0], 1.0f, 0.0f);
    assert_float_equal(l[1], 2.0f - 3 * 0.5f - 0.25f, 1e-6f);
    assert_float_equal(l[2], 3.0f - 0.5f - 0.25f, 1e-6f);
    assert_float_equal(l[3], -1.0f, 0.0f);
    sampler_destroy(s);

    /* all three together: repetition first, then frequency and presence */
    p.repetition_penalty = 1.5f;
    s = make(p, 3);
    sampler_accept(s, 0);
    sampler_accept(s, 2);
    sampler_accept(s, 2);
    float m[3] = {3.0f, 1.0f, -2.0f};
    (void)sampler_sample(s, m, NULL);
    assert_float_equal(m[0], 3.0f / 1.5f - 0.5f - 0.25f, 1e-6f);
    assert_float_equal(m[1], 1.0f, 0.0f);
    assert_float_equal(m[2], -2.0f * 1.5f - 2 * 0.5f - 0.25f, 1e-6f);
    sampler_destroy(s);
}

static void test_penalty_window(void **state)
{
    (void)state;
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    p.frequency_penalty = 1.0f;
    p.penalty_last_n = 3;
    sampler_t *s = make(p, 6);
    const int32_t hist[6] = {0, 1, 2, 3, 3, 4}; /* window: 3 3 4 */
    for (int i = 0; i < 6; i++)
        sampler_accept(s, hist[i]);
    float l[6] = {0};
    (void)sampler_sample(s, l, NULL);
    const float want[6] = {0.0f, 0.0f, 0.0f, -2.0f, -1.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want[i], 0.0f);
    /* many more tokens through the ring: only the last three count */
    for (int i = 0; i < 1000; i++)
        sampler_accept(s, i % 6);
    memset(l, 0, sizeof l); /* last three: 1000 % 6 = 4 -> 1 2 3 */
    (void)sampler_sample(s, l, NULL);
    const float want2[6] = {0.0f, -1.0f, -1.0f, -1.0f, 0.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want2[i], 0.0f);
    sampler_destroy(s);

    p.penalty_last_n = -1; /* whole history */
    s = make(p, 6);
    for (int i = 0; i < 6; i++)
        sampler_accept(s, hist[i]);
    memset(l, 0, sizeof l);
    (void)sampler_sample(s, l, NULL);
    const float want3[6] = {-1.0f, -1.0f, -1.0f, -2.0f, -1.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want3[i], 0.0f);
    sampler_destroy(s);

    p.penalty_last_n = 0; /* off */
    s = make(p, 6);
    for (int i = 0; i < 6; i++)
        sampler_accept(s, hist[i]);
    memset(l, 0, sizeof l);
    (void)sampler_sample(s, l, NULL);
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], 0.0f, 0.0f);
    sampler_destroy(s);
}

/* ---- logprob ---- */

/* log-sum-exp of five logits whose largest is 3, in double */
static double lse5(const float *l)
{
    double sum = 0.0;
    for (int i = 0; i < 5; i++)
        sum += exp((double)l[i] - 3.0);
    return 3.0 + log(sum);
}

static void test_logprob_of_raw_logits(void **state)
{
    (void)state;
    const float l[5] = {1.0f, 3.0f, -2.0f, 0.5f, 2.5f};
    const double lse = lse5(l);

    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    p.repetition_penalty = 3.0f; /* penalise token 1 so greedy picks 4 */
    sampler_t *s = make(p, 5);
    sampler_accept(s, 1);
    float lp = 0.0f;
    assert_int_equal(sample_copy(s, l, 5, &lp), 4);
    assert_float_equal(lp, (float)(2.5 - lse), 1e-5f);
    sampler_destroy(s);

    /* penalised token chosen: its logprob still uses the raw logit */
    p.repetition_penalty = 1.1f;
    s = make(p, 5);
    sampler_accept(s, 1);
    assert_int_equal(sample_copy(s, l, 5, &lp), 1);
    assert_float_equal(lp, (float)(3.0 - lse), 1e-5f);
    sampler_destroy(s);

    /* sampled, with filters and temperature: still raw log-softmax */
    p = sampler_params_default();
    p.temperature = 0.7f;
    p.top_k = 3;
    p.seed = 17;
    s = make(p, 5);
    for (int i = 0; i < 50; i++) {
        int32_t id = sample_copy(s, l, 5, &lp);
        assert_float_equal(lp, (float)(l[id] - lse), 1e-5f);
    }
    sampler_destroy(s);
}

/* logit_bias: -100 bans the argmax, +100 forces a token, with penalties
 * and sampling too; the reported logprob stays the raw one; bad lists refused */
/* sampler_set_constraint: only odd ids allowed */
static int n_allowed_calls;
static bool odd_only(void *ud, int32_t id)
{
    (void)ud;
    n_allowed_calls++;
    return id % 2 == 1;
}

static void test_constraint(void **state)
{
    (void)state;
    const float l[5] = {1.0f, 3.0f, -2.0f, 0.5f, 2.5f};
    const double lse = lse5(l);
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    sampler_t *s = make(p, 5);
    float lp = 0.0f;
    sampler_set_constraint(s, odd_only, NULL);
    /* the best (1) is allowed: one check, no scan */
    n_allowed_calls = 0;
    assert_int_equal(sample_copy(s, l, 5, &lp), 1);
    assert_int_equal(n_allowed_calls, 1);
    /* bias 1 down: the best is 4 (even), so the best odd one, 3; its raw logprob */
    const int32_t ban[1] = {1};
    const float minus[1] = {-100.0f};
    assert_int_equal(sampler_set_logit_bias(s, ban, minus, 1), RT_OK);
    assert_int_equal(sample_copy(s, l, 5, &lp), 3);
    assert_float_equal(lp, (float)(0.5 - lse), 1e-5f);
    sampler_destroy(s);
    /* sampled: never an even id, and both odd ones drawn, in about their ratio */
    p.temperature = 1.0f;
    p.seed = 9;
    s = make(p, 5);
    sampler_set_constraint(s, odd_only, NULL);
    int seen[5] = {0};
    for (int i = 0; i < 2000; i++) seen[sample_copy(s, l, 5, NULL)]++;
    assert_int_equal(seen[0] + seen[2] + seen[4], 0);
    /* p(1) / p(3) over the allowed pair = e^(3 - 0.5) = 12.2 */
    assert_true(seen[3] > 60 && seen[3] < 260);
    sampler_set_constraint(s, NULL, NULL); /* off again: any id */
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 400; i++) seen[sample_copy(s, l, 5, NULL)]++;
    assert_true(seen[4] > 0);
    sampler_destroy(s);
}

static void test_logit_bias(void **state)
{
    (void)state;
    const float l[5] = {1.0f, 3.0f, -2.0f, 0.5f, 2.5f};
    const double lse = lse5(l);
    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    sampler_t *s = make(p, 5);
    float lp = 0.0f;
    const int32_t ban[1] = {1};
    const float minus[1] = {-100.0f};
    assert_int_equal(sampler_set_logit_bias(s, ban, minus, 1), RT_OK);
    assert_int_equal(sample_copy(s, l, 5, &lp), 4);
    assert_float_equal(lp, (float)(2.5 - lse), 1e-5f);
    /* replaced: force token 2 (the least likely), listed twice; its raw logprob */
    const int32_t force[2] = {2, 2};
    const float plus[2] = {60.0f, 40.0f};
    assert_int_equal(sampler_set_logit_bias(s, force, plus, 2), RT_OK);
    assert_int_equal(sample_copy(s, l, 5, &lp), 2);
    assert_float_equal(lp, (float)(-2.0 - lse), 1e-5f);
    sampler_destroy(s);
    /* penalised and biased: still the raw logit's logprob; sampled: always the forced one */
    p.repetition_penalty = 1.5f;
    s = make(p, 5);
    sampler_accept(s, 2);
    assert_int_equal(sampler_set_logit_bias(s, force, plus, 1), RT_OK);
    assert_int_equal(sample_copy(s, l, 5, &lp), 2);
    assert_float_equal(lp, (float)(-2.0 - lse), 1e-5f);
    sampler_destroy(s);
    p = sampler_params_default();
    p.temperature = 1.0f;
    p.seed = 5;
    s = make(p, 5);
    const float big[1] = {100.0f};
    assert_int_equal(sampler_set_logit_bias(s, force, big, 1), RT_OK);
    for (int i = 0; i < 50; i++) assert_int_equal(sample_copy(s, l, 5, NULL), 2);
    /* refused: outside the vocabulary, not finite, too many */
    const int32_t bad_id[1] = {5};
    assert_int_equal(sampler_set_logit_bias(s, bad_id, big, 1), RT_ERR_INVALID);
    const float inf[1] = {INFINITY};
    assert_int_equal(sampler_set_logit_bias(s, force, inf, 1), RT_ERR_INVALID);
    assert_int_equal(sampler_set_logit_bias(s, force, big, SAMPLER_MAX_LOGIT_BIAS + 1), RT_ERR_INVALID);
    assert_int_equal(sample_copy(s, l, 5, NULL), 2); /* the list in force is kept */
    sampler_destroy(s);
}

/* top-n logprobs: a full sort by (logit desc, id asc) in the test, values
 * against a double-precision log-softmax; the chosen token's logprob equals
 * its entry to the bit; the logits are not modified. */
static int cmp_by_logit(const void *a, const void *b, void *ctx)
{
    const float *l = ctx;
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (l[x] != l[y])
        return l[x] > l[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void test_top_logprobs(void **state)
{
    (void)state;
    enum { NV = 3000 };
    static float l[NV], copy[NV];
    static int32_t order[NV];
    fill_logits(l, NV, 5, 8.0f);
    l[17] = l[2900] = l[400] = 9.5f; /* a tie at the top: lower ids first */
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < NV; i++)
        mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < NV; i++)
        sum += exp((double)l[i] - mx);
    const double lse = mx + log(sum);
    for (int i = 0; i < NV; i++)
        order[i] = i;
    qsort_r(order, NV, sizeof *order, cmp_by_logit, l);

    sampler_params_t p = sampler_params_default();
    p.temperature = 0.0f;
    sampler_t *s = make(p, NV);
    int32_t ids[20];
    float lps[20];
    memcpy(copy, l, sizeof l);
    assert_int_equal(sampler_top_logprobs(s, l, 20, ids, lps), 20);
    assert_memory_equal(copy, l, sizeof l);
    assert_int_equal(ids[0], 17);
    assert_int_equal(ids[1], 400);
    assert_int_equal(ids[2], 2900);
    for (int k = 0; k < 20; k++) {
        assert_int_equal(ids[k], order[k]);
        assert_float_equal(lps[k], (float)((double)l[ids[k]] - lse), 1e-5f);
        if (k > 0)
            assert_true(lps[k] <= lps[k - 1]);
    }
    float lp = 0.0f;
    assert_int_equal(sample_copy(s, l, NV, &lp), ids[0]);
    assert_memory_equal(&lp, &lps[0], sizeof lp);
    /* sampled tokens: their logprob is bit-equal to their top-n entry */
    sampler_destroy(s);
    p = sampler_params_default();
    p.seed = 3;
    p.top_k = 5;
    s = make(p, NV);
    for (int i = 0; i < 40; i++) {
        const int32_t id = sample_copy(s, l, NV, &lp);
        int k = 0;
        while (k < 5 && ids[k] != id)
            k++;
        assert_true(k < 5);
        assert_memory_equal(&lp, &lps[k], sizeof lp);
    }
    /* n clamped to the vocabulary; 0 writes nothing */
    sampler_destroy(s);
    const float tiny[3] = {0.0f, 1.0f, NAN};
    s = make(p, 3);
    assert_int_equal(sampler_top_logprobs(s, tiny, 20, ids, lps), 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 2);
    assert_int_equal(sampler_top_logprobs(s, tiny, 0, ids, lps), 0);
    sampler_destroy(s);
}

static void test_degenerate_logits(void **state)
{
    (void)state;
    float l[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    sampler_params_t p = sampler_params_default();
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    sampler_t *s = make(p, 4);
    float lp = 0.0f;
    int32_t id = sample_copy(s, l, 4, &lp);
    assert_true(id >= 0 && id < 4);
    float one[4] = {-INFINITY, 1.0f, -INFINITY, NAN};
    for (int i = 0; i < 20; i++)
        assert_int_equal(sample_copy(s, one, 4, NULL), 1);
    sampler_destroy(s);
}

/* ---- stop strings ---- */

typedef struct {
    char text[4096];
    size_t len;
    bool stopped;
} sink_t;

static bool push(stop_matcher_t *m, sink_t *k, const char *t, size_t n)
{
    char out[4096];
    size_t ol = 12345;
    bool st = stop_matcher_push(m, t, n, out, sizeof out, &ol);
    assert_true(ol < sizeof out);
    assert_int_equal(strlen(out), ol);
    memcpy(k->text + k->len, out, ol);
    k->len += ol;
    k->text[k->len] = '\0';
    k->stopped |= st;
    return st;
}

static bool push_s(stop_matcher_t *m, sink_t *k, const char *t)
{
    return push(m, k, t, strlen(t));
}

static void flush(stop_matcher_t *m, sink_t *k)
{
    char out[4096];
    size_t n = stop_matcher_flush(m, out, sizeof out);
    assert_int_equal(strlen(out), n);
    memcpy(k->text + k->len, out, n);
    k->len += n;
    k->text[k->len] = '\0';
}

static stop_matcher_t *make_stops(const char *const *stops, size_t n)
{
    stop_matcher_t *m = NULL;
    assert_int_equal(stop_matcher_create(stops, n, &m), RT_OK);
    return m;
}

static void test_stop_none_passthrough(void **state)
{
    (void)state;
    stop_matcher_t *m = make_stops(NULL, 0);
    sink_t k = {0};
    assert_false(push_s(m, &k, "hello "));
    assert_string_equal(k.text, "hello ");
    assert_false(push_s(m, &k, "world"));
    flush(m, &k);
    assert_string_equal(k.text, "hello world");
    stop_matcher_destroy(m);
    const char *empty[] = {""}; /* an empty stop is ignored */
    m = make_stops(empty, 1);
    memset(&k, 0, sizeof k);
    assert_false(push_s(m, &k, "abc"));
    assert_string_equal(k.text, "abc");
    stop_matcher_destroy(m);
    const char *bad[] = {NULL};
    stop_matcher_t *mm = (stop_matcher_t *)0x1;
    assert_int_equal(stop_matcher_create(bad, 1, &mm), RT_ERR_INVALID);
    assert_true(mm == (stop_matcher_t *)0x1);
}

static void test_stop_in_one_push(void **state)
{
    (void)state;
    const char *stops[] = {"<|end|>"};
    stop_matcher_t *m = make_stops(stops, 1);
    sink_t k = {0};
    assert_true(push_s(m, &k, "Hello<|end|>world"));
    assert_string_equal(k.text, "Hello");
    assert_true(push_s(m, &k, "more")); /* stays stopped, emits nothing */
    flush(m, &k);
    assert_string_equal(k.text, "Hello");
    stop_matcher_destroy(m);
}

static void test_stop_split_over_pushes(void **state)
{
    (void)state;
    const char *stops[] = {"<|end|>"};
    stop_matcher_t *m = make_stops(stops, 1);
    sink_t k = {0};
    assert_false(push_s(m, &k, "Hel"));
    assert_string_equal(k.text, "Hel");
    assert_false(push_s(m, &k, "lo<|e"));
    assert_string_equal(k.text, "Hello"); /* "<|e" held back */
    assert_false(push_s(m, &k, "nd"));
    assert_string_equal(k.text, "Hello");
    assert_true(push_s(m, &k, "|>more"));
    assert_string_equal(k.text, "Hello");
    flush(m, &k);
    assert_string_equal(k.text, "Hello");
    stop_matcher_destroy(m);

    /* one byte at a time */
    m = make_stops(stops, 1);
    memset(&k, 0, sizeof k);
    const char *t = "a<b<|en<|end|>zz";
    size_t i = 0;
    for (; t[i] && !push(m, &k, t + i, 1); i++)
        assert_true(strstr(k.text, "<|") == NULL || strcmp(k.text, "a<b<|en") <= 0);
    assert_int_equal(i, strlen("a<b<|en<|end|") ); /* stopped on the final '>' */
    assert_string_equal(k.text, "a<b<|en");
    stop_matcher_destroy(m);
}

static void test_stop_holdback_then_flush(void **state)
{
    (void)state;
    const char *stops[] = {"<|end|>"};
    stop_matcher_t *m = make_stops(stops, 1);
    sink_t k = {0};
    assert_false(push_s(m, &k, "abc<|e"));
    assert_string_equal(k.text, "abc");
    flush(m, &k);
    assert_string_equal(k.text, "abc<|e");
    stop_matcher_destroy(m);

    /* a false start is released as soon as it cannot be a stop */
    m = make_stops(stops, 1);
    memset(&k, 0, sizeof k);
    assert_false(push_s(m, &k, "x<|en"));
    assert_string_equal(k.text, "x");
    assert_false(push_s(m, &k, "x"));
    assert_string_equal(k.text, "x<|enx");
    stop_matcher_destroy(m);

    /* overlapping self-prefix: "aab" in "aaab" */
    const char *s2[] = {"aab"};
    m = make_stops(s2, 1);
    memset(&k, 0, sizeof k);
    assert_false(push_s(m, &k, "a"));
    assert_false(push_s(m, &k, "a"));
    assert_false(push_s(m, &k, "a"));
    assert_string_equal(k.text, "a");
    assert_true(push_s(m, &k, "b"));
    assert_string_equal(k.text, "a");
    stop_matcher_destroy(m);
}

static void test_stop_multiple(void **state)
{
    (void)state;
    const char *stops[] = {"###", "\n\nUser:"};
    stop_matcher_t *m = make_stops(stops, 2);
    sink_t k = {0};
    assert_false(push_s(m, &k, "answer #"));
    assert_string_equal(k.text, "answer ");
    assert_false(push_s(m, &k, "1\n\nUs"));
    assert_string_equal(k.text, "answer #1");
    assert_true(push_s(m, &k, "er: hi"));
    assert_string_equal(k.text, "answer #1");
    stop_matcher_destroy(m);

    /* the earliest of two in one push wins */
    const char *s2[] = {"B", "A"};
    m = make_stops(s2, 2);
    memset(&k, 0, sizeof k);
    assert_true(push_s(m, &k, "xxAyyB"));
    assert_string_equal(k.text, "xx");
    stop_matcher_destroy(m);
}

static void test_stop_small_out_and_long_text(void **state)
{
    (void)state;
    const char *stops[] = {"STOPHERE"};
    stop_matcher_t *m = make_stops(stops, 1);
    /* out too small: the rest comes out on later calls, nothing is lost */
    char out[8];
    size_t ol;
    char got[128] = {0};
    size_t gl = 0;
    assert_false(stop_matcher_push(m, "0123456789abcdefghij", 20, out, sizeof out, &ol));
    assert_int_equal(ol, 7);
    memcpy(got + gl, out, ol);
    gl += ol;
    assert_false(stop_matcher_push(m, "kl", 2, out, sizeof out, &ol));
    memcpy(got + gl, out, ol);
    gl += ol;
    for (size_t n; (n = stop_matcher_flush(m, out, sizeof out)) > 0; gl += n)
        memcpy(got + gl, out, n);
    assert_string_equal(got, "0123456789abcdefghijkl");
    stop_matcher_destroy(m);

    /* one long push, the stop straddling the internal chunk boundary */
    m = make_stops(stops, 1);
    char text[3000];
    for (int i = 0; i < 3000; i++)
        text[i] = (char)('a' + i % 26);
    memcpy(text + 268, "STOPHERE", 8);
    sink_t k = {0};
    assert_true(push(m, &k, text, sizeof text));
    assert_int_equal(k.len, 268);
    assert_memory_equal(k.text, text, 268);
    stop_matcher_destroy(m);
}

/* Random texts over a small alphabet split at random points: the emitted
 * text is always the text before the first stop, and no prefix of it is
 * ever missing or extra. No stop is a substring of another, so the answer
 * does not depend on the split. */
static void test_stop_random_splits(void **state)
{
    (void)state;
    const char *stops[] = {"abc", "cab", "bb"};
    rt_rng_t r;
    rt_rng_seed(&r, 555);
    for (int trial = 0; trial < 2000; trial++) {
        char text[64];
        size_t n = 1 + rt_rng_next(&r) % 40;
        for (size_t i = 0; i < n; i++)
            text[i] = (char)('a' + rt_rng_next(&r) % 4);
        text[n] = '\0';
        size_t first = n;
        for (int j = 0; j < 3; j++) {
            const char *p = strstr(text, stops[j]);
            if (p && (size_t)(p - text) < first)
                first = (size_t)(p - text);
        }
        stop_matcher_t *m = make_stops(stops, 3);
        sink_t k = {0};
        size_t at = 0;
        while (at < n && !k.stopped) {
            size_t step = 1 + rt_rng_next(&r) % 5;
            if (step > n - at)
                step = n - at;
            push(m, &k, text + at, step);
            at += step;
            /* never shows anything past the first stop's start */
            assert_true(k.len <= first);
        }
        if (!k.stopped)
            flush(m, &k);
        assert_true(k.stopped == (first < n));
        assert_int_equal(k.len, first);
        assert_memory_equal(k.text, text, first);
        stop_matcher_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reference_values),
        cmocka_unit_test(test_params_default_and_create_errors),
        cmocka_unit_test(test_greedy_argmax_and_ties),
        cmocka_unit_test(test_top_k_1_equals_greedy),
        cmocka_unit_test(test_seed_reproduces_and_differs),
        cmocka_unit_test(test_distribution_matches_softmax),
        cmocka_unit_test(test_top_k_distribution),
        cmocka_unit_test(test_top_k_large_vocab_exact_set),
        cmocka_unit_test(test_top_p_exact_nucleus_small),
        cmocka_unit_test(test_top_p_ties_go_to_lower_ids),
        cmocka_unit_test(test_top_p_exact_nucleus_large),
        cmocka_unit_test(test_min_p_cuts),
        cmocka_unit_test(test_repetition_penalty_exact),
        cmocka_unit_test(test_frequency_presence_exact),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_logprob_of_raw_logits),
        cmocka_unit_test(test_top_logprobs),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_constraint),
        cmocka_unit_test(test_degenerate_logits),
        cmocka_unit_test(test_stop_none_passthrough),
        cmocka_unit_test(test_stop_in_one_push),
        cmocka_unit_test(test_stop_split_over_pushes),
        cmocka_unit_test(test_stop_holdback_then_flush),
        cmocka_unit_test(test_stop_multiple),
        cmocka_unit_test(test_stop_small_out_and_long_text),
        cmocka_unit_test(test_stop_random_splits),
    };
    return cmocka_run_group_tests_name("sampler", tests, NULL, NULL);
}
