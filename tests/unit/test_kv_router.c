/*
 * test_kv_router.c - the KV-aware router: the index of which worker holds
 * which block (prefix overlaps, removal, clearing, events, workers past 64,
 * growth, and a seeded randomized run against a model kept by the test with
 * the invariants checked after every operation), and the choice (cost,
 * ties, round-robin start, ineligible workers, temperature sampling).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rotor/kv_router.h"

static kvi_t *make(int n_workers)
{
    kvi_t *x = NULL;
    assert_int_equal(kvi_create(n_workers, &x), RT_OK);
    return x;
}

static void check_ok(const kvi_t *x)
{
    if (kvi_check(x) != RT_OK) fail_msg("kvi_check: %s", rt_error_msg());
}

/* the sequence hashes of a prompt of n blocks whose tokens start at t0 */
static void seq_hashes(int t0, int n, uint64_t *out)
{
    int32_t tok[16 * 64];
    for (int i = 0; i < 16 * n; i++) tok[i] = t0 + i;
    assert_int_equal(bp_hash_blocks(tok, (size_t)(16 * n), 16, NULL, out), (size_t)n);
}

static void test_prefix_overlap(void **state)
{
    (void)state;
    kvi_t *x = make(3);
    uint64_t a[6], b[6];
    seq_hashes(100, 6, a);
    seq_hashes(5000, 6, b);
    for (int i = 0; i < 4; i++) assert_int_equal(kvi_store(x, 0, a[i]), RT_OK);
    for (int i = 0; i < 2; i++) assert_int_equal(kvi_store(x, 1, a[i]), RT_OK);
    assert_int_equal(kvi_store(x, 2, b[0]), RT_OK);
    int32_t ov[3];
    kvi_overlap(x, a, 6, ov);
    assert_int_equal(ov[0], 4);
    assert_int_equal(ov[1], 2);
    assert_int_equal(ov[2], 0);
    kvi_overlap(x, a, 3, ov); /* a shorter prompt: at most its own blocks */
    assert_int_equal(ov[0], 3);
    assert_int_equal(ov[1], 2);
    kvi_overlap(x, b, 6, ov);
    assert_int_equal(ov[0], 0);
    assert_int_equal(ov[2], 1);
    kvi_overlap(x, a, 0, ov);
    assert_int_equal(ov[0] + ov[1] + ov[2], 0);
    /* a hole at block 1: worker 0's overlap stops there, its later blocks do not count */
    kvi_remove(x, 0, a[1]);
    kvi_overlap(x, a, 6, ov);
    assert_int_equal(ov[0], 1);
    assert_int_equal(ov[1], 2);
    assert_int_equal(kvi_blocks(x), 5); /* a0..a3 and b0 */
    assert_int_equal(kvi_worker_blocks(x, 0), 3);
    assert_int_equal(kvi_worker_blocks(x, 1), 2);
    check_ok(x);
    kvi_destroy(x);
}

static void test_store_remove_clear(void **state)
{
    (void)state;
    kvi_t *x = make(2);
    uint64_t a[4];
    seq_hashes(7, 4, a);
    assert_int_equal(kvi_store(x, 0, a[0]), RT_OK);
    assert_int_equal(kvi_store(x, 0, a[0]), RT_OK); /* again: no change */
    assert_int_equal(kvi_worker_blocks(x, 0), 1);
    assert_int_equal(kvi_store(x, 2, a[0]), RT_ERR_RANGE);
    assert_int_equal(kvi_store(x, -1, a[0]), RT_ERR_RANGE);
    kvi_remove(x, 1, a[0]); /* not held by 1 */
    kvi_remove(x, 0, a[3]); /* not indexed */
    kvi_remove(x, 5, a[0]); /* no such worker */
    assert_int_equal(kvi_blocks(x), 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(kvi_store(x, 0, a[i]), RT_OK);
        assert_int_equal(kvi_store(x, 1, a[i]), RT_OK);
    }
    kvi_clear_worker(x, 0);
    check_ok(x);
    assert_int_equal(kvi_worker_blocks(x, 0), 0);
    assert_int_equal(kvi_blocks(x), 4);
    int32_t ov[2];
    kvi_overlap(x, a, 4, ov);
    assert_int_equal(ov[0], 0);
    assert_int_equal(ov[1], 4);
    kvi_clear_worker(x, 1);
    check_ok(x);
    assert_int_equal(kvi_blocks(x), 0);
    kvi_destroy(x);
    kvi_destroy(NULL);
    assert_int_equal(kvi_create(0, &x), RT_ERR_RANGE);
    assert_int_equal(kvi_create(65537, &x), RT_ERR_RANGE);
}

static void test_events(void **state)
{
    (void)state;
    kvi_t *x = make(2);
    uint64_t a[3];
    seq_hashes(1, 3, a);
    bp_event_t ev = {.id = 1, .kind = BP_EV_STORED, .tier = BP_TIER_G1, .seq_hash = a[0], .n_tokens = 16};
    assert_int_equal(kvi_apply(x, 1, &ev), RT_OK);
    ev.seq_hash = a[1];
    ev.parent_hash = a[0];
    ev.has_parent = true;
    assert_int_equal(kvi_apply(x, 1, &ev), RT_OK);
    int32_t ov[2];
    kvi_overlap(x, a, 3, ov);
    assert_int_equal(ov[1], 2);
    ev.tier = BP_TIER_G2; /* any tier: the caller keeps an index per tier */
    ev.seq_hash = a[2];
    assert_int_equal(kvi_apply(x, 1, &ev), RT_OK);
    kvi_overlap(x, a, 3, ov);
    assert_int_equal(ov[1], 3);
    ev = (bp_event_t){.kind = BP_EV_REMOVED, .tier = BP_TIER_G1, .seq_hash = a[1]};
    assert_int_equal(kvi_apply(x, 1, &ev), RT_OK);
    kvi_overlap(x, a, 3, ov);
    assert_int_equal(ov[1], 1);
    ev = (bp_event_t){.kind = BP_EV_CLEARED, .tier = BP_TIER_G1, .block_id = -1};
    assert_int_equal(kvi_apply(x, 1, &ev), RT_OK);
    assert_int_equal(kvi_blocks(x), 0);
    ev.kind = (bp_event_kind_t)9;
    assert_int_equal(kvi_apply(x, 1, &ev), RT_ERR_FORMAT);
    check_ok(x);
    kvi_destroy(x);
}

/* several indexes as one: a block counts where any of them has it */
static void test_overlap_any(void **state)
{
    (void)state;
    kvi_t *g1 = make(70), *g2 = make(70), *flight = make(70);
    uint64_t a[6];
    seq_hashes(300, 6, a);
    /* worker 3: blocks 0-1 in G1, 2-3 in G2, 4 in flight; worker 66: 0 in G2, then a hole */
    for (int i = 0; i < 2; i++) assert_int_equal(kvi_store(g1, 3, a[i]), RT_OK);
    for (int i = 2; i < 4; i++) assert_int_equal(kvi_store(g2, 3, a[i]), RT_OK);
    assert_int_equal(kvi_store(flight, 3, a[4]), RT_OK);
    assert_int_equal(kvi_store(g2, 66, a[0]), RT_OK);
    assert_int_equal(kvi_store(g1, 66, a[2]), RT_OK);
    int32_t ov[70];
    kvi_t *const all[3] = {g1, g2, flight};
    kvi_overlap_any(all, 3, a, 6, ov);
    assert_int_equal(ov[3], 5);
    assert_int_equal(ov[66], 1);
    assert_int_equal(ov[0], 0);
    kvi_overlap_any(all, 2, a, 6, ov); /* without the blocks in flight */
    assert_int_equal(ov[3], 4);
    kvi_overlap(g1, a, 6, ov);
    assert_int_equal(ov[3], 2);
    assert_int_equal(ov[66], 0);
    kvi_destroy(g1);
    kvi_destroy(g2);
    kvi_destroy(flight);
}

/* workers past 64 live in later bitset words; 130 = 3 words, the last partial */
static void test_many_workers(void **state)
{
    (void)state;
    const int W = 130;
    kvi_t *x = make(W);
    uint64_t a[8];
    seq_hashes(42, 8, a);
    for (int w = 0; w < W; w++)
        for (int i = 0; i < w % 9; i++) assert_int_equal(kvi_store(x, w, a[i]), RT_OK);
    int32_t ov[130];
    kvi_overlap(x, a, 8, ov);
    for (int w = 0; w < W; w++) assert_int_equal(ov[w], w % 9 < 8 ? w % 9 : 8);
    kvi_clear_worker(x, 129);
    kvi_clear_worker(x, 64);
    kvi_overlap(x, a, 8, ov);
    assert_int_equal(ov[129], 0);
    assert_int_equal(ov[64], 0);
    assert_int_equal(ov[125], 8); /* 125 % 9 = 8: it still holds all */
    check_ok(x);
    kvi_destroy(x);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random stores, removals and clears of 70 workers over 3000 hashes (so the
 * table grows and probe chains get long), each followed by the invariant
 * check, and overlaps of random chains compared with the test's own model. */
static void test_randomized(void **state)
{
    (void)state;
    enum { W = 70, H = 3000, OPS = 40000 };
    kvi_t *x = make(W);
    static uint8_t held[W][H];
    memset(held, 0, sizeof held);
    uint64_t hash[H];
    for (int i = 0; i < H; i++) hash[i] = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1); /* distinct */
    uint64_t s = 88172645463325252ull;
    for (int op = 0; op < OPS; op++) {
        const int w = (int)(rnd(&s) % W), h = (int)(rnd(&s) % H), k = (int)(rnd(&s) % 1000);
        if (k < 600) {
            assert_int_equal(kvi_store(x, w, hash[h]), RT_OK);
            held[w][h] = 1;
        } else if (k < 995) {
            kvi_remove(x, w, hash[h]);
            held[w][h] = 0;
        } else {
            kvi_clear_worker(x, w);
            memset(held[w], 0, sizeof held[w]);
        }
        if (op % 97 == 0) check_ok(x);
        if (op % 13 == 0) { /* a chain of 6 hashes from a small range, so some are held */
            uint64_t q[6];
            int qi[6];
            for (int i = 0; i < 6; i++) q[i] = hash[qi[i] = (int)(rnd(&s) % 40)];
            int32_t ov[W];
            kvi_overlap(x, q, 6, ov);
            for (int v = 0; v < W; v++) {
                int want = 0;
                while (want < 6 && held[v][qi[want]]) want++;
                assert_int_equal(ov[v], want);
            }
        }
    }
    int64_t total = 0, distinct = 0;
    for (int h = 0; h < H; h++) {
        int any = 0;
        for (int w = 0; w < W; w++) any |= held[w][h];
        distinct += any;
    }
    for (int w = 0; w < W; w++) {
        int64_t n = 0;
        for (int h = 0; h < H; h++) n += held[w][h];
        assert_int_equal(kvi_worker_blocks(x, w), n);
        total += n;
    }
    assert_int_equal(kvi_blocks(x), distinct);
    assert_true(total > distinct); /* blocks shared by workers were exercised */
    check_ok(x);
    kvi_destroy(x);
}

static void test_pick(void **state)
{
    (void)state;
    kvr_params_t p = {.overlap_weight = 1.0};
    uint64_t rng = 1;
    kvr_candidate_t c[3] = {
        {.eligible = true, .overlap = 0, .active_blocks = 0, .n_inflight = 0},
        {.eligible = true, .overlap = 10, .active_blocks = 5, .n_inflight = 3},
        {.eligible = true, .overlap = 2, .active_blocks = 0, .n_inflight = 0},
    };
    /* 12 blocks: new 12, 2, 10: costs 12 + 12, 2 + (5 + 2) = 9, 10 + 10 */
    assert_true(kvr_cost(&p, &c[0], 12) == 24.0);
    assert_true(kvr_cost(&p, &c[1], 12) == 9.0);
    assert_true(kvr_cost(&p, &c[2], 12) == 20.0);
    assert_int_equal(kvr_pick(&p, c, 3, 12, 0, &rng), 1);
    /* the held prefix outweighed by load: 2 + 32 */
    c[1].active_blocks = 30;
    assert_int_equal(kvr_pick(&p, c, 3, 12, 0, &rng), 2);
    /* a heavier weight keeps it: 3 x 2 + 32 = 38 against 3 x 10 + 10 = 40 */
    p.overlap_weight = 3;
    assert_int_equal(kvr_pick(&p, c, 3, 12, 0, &rng), 1);
    /* equal costs: ties go to fewer requests in flight, then from start */
    p.overlap_weight = 0;
    for (int i = 0; i < 3; i++) c[i].overlap = 0, c[i].active_blocks = 0;
    assert_int_equal(kvr_pick(&p, c, 3, 12, 1, &rng), 2); /* 1 has 3 in flight */
    assert_int_equal(kvr_pick(&p, c, 3, 12, 0, &rng), 0);
    assert_int_equal(kvr_pick(&p, c, 3, 12, 2, &rng), 2);
    assert_int_equal(kvr_pick(&p, c, 3, 12, 7, &rng), 0); /* a bad start is 0 */
    /* an overlap larger than the request (a shorter prompt) counts as the request */
    p.overlap_weight = 1;
    c[2].overlap = 40;
    assert_true(kvr_cost(&p, &c[2], 12) == 0.0);
    /* ineligible workers are never chosen */
    c[2].eligible = false;
    c[1].eligible = false;
    assert_int_equal(kvr_pick(&p, c, 3, 12, 2, &rng), 0);
    c[0].eligible = false;
    assert_int_equal(kvr_pick(&p, c, 3, 12, 0, &rng), -1);
    assert_int_equal(kvr_pick(&p, c, 0, 12, 0, &rng), -1);
}

static void test_pick_temperature(void **state)
{
    (void)state;
    kvr_candidate_t c[2] = {{.eligible = true, .overlap = 8}, {.eligible = true, .overlap = 0}};
    /* costs 0 and 8, normalized 0 and 1: P(1) = e^(-1/T) / (1 + e^(-1/T)) */
    kvr_params_t p = {.overlap_weight = 1.0, .temperature = 1.0};
    uint64_t rng = 12345;
    int n1 = 0;
    const int N = 20000;
    for (int i = 0; i < N; i++) n1 += kvr_pick(&p, c, 2, 8, 0, &rng) == 1;
    const double want = 0.26894142; /* e^-1 / (1 + e^-1) */
    assert_true(n1 > (int)(N * (want - 0.02)) && n1 < (int)(N * (want + 0.02)));
    /* a tiny temperature is the deterministic choice; equal costs do not sample */
    p.temperature = 1e-3;
    for (int i = 0; i < 100; i++) assert_int_equal(kvr_pick(&p, c, 2, 8, 1, &rng), 0);
    c[1].overlap = 8;
    p.temperature = 5;
    const uint64_t before = rng;
    assert_int_equal(kvr_pick(&p, c, 2, 8, 1, &rng), 1);
    assert_true(rng == before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_overlap), cmocka_unit_test(test_store_remove_clear),
        cmocka_unit_test(test_events),         cmocka_unit_test(test_many_workers),
        cmocka_unit_test(test_overlap_any),
        cmocka_unit_test(test_randomized),     cmocka_unit_test(test_pick),
        cmocka_unit_test(test_pick_temperature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
